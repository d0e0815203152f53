import {randomUUID} from 'node:crypto'

import {UsageError} from '../../src/core/errors.js'
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
  /** Receives after which a message moves to the dead list on its next receive (0 = never; default 0). */
  maxReceiveCount?: number
  fifo?: boolean
  /** How often a long poll looks again (default 10 ms). */
  pollMs?: number
}

/** What a test can inject or observe on every call. */
export interface MemoryQueueCall {
  op: 'send' | 'receive' | 'delete' | 'deleteBatch' | 'changeVisibility' | 'deadLetter'
  at: number
  detail?: unknown
}

/**
 * An in-memory Queue with SQS semantics for fast unit tests: visibility timeouts, a fresh receipt
 * handle per receive (stale receipts are errors), receive counts, delays, long polls that wake when
 * a message becomes visible, FIFO groups (one message of a group in flight at a time), dead-letter
 * list, and hooks to make calls fail (`failReceive`) and to observe them (`calls`).
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
  private readonly options: Required<MemoryQueueOptions>
  private closed = false

  constructor(options: MemoryQueueOptions = {}) {
    this.options = {visibilityTimeout: 30, maxReceiveCount: 0, fifo: false, pollMs: 10, ...options}
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
    const busyGroups = new Set(this.messages.filter((m) => m.groupId && m.visibleAt > now && m.receipt).map((m) => m.groupId))
    const out: QueueMessage[] = []
    for (const message of [...this.messages]) {
      if (out.length >= max) break
      if (message.visibleAt > now) continue
      if (this.options.fifo && message.groupId && busyGroups.has(message.groupId)) continue
      if (this.options.maxReceiveCount > 0 && message.receiveCount >= this.options.maxReceiveCount) {
        this.moveToDead(message, `received ${message.receiveCount} times`)
        continue
      }
      message.receiveCount++
      message.receipt = randomUUID()
      message.visibleAt = now + visibility
      message.delayed = false
      if (this.options.fifo && message.groupId) busyGroups.add(message.groupId)
      out.push({
        id: message.id,
        body: message.body,
        receiptHandle: message.receipt,
        receiveCount: message.receiveCount,
        sentAt: message.sentAt,
        groupId: message.groupId,
        deduplicationId: message.deduplicationId,
        attributes: {...message.attributes},
      })
    }
    return out
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

  async release(receiptHandle: string, delaySeconds = 0): Promise<void> {
    // TODO(queue layer): a release must not count as an attempt (docs/delivery.md).
    await this.changeVisibility(receiptHandle, delaySeconds)
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
      .map((m) => ({id: m.id, body: m.body, receiptHandle: '', receiveCount: m.receiveCount, sentAt: m.sentAt, groupId: m.groupId, attributes: {...m.attributes}}))
  }

  async stats(): Promise<QueueStats> {
    const now = Date.now()
    let visible = 0
    let inFlight = 0
    let delayed = 0
    for (const m of this.messages) {
      if (m.visibleAt <= now) visible++
      else if (m.delayed) delayed++
      else inFlight++
    }
    return {visible, inFlight, delayed, dead: this.dead.length}
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
