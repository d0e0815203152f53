/**
 * The queue contract, run against every backend (sqlite.test.ts, sqs.test.ts, apigw.test.ts).
 * A backend states what it can do (capabilities + features); the tests it cannot meet are
 * skipped, never weakened.
 */
import {afterEach, describe, expect, it} from 'vitest'

import {ExitCode, UsageError} from '../../../src/core/errors.js'
import type {Logger} from '../../../src/core/log.js'
import {QueueBatchError, StaleReceiptError} from '../../../src/core/queue/errors.js'
import type {Queue, QueueMessage, SendInput} from '../../../src/core/queue/types.js'

export interface SubjectOptions {
  fifo?: boolean
  maxReceiveCount?: number
  /** Default visibility timeout of the queue (seconds). */
  visibilityTimeout?: number
  /** Open as a worker that dead-letters (OpenQueueOptions.consumer). */
  consumer?: boolean
  log?: Logger
}

export interface Subject {
  queue: Queue
  /** Puts messages in when the queue cannot send (the facade): straight into the backing store. */
  seed?: (messages: SendInput[]) => Promise<void>
  close?: () => Promise<void>
  /** Bytes the queue holds on disk (the embedded queue's file and its WAL), where there is a disk. */
  diskBytes?: () => number
}

export interface ContractFeatures {
  fifo: boolean
  /** Per-message delaySeconds. */
  delay: boolean
  /** changeVisibility works (the facade's is a no-op). */
  visibility: boolean
  /** A stale receipt raises StaleReceiptError (SQS answers success and deletes nothing). */
  staleReceiptErrors: boolean
  /** Messages go dead on the receive after maxReceiveCount. */
  maxReceiveCount: boolean
  /** deduplicationId against messages still in the queue, on a standard queue. */
  dedupInQueue: boolean
  /** stats() knows the counts. */
  stats: boolean
  purge: boolean
  redrive: boolean
  // The delivery contract's queue semantics (docs/delivery.md). Absent: not claimed, tests skipped.
  /** release() hands a message back without counting an attempt (attempts = receives − releases). */
  releaseNotCounted?: boolean
  /** Attempts used up without a settled outcome: dead at the next receive, reported (onDead, else a warn line). */
  deadAtReceive?: boolean
  /** Grouped messages are delivered in order, one in flight per group, on a queue not created FIFO. */
  groupsOnEveryQueue?: boolean
  /**
   * 'moved': deadLetter() sets the message aside now, with its reason (a dead table, a dead-letter
   * queue, a dead-letter store); 'refused': there is nowhere to put it (SQS without a dead-letter
   * queue): deadLetter() refuses with the fix, the message stays, and a consumer refuses to open.
   */
  deadLetters?: 'moved' | 'refused'
  /** stats() tells the oldest message's age and when the next hidden message becomes visible. */
  statsAges?: boolean
  // Limits of an emulator, not of the backend it stands in for.
  /** Bodies cannot hold characters beyond U+FFFF (fauxqs 1.9.2 refuses surrogate pairs; SQS accepts them). */
  noAstralCharacters?: boolean
  /** DeleteMessageBatch accepts a receipt handle that was never issued (fauxqs 1.9.2). */
  acceptsUnknownReceipts?: boolean
}

/** A logger that keeps its lines, to assert what was said. */
export function recordingLogger(): Logger & {lines: Array<{level: string; message: string; fields?: Record<string, unknown>}>} {
  const lines: Array<{level: string; message: string; fields?: Record<string, unknown>}> = []
  const logger = {
    level: 'debug' as const,
    lines,
    debug: (message: string, fields?: Record<string, unknown>) => void lines.push({level: 'debug', message, fields}),
    info: (message: string, fields?: Record<string, unknown>) => void lines.push({level: 'info', message, fields}),
    warn: (message: string, fields?: Record<string, unknown>) => void lines.push({level: 'warn', message, fields}),
    error: (message: string, fields?: Record<string, unknown>) => void lines.push({level: 'error', message, fields}),
    child: () => logger,
  }
  return logger
}

export type SubjectFactory = (options: SubjectOptions) => Promise<Subject>

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Receive until `count` messages arrived or `tries` empty receives passed. */
async function receiveAll(queue: Queue, count: number, tries = 5): Promise<QueueMessage[]> {
  const out: QueueMessage[] = []
  for (let empty = 0; out.length < count && empty < tries; ) {
    const got = await queue.receive({maxMessages: 10})
    if (got.length === 0) empty++
    out.push(...got)
  }
  return out
}

export function queueContract(name: string, factory: SubjectFactory, features: ContractFeatures): void {
  // Without anywhere to put dead letters there is nothing to count: stats() says -1 (cannot tell).
  const noDeadCount = features.deadLetters === 'refused' ? -1 : 0
  describe(`queue contract: ${name}`, () => {
    const open: Subject[] = []
    afterEach(async () => {
      for (const subject of open.splice(0)) {
        await subject.queue.close()
        await subject.close?.()
      }
    })

    async function subject(options: SubjectOptions = {}): Promise<Subject> {
      const s = await factory(options)
      open.push(s)
      return s
    }

    async function put(s: Subject, messages: SendInput[]): Promise<void> {
      if (s.queue.capabilities.send) await s.queue.sendBatch(messages)
      else await s.seed!(messages)
    }

    it('round-trips a body byte for byte with its id, receive count and attributes', async () => {
      const s = await subject()
      const body = `{"a": 1,\n  "ü": "\u00e9${features.noAstralCharacters ? '\u20ac' : '\ud83d\ude00'}", "tab":"\t"}  `
      await put(s, [{body, attributes: {kind: 'test', 'X-Thing': 'v 1'}}])
      const [message, ...rest] = await s.queue.receive({maxMessages: 10})
      expect(rest).toEqual([])
      expect(message!.body).toBe(body)
      expect(message!.id).toMatch(/\S/)
      expect(message!.receiptHandle).toMatch(/\S/)
      expect(message!.receiveCount).toBe(1)
      expect(message!.attributes).toMatchObject({kind: 'test', 'X-Thing': 'v 1'})
    })

    it('returns an empty array from an empty queue', async () => {
      const s = await subject()
      expect(await s.queue.receive({waitSeconds: 0})).toEqual([])
    })

    it('hides a received message until deleted; a deleted message never comes back', async () => {
      const s = await subject({visibilityTimeout: 1})
      await put(s, [{body: 'one'}])
      const [message] = await s.queue.receive()
      expect(await s.queue.receive()).toEqual([])
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 1})
      await s.queue.delete(message!.receiptHandle)
      await sleep(1200)
      expect(await s.queue.receive()).toEqual([])
      if (features.stats) expect(await s.queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: noDeadCount})
    })

    // Needs a per-receive visibility timeout (the facade's is fixed by its configuration).
    it.runIf(features.visibility)('redelivers after the visibility timeout with a fresh receipt; the old receipt cannot touch the new lease', async () => {
      const s = await subject({visibilityTimeout: 1})
      await put(s, [{body: 'again'}])
      const [first] = await s.queue.receive()
      await sleep(1200)
      const [second] = await s.queue.receive({visibilityTimeout: 30})
      expect(second!.id).toBe(first!.id)
      expect(second!.receiveCount).toBe(2)
      expect(second!.receiptHandle).not.toBe(first!.receiptHandle)
      if (features.staleReceiptErrors) {
        await expect(s.queue.delete(first!.receiptHandle)).rejects.toBeInstanceOf(StaleReceiptError)
        if (features.visibility) await expect(s.queue.changeVisibility(first!.receiptHandle, 0)).rejects.toBeInstanceOf(StaleReceiptError)
      } else {
        await s.queue.delete(first!.receiptHandle).catch(() => undefined)
      }
      // The second holder's lease is intact: still hidden, and its receipt deletes it.
      expect(await s.queue.receive()).toEqual([])
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 1})
      await s.queue.delete(second!.receiptHandle)
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 0})
    })

    it.runIf(features.staleReceiptErrors)('refuses a delete after the lease lapsed, and a receipt that was never issued', async () => {
      const s = await subject({visibilityTimeout: 1})
      await put(s, [{body: 'lapse'}])
      const [message] = await s.queue.receive()
      await sleep(1200)
      await expect(s.queue.delete(message!.receiptHandle)).rejects.toBeInstanceOf(StaleReceiptError)
      await expect(s.queue.delete('1.not-a-receipt')).rejects.toBeInstanceOf(StaleReceiptError)
      const [again] = await s.queue.receive()
      expect(again!.id).toBe(message!.id)
    })

    it.runIf(features.visibility)('changeVisibility(0) releases at once; extending keeps the message past its first timeout', async () => {
      const s = await subject({visibilityTimeout: 1})
      await put(s, [{body: 'vis'}])
      const [m1] = await s.queue.receive()
      await s.queue.changeVisibility(m1!.receiptHandle, 0)
      const [m2] = await s.queue.receive()
      expect(m2!.id).toBe(m1!.id)
      await s.queue.changeVisibility(m2!.receiptHandle, 5)
      await sleep(1300)
      expect(await s.queue.receive()).toEqual([])
      await s.queue.delete(m2!.receiptHandle)
    })

    it('splits a send batch over 10, receives at most 10 (or maxMessages) per call, and rejects maxMessages over 10', async () => {
      const s = await subject({visibilityTimeout: 30})
      await put(
        s,
        Array.from({length: 23}, (_, i) => ({body: `m${i}`})),
      )
      const first = await s.queue.receive({maxMessages: 3})
      expect(first.length).toBeGreaterThan(0)
      expect(first.length).toBeLessThanOrEqual(3)
      const rest = await receiveAll(s.queue, 23 - first.length)
      for (const batch of [first, rest]) for (const m of batch) expect(m.receiveCount).toBe(1)
      const bodies = [...first, ...rest].map((m) => m.body).sort()
      expect(bodies).toEqual(Array.from({length: 23}, (_, i) => `m${i}`).sort())
      await expect(s.queue.receive({maxMessages: 11})).rejects.toBeInstanceOf(UsageError)
    })

    it('deleteBatch deletes the good handles and reports the bad one by index', async () => {
      const s = await subject()
      await put(s, [{body: 'a'}, {body: 'b'}, {body: 'c'}])
      const got = await receiveAll(s.queue, 3)
      expect(got).toHaveLength(3)
      const handles = got.map((m) => m.receiptHandle)
      const error = await s.queue.deleteBatch([handles[0]!, '999999.bogus', handles[1]!, handles[2]!]).catch((e: unknown) => e)
      if (!features.acceptsUnknownReceipts) {
        expect(error).toBeInstanceOf(QueueBatchError)
        expect((error as QueueBatchError).failures.map((f) => f.index)).toEqual([1])
      } else expect(error).toBeUndefined()
      // The good ones are gone: releasing them is impossible and nothing comes back.
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 0})
      expect(await s.queue.receive()).toEqual([])
    })

    it('long poll returns a message that arrives during the wait', async () => {
      const s = await subject()
      const waiting = s.queue.receive({waitSeconds: 10})
      await sleep(300)
      await put(s, [{body: 'late'}])
      const got = await waiting
      expect(got.map((m) => m.body)).toEqual(['late'])
    })

    it('long poll stops early when its signal aborts', async () => {
      const s = await subject()
      const controller = new AbortController()
      const started = Date.now()
      setTimeout(() => controller.abort(), 200)
      const got = await s.queue.receive({waitSeconds: 20, signal: controller.signal})
      expect(got).toEqual([])
      // Without the signal this would take 20 s.
      expect(Date.now() - started).toBeLessThan(15_000)
    })

    it.runIf(features.delay)('delays a message per send and counts it as delayed', async () => {
      const s = await subject()
      await put(s, [{body: 'later', delaySeconds: 1}, {body: 'now'}])
      const now = await s.queue.receive()
      expect(now.map((m) => m.body)).toEqual(['now'])
      if (features.stats) expect(await s.queue.stats()).toMatchObject({delayed: 1, inFlight: 1})
      await sleep(1200)
      const later = await s.queue.receive()
      expect(later.map((m) => m.body)).toEqual(['later'])
    })

    it.runIf(features.maxReceiveCount)('moves a message to dead on the receive after maxReceiveCount', async () => {
      const s = await subject({maxReceiveCount: 2})
      await put(s, [{body: 'poison'}, {body: 'fine'}])
      for (let round = 1; round <= 2; round++) {
        const got = await receiveAll(s.queue, 2)
        const poison = got.find((m) => m.body === 'poison')!
        expect(poison.receiveCount).toBe(round)
        for (const m of got) {
          if (m.body === 'poison') await s.queue.changeVisibility(m.receiptHandle, 0)
          else await s.queue.delete(m.receiptHandle)
        }
      }
      expect(await s.queue.receive()).toEqual([])
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 1})
    })

    it.runIf(features.redrive)('deadLetter moves a message now; redrive brings it back with the receive count reset', async () => {
      const s = await subject()
      await put(s, [{body: 'bad'}])
      const [message] = await s.queue.receive()
      expect(await s.queue.deadLetter(message!, 'target said 422')).toBe('dead-letter-queue')
      expect(await s.queue.receive()).toEqual([])
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 1})
      if (s.queue.peekDead) {
        const [dead] = await s.queue.peekDead()
        expect(dead!.body).toBe('bad')
        expect(dead!.attributes['cistern.deadReason']).toBe('target said 422')
      }
      expect(await s.queue.redrive()).toBe(1)
      const [back] = await receiveAll(s.queue, 1)
      expect(back!.body).toBe('bad')
      expect(back!.receiveCount).toBe(1)
      if (features.stats) expect(await s.queue.stats()).toMatchObject({dead: 0, inFlight: 1})
    })

    it.runIf(features.dedupInQueue)('deduplicates against messages still queued, not against deleted ones', async () => {
      const s = await subject()
      const first = await s.queue.send({body: 'x', deduplicationId: 'delivery-1'})
      const again = await s.queue.send({body: 'x (redelivered)', deduplicationId: 'delivery-1'})
      expect(again).toEqual({id: first.id, duplicate: true})
      const [inBatch, other] = await s.queue.sendBatch([
        {body: 'x', deduplicationId: 'delivery-1'},
        {body: 'y', deduplicationId: 'delivery-2'},
      ])
      expect(inBatch).toEqual({id: first.id, duplicate: true})
      expect(other!.duplicate).toBeFalsy()
      const got = await receiveAll(s.queue, 2)
      expect(got.map((m) => m.body).sort()).toEqual(['x', 'y'])
      // Still in flight: still a duplicate.
      expect((await s.queue.send({body: 'x', deduplicationId: 'delivery-1'})).duplicate).toBe(true)
      await s.queue.deleteBatch(got.map((m) => m.receiptHandle))
      const after = await s.queue.send({body: 'x', deduplicationId: 'delivery-1'})
      expect(after.duplicate).toBeFalsy()
      expect(after.id).not.toBe(first.id)
    })

    it.runIf(features.stats)('counts visible, in flight, delayed and dead', async () => {
      const s = await subject()
      expect(await s.queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: noDeadCount})
      await put(s, [{body: '1'}, {body: '2'}, {body: '3'}, ...(features.delay ? [{body: 'd', delaySeconds: 60}] : [])])
      await s.queue.receive({maxMessages: 1})
      const stats = await s.queue.stats()
      expect(stats).toMatchObject({visible: 2, inFlight: 1, delayed: features.delay ? 1 : 0, dead: noDeadCount})
      if (features.statsAges) {
        expect(stats.oldestAgeSeconds).toBeGreaterThanOrEqual(0)
        expect(stats.oldestAgeSeconds).toBeLessThan(10)
        // The in-flight message's lease (30 s) ends before the delayed one (60 s) shows.
        expect(stats.nextVisibleAt!.getTime()).toBeGreaterThan(Date.now() + 20_000)
        expect(stats.nextVisibleAt!.getTime()).toBeLessThan(Date.now() + 31_000)
      }
    })

    it.runIf(features.statsAges)('an empty queue has no oldest age and nothing to become visible', async () => {
      const s = await subject()
      const stats = await s.queue.stats()
      expect(stats.oldestAgeSeconds).toBeUndefined()
      expect(stats.nextVisibleAt).toBeUndefined()
    })

    it.runIf(features.purge)('purge deletes waiting and in-flight messages and says how many', async () => {
      const s = await subject()
      await put(s, [{body: '1'}, {body: '2'}, {body: '3'}])
      await s.queue.receive({maxMessages: 1})
      const purged = await s.queue.purge()
      if (purged !== -1) expect(purged).toBe(3)
      expect(await receiveAll(s.queue, 1, 2)).toEqual([])
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 0})
    })

    it('peek shows waiting messages without receiving them (when it can)', async () => {
      const s = await subject()
      if (!s.queue.capabilities.peek) {
        await expect(s.queue.peek()).rejects.toThrow()
        return
      }
      await put(s, [{body: 'p1'}, {body: 'p2'}])
      const peeked = await s.queue.peek(10)
      expect(peeked.map((m) => m.body).sort()).toEqual(['p1', 'p2'])
      const got = await receiveAll(s.queue, 2)
      expect(got.map((m) => m.receiveCount)).toEqual([1, 1])
    })

    it.runIf(features.visibility)('release(handle, delay) hands a message back: hidden for the delay, then received again with a fresh receipt', async () => {
      const s = await subject({visibilityTimeout: 30})
      await put(s, [{body: 'held'}])
      const [first] = await s.queue.receive()
      await s.queue.release(first!.receiptHandle, 1)
      expect(await s.queue.receive()).toEqual([])
      await sleep(1200)
      const [again] = await s.queue.receive()
      expect(again!.id).toBe(first!.id)
      expect(again!.receiveCount).toBe(2)
      if (features.releaseNotCounted) expect(again!.attempts).toBe(1)
      else expect(again!.attempts ?? again!.receiveCount).toBe(2) // SQS counts every receive
      await s.queue.release(again!.receiptHandle)
      const [third] = await s.queue.receive()
      expect(third!.id).toBe(first!.id)
      await s.queue.delete(third!.receiptHandle)
    })

    it.runIf(features.releaseNotCounted)('released receives never count toward maxReceiveCount; attempts do', async () => {
      const s = await subject({maxReceiveCount: 2})
      await put(s, [{body: 'patient'}])
      // A stopping or paused worker hands it back again and again: never dead.
      for (let i = 1; i <= 6; i++) {
        const [m] = await s.queue.receive()
        expect(m!.body).toBe('patient')
        expect(m!.receiveCount).toBe(i)
        expect(m!.attempts).toBe(1)
        await s.queue.release(m!.receiptHandle)
      }
      // Two attempts that were not released (a retry with no delay): the limit is reached.
      const [a1] = await s.queue.receive()
      await s.queue.changeVisibility(a1!.receiptHandle, 0)
      const [a2] = await s.queue.receive()
      expect(a2!.attempts).toBe(2)
      expect(await s.queue.maxAttempts!()).toBe(2)
      await s.queue.release(a2!.receiptHandle)
      const [still] = await s.queue.receive()
      expect(still!.attempts).toBe(2) // a release after the last attempt keeps it alive
      await s.queue.delete(still!.receiptHandle)
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 0})
    })

    it.runIf(features.deadAtReceive)('attempts used up without a settled outcome: dead at the next receive, reported through onDead', async () => {
      const s = await subject({maxReceiveCount: 2, visibilityTimeout: 1})
      await put(s, [{body: 'killed twice'}, {body: 'fine'}])
      // Its worker is killed while handling it, twice: the lease lapses each time.
      for (let round = 1; round <= 2; round++) {
        const got = await receiveAll(s.queue, 2)
        for (const m of got) if (m.body === 'fine') await s.queue.release(m.receiptHandle)
        expect(got.find((m) => m.body === 'killed twice')!.attempts).toBe(round)
        await sleep(1100)
      }
      const reported: Array<{message: QueueMessage; reason: string}> = []
      const got = await s.queue.receive({onDead: (message, reason) => reported.push({message, reason})})
      expect(got.map((m) => m.body)).toEqual(['fine'])
      expect(reported).toHaveLength(1)
      expect(reported[0]!.message.body).toBe('killed twice')
      expect(reported[0]!.reason).toMatch(/maxReceiveCount 2 after 2 attempts; the last attempt never settled/)
      if (features.stats) expect(await s.queue.stats()).toMatchObject({inFlight: 1, dead: 1})
      const [dead] = s.queue.peekDead ? await s.queue.peekDead() : []
      if (dead) expect(dead.attributes['cistern.deadReason']).toBe(reported[0]!.reason)
    })

    it.runIf(features.deadAtReceive)('without onDead, a dead letter made at receive is a warn line through the queue\'s logger', async () => {
      const log = recordingLogger()
      const s = await subject({maxReceiveCount: 1, visibilityTimeout: 1, log})
      await put(s, [{body: 'lost worker'}])
      const [m] = await s.queue.receive()
      await sleep(1100)
      expect(await s.queue.receive()).toEqual([])
      const warn = log.lines.filter((line) => line.level === 'warn')
      expect(warn).toHaveLength(1)
      expect(warn[0]!.message).toMatch(/dead-lettered at receive/)
      expect(warn[0]!.fields).toMatchObject({messageId: m!.id, reason: expect.stringMatching(/maxReceiveCount 1/)})
    })

    it.runIf(features.deadLetters === 'moved')('deadLetter sets the message aside at once, with its reason; it never comes back', async () => {
      const s = await subject({visibilityTimeout: 1})
      await put(s, [{body: 'poison', attributes: {origin: 'test'}}, {body: 'good'}])
      const got = await receiveAll(s.queue, 2)
      const poison = got.find((m) => m.body === 'poison')!
      expect(await s.queue.deadLetter(poison, 'target answered 422 for this payload')).toBe('dead-letter-queue')
      await s.queue.delete(got.find((m) => m.body === 'good')!.receiptHandle)
      await sleep(1200)
      expect(await s.queue.receive()).toEqual([])
      if (features.stats) expect(await s.queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 1})
      if (s.queue.peekDead) {
        const dead = await s.queue.peekDead()
        expect(dead.map((m) => m.body)).toEqual(['poison'])
        expect(dead[0]!.attributes).toMatchObject({origin: 'test', 'cistern.deadReason': 'target answered 422 for this payload'})
        expect((await s.queue.stats()).dead).toBe(1)
      }
    })

    it.runIf(features.deadLetters === 'refused')('without a dead-letter queue: deadLetter refuses with the fix and the message stays; a consumer refuses to open', async () => {
      const s = await subject({visibilityTimeout: 1})
      await put(s, [{body: 'refused 4xx'}])
      const [m] = await s.queue.receive()
      const error = await s.queue.deadLetter(m!, '400 for this payload').catch((e: unknown) => e)
      expect(error).toBeInstanceOf(UsageError)
      expect((error as UsageError).oneLine).toMatch(/no dead-letter queue.*RedrivePolicy.*--dead-letter-queue URL/)
      await sleep(1200)
      const [back] = await s.queue.receive()
      expect(back!.id).toBe(m!.id)
      await s.queue.delete(back!.receiptHandle)
      const refused = await subject({consumer: true}).catch((e: unknown) => e)
      expect(refused).toBeInstanceOf(UsageError)
      expect((refused as UsageError).exitCode).toBe(ExitCode.usage)
      expect((refused as UsageError).oneLine).toMatch(/set-queue-attributes .*RedrivePolicy.* or pass --dead-letter-queue URL/)
    })

    it.runIf(features.deadLetters === 'moved')('a consumer opens (there is somewhere to put dead letters)', async () => {
      const s = await subject({consumer: true})
      expect(s.queue.capabilities.deadLetter).toBe(true)
    })

    // The spigot's intake queues a webhook behind its repository's queued ones (issue 11.8).
    it('groupHasLiveMessages: visible, delayed and in-flight messages count; deleted and dead ones do not (where the backend can tell)', async (context) => {
      const s = await subject({visibilityTimeout: 30})
      const live = s.queue.groupHasLiveMessages?.bind(s.queue)
      if (!live) return context.skip('the backend cannot tell (SQS, the facade)')
      expect(await live('a')).toBe(false)
      await put(s, [{body: 'a0', groupId: 'a'}, {body: 'u0'}, ...(features.delay ? [{body: 'b0', groupId: 'b', delaySeconds: 60}] : [])])
      expect(await live('a')).toBe(true)
      expect(await live('b')).toBe(features.delay)
      expect(await live('c')).toBe(false)
      const got = await receiveAll(s.queue, 2)
      const a0 = got.find((m) => m.body === 'a0')!
      expect(await live('a')).toBe(true) // in flight
      await s.queue.delete(a0.receiptHandle)
      expect(await live('a')).toBe(false)
      if (features.deadLetters === 'moved') {
        await put(s, [{body: 'a1', groupId: 'a'}])
        const [a1] = await receiveAll(s.queue, 1)
        await s.queue.deadLetter(a1!, 'poison')
        expect(await live('a')).toBe(false)
      }
    })

    it.runIf(features.groupsOnEveryQueue)('groups are honoured on a queue not created FIFO; ungrouped messages flow freely beside them', async () => {
      const s = await subject({visibilityTimeout: 30})
      expect(s.queue.capabilities.fifo).toBe(false)
      expect(s.queue.capabilities.groups).toBe(true)
      await put(s, [
        {body: 'a0', groupId: 'a'},
        {body: 'u0'},
        {body: 'a1', groupId: 'a'},
        {body: 'u1'},
        {body: 'b0', groupId: 'b'},
        {body: 'a2', groupId: 'a'},
      ])
      const first = await s.queue.receive({maxMessages: 10})
      expect(first.map((m) => m.body)).toEqual(['a0', 'u0', 'u1', 'b0'])
      expect(await s.queue.receive({maxMessages: 10})).toEqual([])
      // A released head comes back before the rest of its group.
      await s.queue.release(first[0]!.receiptHandle)
      const [a0] = await s.queue.receive({maxMessages: 10})
      expect(a0!.body).toBe('a0')
      const order: string[] = ['a0']
      let held = a0!
      for (let i = 0; i < 5 && order.length < 3; i++) {
        await s.queue.delete(held.receiptHandle)
        const next = await s.queue.receive({maxMessages: 10})
        expect(next).toHaveLength(1)
        held = next[0]!
        order.push(held.body)
      }
      expect(order).toEqual(['a0', 'a1', 'a2'])
    })

    // Issue 14: 100k drained webhooks left an 834 MB file. Same mechanism, fewer messages.
    it('the disk comes back when the queue drains (where there is a disk)', async () => {
      const s = await subject({visibilityTimeout: 60})
      if (!s.diskBytes) return
      const body = JSON.stringify({pad: 'w'.repeat(8_000)})
      for (let i = 0; i < 1_500; i += 10) await put(s, Array.from({length: 10}, (_, j) => ({body: `${i + j}${body}`})))
      const full = s.diskBytes()
      expect(full).toBeGreaterThan(12_000_000)
      let drained = 0
      for (let round = 0; round < 400 && drained < 1_500; round++) {
        const got = await s.queue.receive({maxMessages: 10})
        await s.queue.deleteBatch(got.map((m) => m.receiptHandle))
        drained += got.length
      }
      expect(drained).toBe(1_500)
      expect(await s.queue.receive()).toEqual([]) // the receive that finds it empty gives the space back
      expect(s.diskBytes()).toBeLessThan(3_000_000)
      // Still a working queue.
      await put(s, [{body: 'after'}])
      expect((await s.queue.receive()).map((m) => m.body)).toEqual(['after'])
    })

    it.runIf(features.fifo)('FIFO: a group is delivered in order, blocked while one of its messages is in flight', async () => {
      const s = await subject({fifo: true})
      expect(s.queue.capabilities.fifo).toBe(true)
      const sent: SendInput[] = []
      for (let i = 0; i < 4; i++) sent.push({body: `a${i}`, groupId: 'a', deduplicationId: `a${i}`}, {body: `b${i}`, groupId: 'b', deduplicationId: `b${i}`})
      await put(s, sent)
      const seen: Record<string, string[]> = {a: [], b: []}
      for (let round = 0; round < 20 && seen.a!.length + seen.b!.length < 8; round++) {
        const got = await s.queue.receive({maxMessages: 1})
        expect(got.length).toBe(1)
        for (const m of got) seen[m.groupId!]!.push(m.body)
        // While these are in flight, nothing more of their groups is handed out.
        const groups = new Set(got.map((m) => m.groupId))
        const more = await s.queue.receive({maxMessages: 10})
        for (const m of more) expect(groups.has(m.groupId)).toBe(false)
        for (const m of more) seen[m.groupId!]!.push(m.body)
        await s.queue.deleteBatch([...got, ...more].map((m) => m.receiptHandle))
      }
      expect(seen.a).toEqual(['a0', 'a1', 'a2', 'a3'])
      expect(seen.b).toEqual(['b0', 'b1', 'b2', 'b3'])
    })

    it.runIf(features.fifo)('FIFO: a released head is delivered again before the rest of its group', async () => {
      const s = await subject({fifo: true, visibilityTimeout: 30})
      await put(s, [
        {body: 'g1', groupId: 'g', deduplicationId: 'g1'},
        {body: 'g2', groupId: 'g', deduplicationId: 'g2'},
      ])
      const [head, ...others] = await s.queue.receive({maxMessages: 1})
      expect(others).toEqual([])
      expect(head!.body).toBe('g1')
      expect(await s.queue.receive()).toEqual([])
      await s.queue.changeVisibility(head!.receiptHandle, 0)
      const [again] = await s.queue.receive({maxMessages: 1})
      expect(again!.body).toBe('g1')
      expect(again!.receiveCount).toBe(2)
    })
  })
}
