import {describe, expect, it} from 'vitest'

import {CisternError, UsageError} from '../../src/core/errors.js'
import {backoffDelay, deferred, isPaused, pollLoop, sleep} from '../../src/core/loop.js'
import {silentLogger} from '../../src/core/log.js'

describe('sleep', () => {
  it('waits, or returns early (false) when aborted', async () => {
    expect(await sleep(5)).toBe(true)
    const controller = new AbortController()
    const waiting = sleep(60_000, controller.signal)
    setTimeout(() => controller.abort(), 10)
    expect(await waiting).toBe(false)
    expect(await sleep(60_000, controller.signal)).toBe(false)
    expect(await sleep(0)).toBe(true)
  })
})

describe('backoffDelay', () => {
  it('doubles per attempt with equal jitter, capped', () => {
    const low = () => 0
    const high = () => 0.99999
    expect(backoffDelay(1, {baseMs: 1000, random: low})).toBe(500)
    expect(backoffDelay(1, {baseMs: 1000, random: high})).toBe(1000)
    expect(backoffDelay(2, {baseMs: 1000, random: low})).toBe(1000)
    expect(backoffDelay(4, {baseMs: 1000, random: high})).toBe(8000)
    expect(backoffDelay(20, {baseMs: 1000, maxMs: 30_000, random: low})).toBe(15_000)
    expect(backoffDelay(20, {baseMs: 1000, maxMs: 30_000, random: high})).toBe(30_000)
    expect(backoffDelay(10_000)).toBeLessThanOrEqual(30_000)
    // never zero: no hot loop even at the first attempt
    for (let i = 0; i < 100; i++) expect(backoffDelay(1)).toBeGreaterThanOrEqual(500)
  })
})

describe('pollLoop', () => {
  it('once: ticks while there is work, stops at the first idle tick', async () => {
    let left = 3
    const result = await pollLoop(async () => left-- > 0, {once: true})
    expect(result).toEqual({ticks: 4, errors: 0, stoppedBy: 'empty'})
  })

  it('foreground: waits idleMs between idle ticks until the signal', async () => {
    const controller = new AbortController()
    let ticks = 0
    setTimeout(() => controller.abort(), 250)
    const result = await pollLoop(
      async () => {
        ticks++
        return false
      },
      {signal: controller.signal, idleMs: 50},
    )
    expect(result.stoppedBy).toBe('signal')
    expect(ticks).toBeGreaterThanOrEqual(2)
    expect(ticks).toBeLessThanOrEqual(8)
  })

  it('backs off after errors; once mode gives up after maxConsecutiveErrors', async () => {
    let calls = 0
    const error = new Error('service unavailable')
    await expect(
      pollLoop(
        async () => {
          calls++
          throw error
        },
        {once: true, maxConsecutiveErrors: 3, backoff: {baseMs: 10, maxMs: 20}},
      ),
    ).rejects.toBe(error)
    expect(calls).toBe(3)
  })

  it('recovers after transient errors and counts them', async () => {
    let calls = 0
    const result = await pollLoop(
      async () => {
        calls++
        if (calls <= 2) throw new Error('flap')
        return calls < 4
      },
      {once: true, backoff: {baseMs: 10, maxMs: 20}},
    )
    expect(result).toEqual({ticks: 4, errors: 2, stoppedBy: 'empty'})
  })

  it('rethrows usage errors at once: they are not transient', async () => {
    let calls = 0
    const error = new UsageError('bad config')
    await expect(
      pollLoop(async () => {
        calls++
        throw error
      }, {}),
    ).rejects.toBe(error)
    expect(calls).toBe(1)
  })

  it('foreground keeps retrying failures with backoff until the signal', async () => {
    const controller = new AbortController()
    let calls = 0
    setTimeout(() => controller.abort(), 400)
    const result = await pollLoop(
      async () => {
        calls++
        throw new CisternError('target down')
      },
      {signal: controller.signal, backoff: {baseMs: 40, maxMs: 80}, log: silentLogger},
    )
    expect(result.stoppedBy).toBe('signal')
    expect(calls).toBeGreaterThanOrEqual(3)
    expect(calls).toBeLessThanOrEqual(20)
  })

  it('does not tick while paused', async () => {
    let paused = true
    let ticks = 0
    setTimeout(() => (paused = false), 150)
    const result = await pollLoop(
      async () => {
        ticks++
        return false
      },
      {once: true, paused: () => paused, pausePollMs: 20},
    )
    expect(ticks).toBe(1)
    expect(result.stoppedBy).toBe('empty')
  })
})

describe('helpers', () => {
  it('isPaused treats a throwing check as paused', async () => {
    expect(await isPaused(undefined, silentLogger)).toBe(false)
    expect(await isPaused(async () => false, silentLogger)).toBe(false)
    expect(await isPaused(() => true, silentLogger)).toBe(true)
    expect(
      await isPaused(() => {
        throw new Error('redis down')
      }, silentLogger),
    ).toBe(true)
  })

  it('deferred resolves from outside', async () => {
    const d = deferred<number>()
    setTimeout(() => d.resolve(7), 1)
    expect(await d.promise).toBe(7)
  })
})
