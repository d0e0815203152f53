import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import {PrefetchQueue} from '../../src/status-queue/prefetch.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-sq-prefetch-')
let n = 0

async function filled(count: number) {
  const queue = await openQueue(`sqlite:${join(dir, 'q.db')}#p-${++n}`)
  await queue.sendBatch(Array.from({length: count}, (_, i) => ({body: `m${i}`})))
  return queue
}

/** Counts the receives that reach the backend. */
function counting(queue: Queue) {
  const counter = {receives: 0}
  const wrapped = Object.create(queue) as Queue
  wrapped.receive = (options) => {
    counter.receives++
    return queue.receive(options)
  }
  return {wrapped, counter}
}

describe('PrefetchQueue', () => {
  it('receives a full batch and hands it out one call at a time, in order', async () => {
    const backend = await filled(12)
    const {wrapped, counter} = counting(backend)
    const queue = new PrefetchQueue(wrapped, {maxHoldMs: 10_000})
    const bodies: string[] = []
    for (let i = 0; i < 12; i++) bodies.push(...(await queue.receive({maxMessages: 1})).map((m) => m.body))
    expect(bodies).toEqual(Array.from({length: 12}, (_, i) => `m${i}`))
    expect(counter.receives).toBe(2)
    expect(await queue.receive({maxMessages: 1})).toEqual([])
    await queue.close()
  })

  it('releases what it holds on close, so nothing waits for a lapsed lease', async () => {
    const backend = await filled(10)
    const queue = new PrefetchQueue(backend, {maxHoldMs: 10_000})
    expect(await queue.receive({maxMessages: 3, visibilityTimeout: 300})).toHaveLength(3)
    expect(queue.holding).toBe(7)
    const url = backend.url
    await queue.close()
    const again = await openQueue(url)
    expect(await again.stats()).toMatchObject({visible: 7, inFlight: 3})
    await again.close()
  })

  it('releases held messages after maxHoldMs even when nobody asks for more', async () => {
    const backend = await filled(10)
    const queue = new PrefetchQueue(backend, {maxHoldMs: 60})
    await queue.receive({maxMessages: 1, visibilityTimeout: 300})
    expect(queue.holding).toBe(9)
    const deadline = Date.now() + 5000
    while (queue.holding > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(queue.holding).toBe(0)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await backend.stats()).toMatchObject({visible: 9, inFlight: 1})
    await queue.close()
  })

  it('releases held messages older than maxHoldMs instead of handing them out', async () => {
    const backend = await filled(10)
    const queue = new PrefetchQueue(backend, {maxHoldMs: 50})
    await queue.receive({maxMessages: 1, visibilityTimeout: 300})
    await new Promise((resolve) => setTimeout(resolve, 80))
    // the 9 held ones are stale: released, and this call receives afresh from the backend
    const next = await queue.receive({maxMessages: 2, visibilityTimeout: 300})
    expect(next).toHaveLength(2)
    expect(next.every((m) => m.receiveCount === 2)).toBe(true)
    await queue.close()
  })
})
