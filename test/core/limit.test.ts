import {setTimeout as sleep} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'

import {Limiter} from '../../src/core/limit.js'

describe('Limiter', () => {
  it('never runs more than `concurrency` tasks at once, runs them all, and drain() waits for the last', async () => {
    const limiter = new Limiter({concurrency: 3})
    let running = 0
    let most = 0
    const done: number[] = []
    const results = Array.from({length: 12}, (_, i) =>
      limiter.run(async () => {
        running++
        most = Math.max(most, running)
        await sleep(5 + (i % 3) * 5)
        running--
        done.push(i)
        return i * 2
      }),
    )
    expect(limiter.running).toBe(3)
    expect(limiter.waiting).toBe(9)
    await limiter.drain()
    expect(done).toHaveLength(12)
    expect(most).toBe(3)
    expect(await Promise.all(results)).toEqual(Array.from({length: 12}, (_, i) => i * 2))
    expect(limiter.running + limiter.waiting).toBe(0)
  })

  it('spaces starts to the rate; a burst may start back to back, then the rate holds', async () => {
    const evenly = new Limiter({perSecond: 20})
    const starts: number[] = []
    await Promise.all(Array.from({length: 5}, () => evenly.run(async () => void starts.push(performance.now()))))
    // Five starts at 20/s with no burst span at least four intervals of 50 ms (timer slack allowed).
    expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual(4 * 50 - 10)

    const bursty = new Limiter({perSecond: 10, burst: 3})
    const at: number[] = []
    await Promise.all(Array.from({length: 4}, () => bursty.take().then(() => at.push(performance.now()))))
    // At most 3 starts in any 300 ms: the fourth waits for the window.
    expect(at[3]! - at[0]!).toBeGreaterThanOrEqual(300 - 10)
  })

  it('a task still waiting when its signal aborts never starts, and rejects with the reason', async () => {
    const limiter = new Limiter({concurrency: 1})
    let release: () => void = () => undefined
    const first = limiter.run(() => new Promise<string>((resolve) => (release = () => resolve('first'))))
    const controller = new AbortController()
    let started = false
    const second = limiter.run(
      async () => {
        started = true
      },
      {signal: controller.signal},
    )
    controller.abort(new Error('stopping'))
    await expect(second).rejects.toThrow('stopping')
    release()
    expect(await first).toBe('first')
    await limiter.drain()
    expect(started).toBe(false)
  })

  it('passes the signal to the task and refuses nonsense limits', async () => {
    const controller = new AbortController()
    expect(await new Limiter().run(async (signal) => signal === controller.signal, {signal: controller.signal})).toBe(true)
    expect(() => new Limiter({concurrency: 0})).toThrow(RangeError)
    expect(() => new Limiter({perSecond: 0})).toThrow(RangeError)
    expect(() => new Limiter({perSecond: 1, burst: 1.5})).toThrow(RangeError)
  })
})
