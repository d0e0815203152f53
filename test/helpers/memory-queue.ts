import {randomUUID} from 'node:crypto'

import {UsageError} from '../../src/core/errors.js'
import type {Logger} from '../../src/core/log.js'
import {QueueBatchError, StaleReceiptError} from '../../src/core/queue/errors.js'
import type {BatchFailure, Queue, QueueMessage, QueueStats, ReceiveOptions, SendInput, SendResult} from '../../src/core/queue/types.js'

interface Stored {
  id: string
  body: string
  attributes: Record<string, string>
  groupId?: string
  deduplicationId?: string
  sentAt: Date
  receiveCount: number
  /** Receives minus releases: attempts that counted. */
  attempts: number
  /** Epoch ms before which the message is invisible (delay or lease). */
  visibleAt: number
  /** The current lease's receipt handle, if received and not yet lapsed. */
  receipt?: string
  delayed: boolean
  deadReason?: string
}

export interface MemoryQueueOptions {
  /** Default visibility timeout in seconds (30). */
  visibilityTimeout?: number
  /** Attempts after which a message moves to the dead list on its next receive (0 = never; default 0). Releases do not count. */
  maxReceiveCount?: number
  fifo?: boolean
  /** How often a long poll looks again (default 10 ms). */
  pollMs?: number
  /** stats() also tells oldestAgeSeconds and nextVisibleAt, as the embedded queue does (default true); false: only counts, as SQS. */
  detailedStats?: boolean
  /** Where a dead letter made at receive is told when the receive has no onDead (as the embedded queue does). */
  log?: Logger
}

/** What a test can inject or observe on every call. */
export interface MemoryQueueCall {
  op: 'send' | 'receive' | 'delete' | 'deleteBatch' | 'changeVisibility' | 'release' | 'deadLetter'
  at: number
  detail?: unknown
}

/**
 * An in-memory Queue with SQS semantics for fast unit tests: visibility timeouts, a fresh receipt
 * handle per receive (stale receipts are errors), receive counts and attempts (a release does not
 * count), delays, long polls that wake when a message becomes visible, FIFO groups (only a group's
 * head is delivered, never while it is hidden), dead-letter list (at receive, reported through
 * onDead), and hooks to make calls fail (`beforeReceive`) and to observe them (`calls`).
 */
export class MemoryQueue implements Queue {
  readonly url = 'memory:test'
  readonly kind = 'sqlite' as const
  readonly capabilities = {send: true, fifo: true, maxBodyBytes: 262_144, deadLetter: true, peek: true}
  readonly calls: MemoryQueueCall[] = []
  /** Called before each receive; throw from it to simulate a failing backend. */
  beforeReceive?: () => void | Promise<void>
  readonly messages: Stored[] = []
  readonly dead: Stored[] = []
  private readonly options: Required<Omit<MemoryQueueOptions, 'log'>> & Pick<MemoryQueueOptions, 'log'>
  private closed = false

  constructor(options: MemoryQueueOptions = {}) {
    this.options = {visibilityTimeout: 30, maxReceiveCount: 0, fifo: false, pollMs: 10, detailedStats: true, ...options}
  }

  private record(op: MemoryQueueCall['op'], detail?: unknown) {
    this.calls.push({op, at: Date.now(), detail})
  }

  count(op: MemoryQueueCall['op']): number {
    return this.calls.filter((call) => call.op === op).length
  }

  async send(input: SendInput): Promise<SendResult> {
    this.record('send')
    return this.store(input)
  }

  private store(input: SendInput): SendResult {
    if (this.closed) throw new Error('queue closed')
    if (input.deduplicationId) {
      const existing = this.messages.find((m) => m.deduplicationId === input.deduplicationId)
      if (existing) return {id: existing.id, duplicate: true}
    }
    const now = Date.now()
    const delay = (input.delaySeconds ?? 0) * 1000
    const stored: Stored = {
      id: randomUUID(),
      body: input.body,
      attributes: {...input.attributes},
      groupId: input.groupId,
      deduplicationId: input.deduplicationId,
      sentAt: new Date(now),
      receiveCount: 0,
      attempts: 0,
      visibleAt: now + delay,
      delayed: delay > 0,
    }
    this.messages.push(stored)
    return {id: stored.id}
  }

  async sendBatch(inputs: SendInput[]): Promise<SendResult[]> {
    this.record('send', {count: inputs.length})
    return inputs.map((input) => this.store(input))
  }

  async receive(options: ReceiveOptions = {}): Promise<QueueMessage[]> {
    this.record('receive', {maxMessages: options.maxMessages, waitSeconds: options.waitSeconds})
    await this.beforeReceive?.()
    const max = options.maxMessages ?? 10
    if (!Number.isInteger(max) || max < 1 || max > 10) throw new UsageError(`maxMessages must be 1–10, got ${max}`)
    const deadline = Date.now() + (options.waitSeconds ?? 0) * 1000
    for (;;) {
      const got = this.take(options)
      if (got.length > 0 || Date.now() >= deadline || options.signal?.aborted || this.closed) return got
      await new Promise((resolve) => setTimeout(resolve, this.options.pollMs))
    }
  }

  private take(options: ReceiveOptions): QueueMessage[] {
    const now = Date.now()
    const max = Math.min(10, Math.max(1, options.maxMessages ?? 10))
    const visibility = (options.visibilityTimeout ?? this.options.visibilityTimeout) * 1000
    // FIFO: only a group's head (its oldest live message), and only when it is visible.
    const heads = new Set<string>()
    const out: QueueMessage[] = []
    for (const message of [...this.messages]) {
      if (out.length >= max) break
      const grouped = this.options.fifo && message.groupId !== undefined
      if (grouped && heads.has(message.groupId!)) continue
      if (grouped) heads.add(message.groupId!)
      if (message.visibleAt > now) continue
      if (this.options.maxReceiveCount > 0 && message.attempts >= this.options.maxReceiveCount) {
        const reason = `reached maxReceiveCount ${this.options.maxReceiveCount} after ${message.attempts} attempts; the last attempt never settled (was its worker killed while handling it?)`
        this.moveToDead(message, reason)
        if (grouped) heads.delete(message.groupId!)
        if (options.onDead) options.onDead(this.toMessage(message, ''), reason)
        else this.options.log?.warn('message dead-lettered at receive', {messageId: message.id, reason})
        continue
      }
      message.receiveCount++
      message.attempts++
      message.receipt = randomUUID()
      message.visibleAt = now + visibility
      message.delayed = false
      out.push(this.toMessage(message, message.receipt))
    }
    return out
  }

  private toMessage(message: Stored, receiptHandle: string): QueueMessage {
    return {
      id: message.id,
      body: message.body,
      receiptHandle,
      receiveCount: message.receiveCount,
      attempts: message.attempts,
      sentAt: message.sentAt,
      groupId: message.groupId,
      deduplicationId: message.deduplicationId,
      attributes: {...message.attributes},
    }
  }

  /** The message holding this receipt under a lease that has not lapsed. */
  private leased(receiptHandle: string): Stored {
    const message = this.messages.find((m) => m.receipt === receiptHandle)
    if (!message || message.visibleAt <= Date.now()) throw new StaleReceiptError(receiptHandle)
    return message
  }

  async delete(receiptHandle: string): Promise<void> {
    this.record('delete')
    const message = this.leased(receiptHandle)
    this.messages.splice(this.messages.indexOf(message), 1)
  }

  async deleteBatch(receiptHandles: string[]): Promise<void> {
    this.record('deleteBatch', {count: receiptHandles.length})
    if (receiptHandles.length > 10) throw new Error('more than 10 entries in a batch')
    const failures: BatchFailure[] = []
    receiptHandles.forEach((handle, index) => {
      try {
        const message = this.leased(handle)
        this.messages.splice(this.messages.indexOf(message), 1)
      } catch (error) {
        failures.push({index, code: 'ReceiptHandleIsInvalid', message: (error as Error).message})
      }
    })
    if (failures.length) throw new QueueBatchError('delete', failures)
  }

  /** Handed back never attempted: the receive does not count as an attempt; visible after the delay. */
  /** The attempt limit (0: none), as the embedded queue tells it. */
  async maxAttempts(): Promise<number> {
    return this.options.maxReceiveCount
  }

  async release(receiptHandle: string, delaySeconds = 0): Promise<void> {
    this.record('release', {seconds: delaySeconds})
    const message = this.leased(receiptHandle)
    message.attempts--
    message.receipt = undefined
    message.visibleAt = Date.now() + delaySeconds * 1000
    message.delayed = delaySeconds > 0
  }

  async changeVisibility(receiptHandle: string, seconds: number): Promise<void> {
    this.record('changeVisibility', {seconds})
    const message = this.leased(receiptHandle)
    message.visibleAt = Date.now() + seconds * 1000
    if (seconds === 0) message.receipt = undefined
  }

  async deadLetter(message: QueueMessage, reason: string): Promise<'dead-letter-queue'> {
    this.record('deadLetter', {reason})
    const stored = this.leased(message.receiptHandle)
    this.moveToDead(stored, reason)
    return 'dead-letter-queue'
  }

  private moveToDead(message: Stored, reason: string) {
    this.messages.splice(this.messages.indexOf(message), 1)
    message.deadReason = reason
    message.receipt = undefined
    this.dead.push(message)
  }

  async peek(max = 10): Promise<QueueMessage[]> {
    const now = Date.now()
    return this.messages
      .filter((m) => m.visibleAt <= now)
      .slice(0, max)
      .map((m) => this.toMessage(m, ''))
  }

  async stats(): Promise<QueueStats> {
    const now = Date.now()
    let visible = 0
    let inFlight = 0
    let delayed = 0
    let nextVisibleAt: number | undefined
    let oldestSentAt: number | undefined
    for (const m of this.messages) {
      if (m.visibleAt <= now) visible++
      else if (m.delayed) delayed++
      else inFlight++
      if (m.visibleAt > now) nextVisibleAt = Math.min(nextVisibleAt ?? Number.POSITIVE_INFINITY, m.visibleAt)
      oldestSentAt = Math.min(oldestSentAt ?? Number.POSITIVE_INFINITY, m.sentAt.getTime())
    }
    const stats: QueueStats = {visible, inFlight, delayed, dead: this.dead.length}
    if (this.options.detailedStats) {
      if (oldestSentAt !== undefined) stats.oldestAgeSeconds = Math.floor((now - oldestSentAt) / 1000)
      if (nextVisibleAt !== undefined) stats.nextVisibleAt = new Date(nextVisibleAt)
    }
    return stats
  }

  async purge(): Promise<number> {
    const n = this.messages.length
    this.messages.length = 0
    return n
  }

  async redrive(): Promise<number> {
    const n = this.dead.length
    for (const m of this.dead.splice(0)) {
      m.receiveCount = 0
      m.attempts = 0
      m.visibleAt = Date.now()
      m.deadReason = undefined
      this.messages.push(m)
    }
    return n
  }

  async close(): Promise<void> {
    this.closed = true
  }
}
