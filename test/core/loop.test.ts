import {getEventListeners} from 'node:events'

import {describe, expect, it} from 'vitest'

import {CisternError, UsageError} from '../../src/core/errors.js'
import {PollLoop, Wake, backoffDelay, deferred, isPaused, pollLoop, sleep} from '../../src/core/loop.js'
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

describe('sleep on node:timers/promises', () => {
  it('leaves no abort listener behind, whichever way it ends', async () => {
    const controller = new AbortController()
    for (let i = 0; i < 20; i++) await sleep(1, controller.signal)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
    const cut = new AbortController()
    const waiting = sleep(60_000, cut.signal)
    expect(getEventListeners(cut.signal, 'abort')).toHaveLength(1)
    cut.abort()
    expect(await waiting).toBe(false)
    expect(getEventListeners(cut.signal, 'abort')).toHaveLength(0)
    expect(await sleep(Number.NaN)).toBe(true)
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

describe('PollLoop', () => {
  it('wake() cuts an idle wait short', async () => {
    let ticks = 0
    const loop = new PollLoop(async () => ++ticks === 2, {idleMs: 60_000})
    const running = loop.run()
    await sleep(50)
    expect(ticks).toBe(1)
    loop.wake()
    await sleep(50)
    // tick 2 did work, tick 3 found none and waits again
    expect(ticks).toBe(3)
    const result = await loop.stop()
    expect(result).toEqual({ticks: 3, errors: 0, stoppedBy: 'signal'})
    expect(await running).toBe(result)
  })

  it('stop() aborts the tick\'s signal and resolves when the loop has ended', async () => {
    let sawAbort = false
    const loop = new PollLoop(
      async (signal) => {
        // A long poll that listens to its signal.
        await sleep(60_000, signal)
        sawAbort = signal.aborted
        return true
      },
      {idleMs: 10},
    )
    const running = loop.run()
    await sleep(30)
    const started = Date.now()
    const result = await loop.stop()
    expect(Date.now() - started).toBeLessThan(1000)
    expect(sawAbort).toBe(true)
    expect(result?.stoppedBy).toBe('signal')
    expect(await running).toBe(result)
  })

  it('idle waits grow with idleBackoff while ticks find nothing, and reset after work', async () => {
    const at: number[] = []
    let n = 0
    const controller = new AbortController()
    const loop = new PollLoop(
      async () => {
        at.push(Date.now())
        n++
        if (n === 6) controller.abort()
        return n === 4
      },
      {signal: controller.signal, idleBackoff: {baseMs: 40, maxMs: 160, random: () => 0.99999}},
    )
    await loop.run()
    const gaps = at.slice(1).map((t, i) => t - at[i]!)
    // idle 1 → ~40 ms, idle 2 → ~80, idle 3 → ~160; tick 4 did work → at once; then ~40 again
    expect(gaps[0]).toBeGreaterThanOrEqual(35)
    expect(gaps[1]).toBeGreaterThanOrEqual(75)
    expect(gaps[2]).toBeGreaterThanOrEqual(150)
    expect(gaps[3]).toBeLessThan(35)
    expect(gaps[4]).toBeGreaterThanOrEqual(35)
    expect(gaps[4]).toBeLessThan(150)
  })

  it('rethrows what `fatal` names at once, without back-off', async () => {
    let calls = 0
    const denied = Object.assign(new Error('AccessDenied'), {name: 'AccessDeniedException'})
    await expect(
      pollLoop(
        async () => {
          calls++
          throw denied
        },
        {fatal: (error) => (error as Error).name === 'AccessDeniedException', backoff: {baseMs: 10_000}},
      ),
    ).rejects.toBe(denied)
    expect(calls).toBe(1)
  })

  it('wake() also ends a paused wait early', async () => {
    let paused = true
    const loop = new PollLoop(
      async () => false,
      {once: true, paused: () => paused, pausePollMs: 60_000},
    )
    const running = loop.run()
    await sleep(30)
    paused = false
    loop.wake()
    expect(await running).toEqual({ticks: 1, errors: 0, stoppedBy: 'empty'})
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

  it('Wake: wait() resolves at notify(), at its time limit, or when the signal aborts', async () => {
    const wake = new Wake()
    const started = Date.now()
    setTimeout(() => wake.notify(), 20)
    await wake.wait()
    expect(Date.now() - started).toBeLessThan(1000)
    const timed = Date.now()
    await wake.wait(30)
    expect(Date.now() - timed).toBeGreaterThanOrEqual(25)
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 20)
    const aborted = Date.now()
    await wake.wait(Number.POSITIVE_INFINITY, controller.signal)
    expect(Date.now() - aborted).toBeLessThan(1000)
    // A notify() between taking `notified` and waiting is not missed.
    const notified = wake.notified
    wake.notify()
    const late = Date.now()
    await wake.wait(60_000, undefined, notified)
    expect(Date.now() - late).toBeLessThan(100)
  })

  it('deferred resolves from outside', async () => {
    const d = deferred<number>()
    setTimeout(() => d.resolve(7), 1)
    expect(await d.promise).toBe(7)
  })
})
