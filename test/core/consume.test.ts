import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, describe, expect, it} from 'vitest'

import {type ConsumeCounters, type Handler, consume, retryDelaySeconds} from '../../src/core/consume.js'
import {dead, delivered, retry, stop} from '../../src/core/delivery.js'
import {CisternError, TargetUnhealthyError, UsageError} from '../../src/core/errors.js'
import {type LogFields, type Logger, createLogger} from '../../src/core/log.js'
import {sleep} from '../../src/core/loop.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import {MemoryQueue} from '../helpers/memory-queue.js'
import {queueContract} from './queue/contract.js'
import {tempDir} from '../helpers/tmp.js'

async function fill(queue: MemoryQueue, n: number, prefix = 'm') {
  for (let i = 0; i < n; i += 10) {
    await queue.sendBatch(Array.from({length: Math.min(10, n - i)}, (_, j) => ({body: `${prefix}${i + j}`})))
  }
}

/** A logger that keeps its lines for assertions. */
function memoryLog(): Logger & {lines: Array<{level: string; msg: string; fields: LogFields}>} {
  const lines: Array<{level: string; msg: string; fields: LogFields}> = []
  const stream = {write: (text: string) => (lines.push(JSON.parse(text)), true)} as unknown as NodeJS.WritableStream
  const logger = createLogger({stream, format: 'json', level: 'debug'})
  return Object.assign(logger, {lines: lines as never})
}

describe('consume, once mode', () => {
  it('handles every message, deletes in batches and reports counts', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 25)
    const seen: string[] = []
    const result = await consume(
      queue,
      async (message) => {
        seen.push(message.body)
        return delivered()
      },
      {once: true, concurrency: 10},
    )
    expect(result).toMatchObject({stoppedBy: 'empty', received: 25, delivered: 25, retried: 0, dead: 0, errors: 0, inFlight: 0})
    expect(seen.sort()).toEqual(Array.from({length: 25}, (_, i) => `m${i}`).sort())
    expect(await queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: 0})
    // Deletes are batched: never one request per message.
    expect(queue.count('delete')).toBe(0)
    const batches = queue.calls.filter((c) => c.op === 'deleteBatch').map((c) => (c.detail as {count: number}).count)
    expect(batches.reduce((a, b) => a + b, 0)).toBe(25)
    expect(batches.length).toBeLessThanOrEqual(6)
    expect(Math.max(...batches)).toBeLessThanOrEqual(10)
    // once mode never long-polls
    expect(queue.calls.filter((c) => c.op === 'receive').every((c) => (c.detail as {waitSeconds: number}).waitSeconds === 0)).toBe(true)
  })

  it('returns at once on an empty queue', async () => {
    const queue = new MemoryQueue()
    const result = await consume(queue, async () => delivered(), {once: true})
    expect(result).toMatchObject({stoppedBy: 'empty', received: 0})
    expect(queue.count('receive')).toBe(1)
  })

  it('drains FIFO groups completely in one run, in order per group', async () => {
    const queue = new MemoryQueue({fifo: true})
    for (let i = 0; i < 5; i++) await queue.sendBatch(['a', 'b', 'c'].map((group) => ({body: `${group}${i}`, groupId: group})))
    const order: string[] = []
    const result = await consume(
      queue,
      async (message) => {
        order.push(message.body)
        await sleep(5)
        return delivered()
      },
      {once: true, concurrency: 3},
    )
    expect(result).toMatchObject({delivered: 15, stoppedBy: 'empty'})
    for (const group of ['a', 'b', 'c']) {
      expect(order.filter((body) => body.startsWith(group))).toEqual([0, 1, 2, 3, 4].map((i) => `${group}${i}`))
    }
    expect(queue.messages).toHaveLength(0)
  })

  it('FIFO: finished heads are deleted in batches, and always before the next receive', async () => {
    // A FIFO group stays blocked while its finished head waits for its delete: the consumer must
    // send pending deletes before it receives again (here the flush tick alone would take 10 s).
    const queue = new MemoryQueue({fifo: true})
    const groups = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']
    for (let i = 0; i < 3; i++) await queue.sendBatch(groups.map((group) => ({body: `${group}${i}`, groupId: group})))
    const finished = new Set<string>()
    const stillThere: string[] = []
    queue.beforeReceive = () => {
      for (const message of queue.messages) if (finished.has(message.id)) stillThere.push(message.body)
    }
    const order: string[] = []
    const result = await consume(
      queue,
      async (message) => {
        order.push(message.body)
        await sleep(2)
        finished.add(message.id)
        return delivered()
      },
      {once: true, concurrency: 2, deleteFlushMs: 10_000},
    )
    expect(result).toMatchObject({delivered: 30, stoppedBy: 'empty'})
    expect(stillThere).toEqual([])
    for (const group of groups) expect(order.filter((body) => body.startsWith(group))).toEqual([0, 1, 2].map((i) => `${group}${i}`))
    // One receive of 10 heads, run two at a time: their deletes go out together before the next receive.
    const batches = queue.calls.filter((c) => c.op === 'deleteBatch').map((c) => (c.detail as {count: number}).count)
    expect(batches.reduce((a, b) => a + b, 0)).toBe(30)
    expect(batches.length).toBeLessThanOrEqual(6)
    expect(queue.messages).toHaveLength(0)
  })

  it('never runs more handlers than the concurrency limit, which may exceed 10', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 80)
    let running = 0
    let max = 0
    const result = await consume(
      queue,
      async () => {
        running++
        max = Math.max(max, running)
        await sleep(5 + Math.random() * 25)
        running--
        return delivered()
      },
      {once: true, concurrency: 13},
    )
    expect(result.delivered).toBe(80)
    expect(max).toBeLessThanOrEqual(13)
    expect(max).toBeGreaterThan(10)
    // Each receive asks for no more than the free slots.
    for (const call of queue.calls.filter((c) => c.op === 'receive')) {
      expect((call.detail as {maxMessages: number}).maxMessages).toBeLessThanOrEqual(10)
    }
  })

  it('caps the batch size by free slots when prefetch is off', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 6)
    let running = 0
    let max = 0
    await consume(
      queue,
      async () => {
        running++
        max = Math.max(max, running)
        await sleep(10)
        running--
        return delivered()
      },
      {once: true, concurrency: 2, prefetch: false},
    )
    expect(max).toBe(2)
    const sizes = queue.calls.filter((c) => c.op === 'receive').map((c) => (c.detail as {maxMessages: number}).maxMessages)
    expect(Math.max(...sizes)).toBe(2)
  })
})

describe('consume, prefetch', () => {
  /** Handles `n` messages at `concurrency` with handlers of uneven length; returns the receive calls. */
  async function drainCounting(n: number, concurrency: number, prefetch?: boolean) {
    const queue = new MemoryQueue()
    await fill(queue, n)
    // How many messages each receive returned.
    const got: number[] = []
    const receive = queue.receive.bind(queue)
    queue.receive = async (options) => {
      const messages = await receive(options)
      got.push(messages.length)
      return messages
    }
    let running = 0
    let max = 0
    let i = 0
    const result = await consume(
      queue,
      async () => {
        running++
        max = Math.max(max, running)
        await sleep(3 + (i++ % 4) * 4)
        running--
        return delivered()
      },
      {once: true, concurrency, prefetch},
    )
    const receives = queue.calls.filter((c) => c.op === 'receive').map((c) => (c.detail as {maxMessages: number}).maxMessages)
    return {queue, result, max, receives, got}
  }

  it('receives full batches once the pool is busy: one receive per 10 messages, not per freed slot', async () => {
    const {queue, result, max, receives, got} = await drainCounting(40, 4)
    expect(result).toMatchObject({stoppedBy: 'empty', received: 40, delivered: 40, retried: 0, released: 0, inFlight: 0})
    expect(max).toBe(4)
    expect(receives.every((size) => size === 10)).toBe(true)
    // 4 full batches; then once mode looks again as the last handlers settle (empty receives)
    expect(got.filter((count) => count > 0)).toEqual([10, 10, 10, 10])
    expect(receives.length).toBeLessThanOrEqual(4 + 4 + 1)
    expect(await queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: 0})
  })

  it('without prefetch the same run costs a receive per few messages (control)', async () => {
    const {result, max, receives, got} = await drainCounting(40, 4, false)
    expect(result).toMatchObject({received: 40, delivered: 40})
    expect(max).toBe(4)
    expect(Math.max(...receives)).toBeLessThanOrEqual(4)
    expect(got.filter((count) => count > 0).length).toBeGreaterThan(10)
  })

  it('keeps a prefetched message hidden while it waits past its visibility timeout, and handles it once', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 2)
    const log = memoryLog()
    const handled: Array<{body: string; receiveCount: number}> = []
    let rival: unknown[] | undefined
    const result = await consume(
      queue,
      async (message) => {
        handled.push({body: message.body, receiveCount: message.receiveCount})
        if (message.body === 'm0') {
          // m1 waits in the buffer for 1.6 s with a 1 s lease: only the heartbeat keeps it ours.
          await sleep(1300)
          rival = await queue.receive({maxMessages: 10})
          await sleep(300)
        }
        return delivered()
      },
      {once: true, concurrency: 1, visibilityTimeout: 1, log},
    )
    expect(rival).toEqual([])
    expect(handled).toEqual([
      {body: 'm0', receiveCount: 1},
      {body: 'm1', receiveCount: 1},
    ])
    expect(result).toMatchObject({received: 2, delivered: 2, stoppedBy: 'empty'})
    expect(queue.messages).toHaveLength(0)
    expect(log.lines.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([])
  })

  it('gives prefetched messages back at once on stop, while in-flight work still finishes', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 10)
    const controller = new AbortController()
    const handled: string[] = []
    const running = consume(
      queue,
      async (message) => {
        handled.push(message.body)
        await sleep(600)
        return delivered()
      },
      {concurrency: 1, waitSeconds: 0, signal: controller.signal},
    )
    await sleep(100)
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 10})
    controller.abort()
    await sleep(100)
    // The handler is still running; the nine it never started are back in the queue.
    expect(handled).toEqual(['m0'])
    expect(await queue.stats()).toMatchObject({visible: 9, inFlight: 1})
    const result = await running
    expect(result).toMatchObject({stoppedBy: 'signal', received: 1, delivered: 1, released: 0, inFlight: 0})
    expect(await queue.stats()).toMatchObject({visible: 9, inFlight: 0})
  })

  it('gives prefetched messages back within pausePollMs of a pause, without waiting for a free slot', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 5)
    let paused = false
    const handled: string[] = []
    const running = consume(
      queue,
      async (message) => {
        handled.push(message.body)
        await sleep(700)
        return delivered()
      },
      {concurrency: 1, waitSeconds: 0, paused: () => paused, pausePollMs: 20, signal: AbortSignal.timeout(1000)},
    )
    await sleep(100)
    paused = true
    await sleep(150)
    expect(await queue.stats()).toMatchObject({visible: 4, inFlight: 1})
    const result = await running
    expect(handled).toEqual(['m0'])
    expect(result).toMatchObject({received: 1, delivered: 1})
    expect(await queue.stats()).toMatchObject({visible: 4, inFlight: 0})
  })

  it('a retried FIFO head gives back its prefetched followers, so they cannot overtake it', async () => {
    // SQS FIFO hands out several messages of one group per receive (the memory queue does so when not fifo).
    const queue = new MemoryQueue()
    await queue.sendBatch(['a0', 'a1', 'a2'].map((body) => ({body, groupId: 'a'})))
    const order: string[] = []
    const result = await consume(
      queue,
      async (message) => {
        order.push(`${message.body}#${message.receiveCount}`)
        return message.body === 'a0' && message.receiveCount === 1 ? retry('the target hiccuped', 0) : delivered()
      },
      {once: true, concurrency: 1},
    )
    expect(order).toEqual(['a0#1', 'a0#2', 'a1#2', 'a2#2'])
    expect(result).toMatchObject({received: 4, delivered: 3, retried: 1, stoppedBy: 'empty'})
    expect(queue.messages).toHaveLength(0)
  })
})

describe('consume, outcomes', () => {
  it('retry hides the message for the given delay, then it comes back', async () => {
    const queue = new MemoryQueue()
    await queue.send({body: 'flaky'})
    const receiveCounts: number[] = []
    const controller = new AbortController()
    const result = await consume(
      queue,
      async (message) => {
        receiveCounts.push(message.receiveCount)
        if (message.receiveCount === 1) {
          // While it is being retried nobody sees it.
          return retry('target said 503', 1)
        }
        controller.abort()
        return delivered()
      },
      {concurrency: 1, waitSeconds: 1, signal: AbortSignal.any([controller.signal, AbortSignal.timeout(5000)]), idleMs: 50},
    )
    expect(receiveCounts).toEqual([1, 2])
    expect(result).toMatchObject({retried: 1, delivered: 1})
    const retryCall = queue.calls.find((c) => c.op === 'changeVisibility')
    expect(retryCall?.detail).toEqual({seconds: 1})
  })

  it('retry without a delay backs off by receive count, with jitter, capped at 15 minutes', async () => {
    expect(retryDelaySeconds(1, () => 0)).toBe(1)
    expect(retryDelaySeconds(1, () => 0.999)).toBe(2)
    expect(retryDelaySeconds(3, () => 0)).toBe(4)
    expect(retryDelaySeconds(3, () => 0.999)).toBe(8)
    expect(retryDelaySeconds(50, () => 0.999)).toBe(900)
    const queue = new MemoryQueue()
    await queue.send({body: 'x'})
    // A deadline before the retry is due: the retry's delay is what this test looks at.
    const result = await consume(queue, async () => retry('not yet'), {once: true, deadlineMs: 1000})
    expect(result).toMatchObject({retried: 1, stoppedBy: 'deadline'})
    const seconds = (queue.calls.find((c) => c.op === 'changeVisibility')?.detail as {seconds: number}).seconds
    expect(seconds).toBeGreaterThanOrEqual(1)
    expect(seconds).toBeLessThanOrEqual(2)
    // Put back, not deleted nor dead (visible again once its 1–2 s have passed: a loaded machine may take that long to get here).
    const after = await queue.stats()
    expect(after.visible + after.inFlight).toBe(1)
    expect(after.dead).toBe(0)
    // an explicit delay beyond 15 minutes is capped
    const other = new MemoryQueue()
    await other.send({body: 'y'})
    await consume(other, async () => retry('much later', 86_400), {once: true})
    expect(other.calls.find((c) => c.op === 'changeVisibility')?.detail).toEqual({seconds: 900})
  })

  it('dead moves the message to the dead-letter queue with the reason', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 3)
    const result = await consume(queue, async (message) => (message.body === 'm1' ? dead('malformed body') : delivered()), {once: true})
    expect(result).toMatchObject({delivered: 2, dead: 1})
    expect(queue.dead.map((m) => [m.body, m.deadReason])).toEqual([['m1', 'malformed body']])
    expect(await queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: 1})
  })

  it('a throwing handler counts an error, is logged and retried; the loop goes on', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 4)
    const log = memoryLog()
    const result = await consume(
      queue,
      async (message) => {
        if (message.body === 'm2') throw new Error('boom at the target')
        return delivered()
      },
      {once: true, log, deadlineMs: 1000},
    )
    expect(result).toMatchObject({delivered: 3, errors: 1, retried: 1, stoppedBy: 'deadline'})
    const line = log.lines.find((l) => l.level === 'error')
    expect(line?.msg).toBe('handler failed; retrying later')
    expect(line?.fields ?? line).toMatchObject({error: 'boom at the target'})
    // Put back, not deleted nor dead (visible again once its back-off has passed on a loaded machine).
    const after = await queue.stats()
    expect(after.visible + after.inFlight).toBe(1)
    expect(after.dead).toBe(0)
  })

  it('a handler that returns no outcome is treated like one that threw', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 2)
    const result = await consume(queue, (async (m: {body: string}) => (m.body === 'm0' ? undefined : delivered())) as unknown as Handler, {
      once: true,
      deadlineMs: 1000,
    })
    expect(result).toMatchObject({delivered: 1, errors: 1, retried: 1})
    // Put back, not deleted nor dead (visible again once its back-off has passed on a loaded machine).
    const after = await queue.stats()
    expect(after.visible + after.inFlight).toBe(1)
    expect(after.dead).toBe(0)
  })

  it('stop releases the message, stops receiving, lets the others settle, and ends with the error', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 10)
    const handled: string[] = []
    const error = new TargetUnhealthyError('Jenkins is down', 'check http://ci/health')
    const handler: Handler = async (message) => {
      if (message.body === 'm0') {
        await sleep(20)
        return stop(error)
      }
      await sleep(150)
      handled.push(message.body)
      return delivered()
    }
    // A stop outcome is the run's result now (was: consume() rejected with the error).
    const result = await consume(queue, handler, {once: true, concurrency: 3, batchSize: 3})
    expect(result).toMatchObject({stoppedBy: 'stop', exitCode: 3, problems: [error.oneLine, '8 remaining (not reached: the run stopped)'], released: 1, delivered: 2})
    expect(result.stopError).toBe(error)
    // The two others received with m0 finished and were deleted; nothing more was received.
    expect(handled.sort()).toEqual(['m1', 'm2'])
    expect(queue.count('receive')).toBe(1)
    const stats = await queue.stats()
    expect(stats).toMatchObject({visible: 8, inFlight: 0, delayed: 0, dead: 0})
    expect(queue.messages.find((m) => m.body === 'm0')?.receiveCount).toBe(1)
    // Released, never attempted.
    expect(queue.messages.find((m) => m.body === 'm0')?.attempts).toBe(0)
  })
})

describe('consume, foreground', () => {
  it('long-polls until the signal, then drains in-flight work and resolves', async () => {
    const queue = new MemoryQueue()
    const controller = new AbortController()
    const finished: string[] = []
    const running = consume(
      queue,
      async (message) => {
        controller.abort()
        await sleep(100)
        finished.push(message.body)
        return delivered()
      },
      {signal: controller.signal, waitSeconds: 20, stopDeadlineMs: 5000},
    )
    await sleep(50)
    await queue.send({body: 'late arrival'})
    const result = await running
    expect(result).toMatchObject({stoppedBy: 'signal', received: 1, delivered: 1, released: 0})
    expect(finished).toEqual(['late arrival'])
    expect(queue.messages).toHaveLength(0)
    expect((queue.calls.find((c) => c.op === 'receive')?.detail as {waitSeconds: number}).waitSeconds).toBe(20)
  })

  it('aborts handlers at the drain deadline and releases their messages', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 2)
    const controller = new AbortController()
    let sawAbort = 0
    const result = await consume(
      queue,
      (_message, context) =>
        new Promise((resolve) => {
          controller.abort()
          context.signal.addEventListener('abort', () => {
            sawAbort++
            resolve(retry('stopping'))
          })
        }),
      {signal: controller.signal, concurrency: 2, stopDeadlineMs: 150},
    )
    expect(result).toMatchObject({stoppedBy: 'signal', released: 2, inFlight: 0, delivered: 0})
    expect(sawAbort).toBe(2)
    // Released: visible again right away for the next consumer, with no retry delay applied.
    expect(await queue.stats()).toMatchObject({visible: 2, inFlight: 0})
  })

  it('keeps a slow handler\'s message hidden with the heartbeat', async () => {
    const queue = new MemoryQueue()
    await queue.send({body: 'slow'})
    const stolen: string[] = []
    let polling = true
    let rival: Promise<void> | undefined
    const result = await consume(
      queue,
      async () => {
        // Once the consumer holds it, a rival consumer polls the same queue the whole time.
        rival = (async () => {
          while (polling) {
            for (const m of await queue.receive({visibilityTimeout: 1})) stolen.push(m.body)
            await sleep(50)
          }
        })()
        await sleep(4500)
        return delivered()
      },
      {once: true, visibilityTimeout: 2},
    )
    polling = false
    await rival
    expect(result.delivered).toBe(1)
    expect(stolen).toEqual([])
    expect(queue.count('changeVisibility')).toBeGreaterThanOrEqual(3)
    expect(queue.messages).toHaveLength(0)
  })

  it('without the heartbeat the rival would have taken it (control)', async () => {
    const queue = new MemoryQueue()
    await queue.send({body: 'slow'})
    await queue.receive({visibilityTimeout: 1})
    await sleep(1100)
    expect((await queue.receive()).map((m) => m.body)).toEqual(['slow'])
  })

  it('backs off on receive errors instead of a hot loop, and logs them', async () => {
    const queue = new MemoryQueue()
    let failing = true
    queue.beforeReceive = () => {
      if (failing) throw new Error('connect ECONNREFUSED')
    }
    const log = memoryLog()
    const controller = new AbortController()
    const counts: ConsumeCounters[] = []
    const running = consume(queue, async () => delivered(), {
      signal: controller.signal,
      receiveBackoff: {baseMs: 40, maxMs: 160},
      log,
      onProgress: (c) => counts.push({...c}),
      waitSeconds: 0,
      idleMs: 20,
    })
    await sleep(1000)
    const failedReceives = queue.count('receive')
    // 40, 80, 160, 160… ms with equal jitter: at most ~1000/20 in a second; a hot loop makes thousands.
    expect(failedReceives).toBeGreaterThanOrEqual(4)
    expect(failedReceives).toBeLessThanOrEqual(30)
    failing = false
    await queue.send({body: 'after recovery'})
    await sleep(400)
    controller.abort()
    const result = await running
    expect(result.receiveErrors).toBeGreaterThanOrEqual(failedReceives - 1)
    expect(result.delivered).toBe(1)
    expect(log.lines.filter((l) => l.msg.startsWith('receive failed')).length).toBe(result.receiveErrors)
    expect(counts.at(-1)).toMatchObject({delivered: 1})
  })

  it('once mode gives up after repeated receive errors; a usage error stops at once', async () => {
    const queue = new MemoryQueue()
    const down = new Error('connect ECONNREFUSED')
    queue.beforeReceive = () => {
      throw down
    }
    const gaveUp = (await consume(queue, async () => delivered(), {once: true, receiveBackoff: {baseMs: 10, maxMs: 20}}).catch((error: unknown) => error)) as CisternError
    expect(gaveUp).toBeInstanceOf(CisternError)
    expect(gaveUp.oneLine).toBe('cannot receive from memory:test: connect ECONNREFUSED (5 attempts) — check the queue URL, credentials and network')
    expect(gaveUp.cause).toBe(down)
    expect(queue.count('receive')).toBe(5)

    const missing = new MemoryQueue()
    const usage = new UsageError('queue sqs://nope does not exist', 'create it or fix --queue')
    missing.beforeReceive = () => {
      throw usage
    }
    await expect(consume(missing, async () => delivered(), {signal: AbortSignal.timeout(5000)})).rejects.toBe(usage)
    expect(missing.count('receive')).toBe(1)
  })

  it('waits while paused, then works; exits promptly on the signal while paused', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 3)
    let paused = true
    const received: number[] = []
    const controller = new AbortController()
    const running = consume(
      queue,
      async () => {
        received.push(Date.now())
        return delivered()
      },
      {signal: controller.signal, paused: () => paused, pausePollMs: 30, waitSeconds: 0, idleMs: 20},
    )
    await sleep(300)
    expect(queue.count('receive')).toBe(0)
    expect(received).toHaveLength(0)
    paused = false
    await sleep(300)
    expect(received).toHaveLength(3)
    paused = true
    await sleep(100)
    const before = Date.now()
    controller.abort()
    const result = await running
    expect(Date.now() - before).toBeLessThan(1000)
    expect(result).toMatchObject({delivered: 3, stoppedBy: 'signal'})
  })

  it('a batch received just as the pause began is handed back untouched', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 3)
    let checks = 0
    const handled: string[] = []
    // Not paused before the receive, paused right after it (maintenance began during the long poll).
    const result = await consume(
      queue,
      async (m) => {
        handled.push(m.body)
        return delivered()
      },
      {signal: AbortSignal.timeout(300), paused: () => ++checks >= 2, pausePollMs: 20},
    )
    expect(handled).toEqual([])
    expect(result.received).toBe(0)
    expect(queue.count('receive')).toBe(1)
    expect(await queue.stats()).toMatchObject({visible: 3, inFlight: 0})
  })

  it('stops the heartbeat when the lease is lost, and says so', async () => {
    const queue = new MemoryQueue()
    await queue.send({body: 'x'})
    const log = memoryLog()
    const result = await consume(
      queue,
      async (message) => {
        // Someone else's delete makes our receipt stale.
        await queue.delete(message.receiptHandle)
        await sleep(1800)
        return delivered()
      },
      {once: true, visibilityTimeout: 1, log},
    )
    expect(result.delivered).toBe(1)
    // one failed beat, then no more; the late delete is reported, not thrown
    expect(queue.count('changeVisibility')).toBe(1)
    expect(log.lines.filter((l) => l.msg.startsWith('lost the lease'))).toHaveLength(1)
    expect(log.lines.some((l) => l.msg.startsWith('could not delete a finished message'))).toBe(true)
  })

  it('a paused() that throws counts as paused', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 1)
    const result = await consume(queue, async () => delivered(), {
      signal: AbortSignal.timeout(300),
      paused: () => {
        throw new Error('redis down')
      },
      pausePollMs: 20,
    })
    expect(result.received).toBe(0)
    expect(queue.count('receive')).toBe(0)
  })

  it('reports progress on every counter change', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 5)
    const seen: ConsumeCounters[] = []
    const result = await consume(queue, async (m) => (m.body === 'm4' ? dead('no') : delivered()), {once: true, onProgress: (c) => seen.push({...c})})
    expect(seen.length).toBeGreaterThanOrEqual(10)
    const last = seen.at(-1)!
    expect(last).toMatchObject({received: 5, delivered: 4, dead: 1, inFlight: 0})
    expect(result).toMatchObject(last)
    // received never decreases
    const received = seen.map((c) => c.received)
    expect(received).toEqual(received.toSorted((a, b) => a - b))
  })

  it('returns at once when the signal is already aborted', async () => {
    const queue = new MemoryQueue()
    await fill(queue, 1)
    const controller = new AbortController()
    controller.abort()
    const result = await consume(queue, async () => delivered(), {signal: controller.signal})
    expect(result).toMatchObject({stoppedBy: 'signal', received: 0})
    expect(queue.count('receive')).toBe(0)
  })
})

// --- the real embedded queue, and consumer processes killed mid-batch ---------------------------------

const fixture = fileURLToPath(new URL('../fixtures/consumer.mjs', import.meta.url))
const children: ChildProcess[] = []
afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
})

interface Consumer {
  child: ChildProcess
  lines: string[]
  exit: Promise<{code: number | null; signal: NodeJS.Signals | null}>
}

function startConsumer(env: Record<string, string>): Consumer {
  const child = spawn(process.execPath, [fixture], {env: {...process.env, ...env}, stdio: ['ignore', 'pipe', 'pipe']})
  children.push(child)
  const lines: string[] = []
  let partial = ''
  child.stdout.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n')
    partial = parts.pop() ?? ''
    lines.push(...parts)
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exit = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) =>
    child.on('exit', (code, signal) => {
      if (code) console.error(`consumer exited ${code}: ${stderr}`)
      resolve({code, signal})
    }),
  )
  return {child, lines, exit}
}

/** Poll until `check` is true (bounded: fails the test after `ms`). */
async function until(check: () => boolean | Promise<boolean>, ms: number, what: string) {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

const processed = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [])

describe('consume on the embedded SQLite queue', () => {
  const dir = tempDir()
  let n = 0
  async function freshQueue(): Promise<{url: string; queue: Queue}> {
    const url = `sqlite:${join(dir, 'consume.db')}#q${++n}`
    return {url, queue: await openQueue(url, {maxReceiveCount: 0})}
  }

  it('the heartbeat keeps a slow message from a rival on a second connection', async () => {
    const {url, queue} = await freshQueue()
    const rivalQueue = await openQueue(url)
    await queue.send({body: 'slow'})
    const stolen: string[] = []
    let polling = true
    let rival: Promise<void> | undefined
    const result = await consume(
      queue,
      async () => {
        rival = (async () => {
          while (polling) {
            for (const m of await rivalQueue.receive({visibilityTimeout: 1})) stolen.push(m.body)
            await sleep(50)
          }
        })()
        await sleep(4500)
        return delivered()
      },
      {once: true, visibilityTimeout: 2},
    )
    polling = false
    await rival
    expect(result.delivered).toBe(1)
    expect(stolen).toEqual([])
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, delayed: 0})
    await rivalQueue.close()
    await queue.close()
  })

  it('handles each message exactly once at concurrency 20, never above it', async () => {
    const {queue} = await freshQueue()
    const bodies = Array.from({length: 200}, (_, i) => `c-${i}`)
    for (let i = 0; i < bodies.length; i += 10) await queue.sendBatch(bodies.slice(i, i + 10).map((body) => ({body})))
    const seen: string[] = []
    let running = 0
    let max = 0
    const result = await consume(
      queue,
      async (message) => {
        running++
        max = Math.max(max, running)
        seen.push(message.body)
        await sleep(Math.random() * 10)
        running--
        return delivered()
      },
      {once: true, concurrency: 20},
    )
    expect(result).toMatchObject({received: 200, delivered: 200, stoppedBy: 'empty'})
    expect(seen.length).toBe(200)
    expect(new Set(seen).size).toBe(200)
    expect(max).toBeLessThanOrEqual(20)
    expect(max).toBeGreaterThan(10)
    expect(await queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: 0})
    await queue.close()
  })

  it('two consumer processes on one file share the work without handling a message twice', async () => {
    const {url, queue} = await freshQueue()
    const bodies = Array.from({length: 60}, (_, i) => `p-${i}`)
    for (let i = 0; i < bodies.length; i += 10) await queue.sendBatch(bodies.slice(i, i + 10).map((body) => ({body})))
    const out1 = join(dir, `p1-${n}.out`)
    const out2 = join(dir, `p2-${n}.out`)
    const common = {QUEUE_URL: url, HANDLER_MS: '30', CONCURRENCY: '4', VISIBILITY: '30', ONCE: '1'}
    const one = startConsumer({...common, OUT_FILE: out1})
    const two = startConsumer({...common, OUT_FILE: out2})
    expect((await one.exit).code).toBe(0)
    expect((await two.exit).code).toBe(0)
    const all = [...processed(out1), ...processed(out2)]
    expect(all.sort()).toEqual([...bodies].sort())
    expect(await queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: 0})
    await queue.close()
  })

  it('a stop signal cuts a 20 s long poll short', async () => {
    const {queue} = await freshQueue()
    const controller = new AbortController()
    const running = consume(queue, async () => delivered(), {signal: controller.signal, waitSeconds: 20})
    await sleep(200)
    const stopped = Date.now()
    controller.abort()
    const result = await running
    // Far below the 20 s wait: the signal reached the receive.
    expect(Date.now() - stopped).toBeLessThan(5000)
    expect(result).toMatchObject({stoppedBy: 'signal', received: 0})
    await queue.close()
  })

  it('a consumer killed with SIGKILL mid-batch loses nothing', async () => {
    const {url, queue} = await freshQueue()
    const bodies = Array.from({length: 20}, (_, i) => `job-${i}`)
    for (let i = 0; i < bodies.length; i += 10) await queue.sendBatch(bodies.slice(i, i + 10).map((body) => ({body})))
    const outA = join(dir, `a${n}.out`)
    const a = startConsumer({QUEUE_URL: url, OUT_FILE: outA, HANDLER_MS: '400', CONCURRENCY: '5', VISIBILITY: '2', WAIT_SECONDS: '0'})
    // Mid-batch: some finished, others running.
    await until(() => processed(outA).length >= 3 && a.lines.filter((l) => l.startsWith('start')).length > processed(outA).length, 20_000, 'consumer A mid-batch')
    a.child.kill('SIGKILL')
    expect((await a.exit).signal).toBe('SIGKILL')
    const finishedByA = new Set(processed(outA))
    const leased = (await queue.stats()).inFlight
    expect(leased).toBeGreaterThan(0)

    const outB = join(dir, `b${n}.out`)
    const b = startConsumer({QUEUE_URL: url, OUT_FILE: outB, HANDLER_MS: '20', CONCURRENCY: '5', VISIBILITY: '2', WAIT_SECONDS: '1'})
    // Everything A did not finish comes back after A's visibility timeout and B does it.
    await until(() => bodies.every((body) => finishedByA.has(body) || processed(outB).includes(body)), 20_000, 'consumer B to finish the rest')
    b.child.kill('SIGTERM')
    expect((await b.exit).code).toBe(0)
    const all = new Set([...finishedByA, ...processed(outB)])
    expect([...all].sort()).toEqual([...bodies].sort())
    // B did at least everything A left unfinished (duplicates are allowed: at-least-once).
    expect(processed(outB).length).toBeGreaterThanOrEqual(bodies.length - finishedByA.size)
    await until(async () => (await queue.stats()).inFlight === 0, 5000, 'leases to clear')
    expect(await queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: 0})
    await queue.close()
  })

  it('SIGTERM drains in-flight work and exits 0', async () => {
    const {url, queue} = await freshQueue()
    await queue.sendBatch(Array.from({length: 4}, (_, i) => ({body: `t-${i}`})))
    const out = join(dir, `term${n}.out`)
    const c = startConsumer({QUEUE_URL: url, OUT_FILE: out, HANDLER_MS: '800', CONCURRENCY: '4', VISIBILITY: '10', WAIT_SECONDS: '1'})
    await until(() => c.lines.filter((l) => l.startsWith('start')).length === 4, 20_000, 'all four started')
    c.child.kill('SIGTERM')
    const {code} = await c.exit
    expect(code).toBe(0)
    expect(processed(out).sort()).toEqual(['t-0', 't-1', 't-2', 't-3'])
    const result = JSON.parse(c.lines.find((l) => l.startsWith('result '))!.slice('result '.length))
    expect(result).toMatchObject({stoppedBy: 'signal', delivered: 4, released: 0, inFlight: 0, exitCode: 0})
    expect(await queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: 0})
    await queue.close()
  })

  it('SIGTERM past the drain deadline releases unfinished messages and still exits 0', async () => {
    const {url, queue} = await freshQueue()
    await queue.sendBatch(Array.from({length: 3}, (_, i) => ({body: `r-${i}`})))
    const out = join(dir, `rel${n}.out`)
    const c = startConsumer({QUEUE_URL: url, OUT_FILE: out, HANDLER_MS: '60000', CONCURRENCY: '3', VISIBILITY: '30', DRAIN_MS: '300'})
    await until(() => c.lines.filter((l) => l.startsWith('start')).length === 3, 20_000, 'all three started')
    c.child.kill('SIGTERM')
    expect((await c.exit).code).toBe(0)
    const result = JSON.parse(c.lines.find((l) => l.startsWith('result '))!.slice('result '.length))
    expect(result).toMatchObject({stoppedBy: 'signal', delivered: 0, released: 3})
    // Released at once (not after the 30 s visibility timeout): the next consumer gets them now.
    expect(await queue.stats()).toMatchObject({visible: 3, inFlight: 0})
    const again = await queue.receive({maxMessages: 10})
    expect(again.map((m) => m.receiveCount)).toEqual([2, 2, 2])
    await queue.close()
  })
})

// The in-memory queue the unit tests above rely on must itself keep the contract every backend keeps.
// (Counts only: the contract compares stats() with exactly the four counts.)
queueContract('memory (test helper)', async (options) => ({queue: new MemoryQueue({...options, detailedStats: false})}), {
  fifo: true,
  delay: true,
  visibility: true,
  staleReceiptErrors: true,
  maxReceiveCount: true,
  dedupInQueue: true,
  stats: true,
  purge: true,
  redrive: true,
  releaseNotCounted: true,
  deadAtReceive: true,
  deadLetters: 'moved',
})
