/**
 * consume()'s awaitLapsingLeases (a one-shot run after a consumer was killed): it waits for a lease
 * that ends before its deadline and takes the messages, but does not wait on a consumer that is
 * alive and keeps extending its leases. On the real embedded queue (it tells nextVisibleAt).
 */
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'

import {consume} from '../../src/core/consume.js'
import {delivered} from '../../src/core/delivery.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-lapsing-')
let n = 0
const open: Queue[] = []
afterEach(async () => {
  for (const queue of open.splice(0)) await queue.close()
})

async function queueWith(bodies: string[]): Promise<Queue> {
  const queue = await openQueue(`sqlite:${join(dir, 'q.db')}#q${++n}`, {maxReceiveCount: 0})
  open.push(queue)
  await queue.sendBatch(bodies.map((body) => ({body})))
  return queue
}

describe('consume: awaitLapsingLeases', () => {
  it('takes over what a killed consumer held once its lease ends (within the deadline): exit 0', async () => {
    const queue = await queueWith(['a', 'b', 'c'])
    // A consumer that took two and died: their lease lapses in 1 s, nobody extends it.
    expect(await queue.receive({maxMessages: 2, visibilityTimeout: 1})).toHaveLength(2)
    const seen: string[] = []
    const started = Date.now()
    const result = await consume(queue, async (message) => (seen.push(message.body), delivered()), {once: true, awaitLapsingLeases: true})
    expect(result).toMatchObject({delivered: 3, remaining: 0, exitCode: 0, stoppedBy: 'empty', problems: []})
    expect(seen.sort()).toEqual(['a', 'b', 'c'])
    expect(Date.now() - started).toBeGreaterThanOrEqual(900)
  })

  it('a holder that is alive (it extends its lease) is reported, not waited on twice: exit 1', async () => {
    const queue = await queueWith(['held', 'free'])
    const [held] = await queue.receive({maxMessages: 1, visibilityTimeout: 1})
    const extend = setInterval(() => void queue.changeVisibility(held!.receiptHandle, 1).catch(() => undefined), 300)
    try {
      const started = Date.now()
      const result = await consume(queue, async () => delivered(), {once: true, awaitLapsingLeases: true})
      expect(result).toMatchObject({delivered: 1, remaining: 1, exitCode: 1})
      expect(result.problems).toEqual([expect.stringMatching(/^1 remaining \(held by another consumer until \d\d:\d\d:\d\d\)$/)])
      // One wait of about one lease, then it ends.
      expect(Date.now() - started).toBeLessThan(5000)
    } finally {
      clearInterval(extend)
    }
  })

  it('a lease that ends after the deadline is not waited for; without the option nothing is waited for', async () => {
    const queue = await queueWith(['held', 'free'])
    await queue.receive({maxMessages: 1, visibilityTimeout: 30})
    const started = Date.now()
    const late = await consume(queue, async () => delivered(), {once: true, awaitLapsingLeases: true, deadlineMs: 2000})
    expect(late).toMatchObject({delivered: 1, remaining: 1, exitCode: 1})
    const plain = await consume(queue, async () => delivered(), {once: true})
    expect(plain).toMatchObject({delivered: 0, remaining: 1, exitCode: 1})
    expect(Date.now() - started).toBeLessThan(1500)
  })
})
