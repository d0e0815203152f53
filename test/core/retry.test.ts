import {describe, expect, it} from 'vitest'

import {UsageError} from '../../src/core/errors.js'
import {GaveUpError, retryUntil} from '../../src/core/retry.js'

const fast = {baseMs: 20, maxMs: 40}

describe('retryUntil', () => {
  it('retries a throttled result with back-off until it is delivered', async () => {
    const waits: number[] = []
    let calls = 0
    const result = await retryUntil(
      async (attempt) => {
        calls++
        if (attempt < 4) throw new Error('ThrottlingException')
        return 'delivered'
      },
      {deadline: Date.now() + 10_000, backoff: fast, onRetry: ({delayMs}) => waits.push(delayMs)},
    )
    expect(result).toBe('delivered')
    expect(calls).toBe(4)
    expect(waits).toHaveLength(3)
    for (const wait of waits) {
      expect(wait).toBeGreaterThanOrEqual(10)
      expect(wait).toBeLessThanOrEqual(40)
    }
  })

  it('gives up when the next attempt would start after the deadline, with the last failure as cause', async () => {
    const started = Date.now()
    const last = new Error('503 Service Unavailable')
    const attemptsAt: number[] = []
    const error = await retryUntil(
      async () => {
        attemptsAt.push(Date.now())
        throw last
      },
      {deadline: started + 300, backoff: {baseMs: 100, maxMs: 100}},
    ).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(GaveUpError)
    expect(error).toMatchObject({why: 'deadline', exitCode: 1, cause: last})
    expect((error as GaveUpError).attempts).toBe(attemptsAt.length)
    expect((error as GaveUpError).message).toMatch(/^not delivered before its deadline \(\d attempts\): 503 Service Unavailable$/)
    // no attempt started after the deadline, and it did not give up long before it
    for (const at of attemptsAt) expect(at).toBeLessThanOrEqual(started + 300)
    expect(attemptsAt.length).toBeGreaterThanOrEqual(2)
  })

  it('waits what the answer asked for when that is longer than the back-off', async () => {
    const at: number[] = []
    await retryUntil(
      async (attempt) => {
        at.push(Date.now())
        if (attempt === 1) throw Object.assign(new Error('429'), {retryAfterMs: 250})
        return true
      },
      {deadline: Date.now() + 5000, backoff: fast, retryAfterMs: (error) => (error as {retryAfterMs?: number}).retryAfterMs},
    )
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(240)
  })

  it('a Retry-After past the deadline gives up at once instead of waiting for nothing', async () => {
    const started = Date.now()
    const error = await retryUntil(
      async () => {
        throw new Error('rate limited')
      },
      {deadline: started + 1000, retryAfterMs: () => 60_000},
    ).catch((e: unknown) => e)
    expect(error).toMatchObject({name: 'GaveUpError', attempts: 1, why: 'deadline'})
    expect(Date.now() - started).toBeLessThan(500)
  })

  it('rethrows what is not worth retrying as it is: usage errors by default, or what shouldRetry refuses', async () => {
    const usage = new UsageError('GITHUB_URL is not the API')
    let calls = 0
    await expect(
      retryUntil(
        async () => {
          calls++
          throw usage
        },
        {deadline: Date.now() + 5000, backoff: fast},
      ),
    ).rejects.toBe(usage)
    expect(calls).toBe(1)
    const refused = new Error('422 Unprocessable')
    await expect(
      retryUntil(
        async () => {
          throw refused
        },
        {deadline: Date.now() + 5000, shouldRetry: (error) => error !== refused},
      ),
    ).rejects.toBe(refused)
  })

  it('a stop signal ends the wait at once and gives up', async () => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 50)
    const started = Date.now()
    const error = await retryUntil(
      async () => {
        throw new Error('down')
      },
      {deadline: Date.now() + 60_000, signal: controller.signal, backoff: {baseMs: 30_000, maxMs: 30_000}},
    ).catch((e: unknown) => e)
    expect(error).toMatchObject({name: 'GaveUpError', why: 'stopping', attempts: 1})
    expect(Date.now() - started).toBeLessThan(1000)
  })
})
