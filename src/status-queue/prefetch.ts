import type {ReceiveOptions, Queue, QueueMessage} from '../core/queue/types.js'

interface Held {
  message: QueueMessage
  at: number
}

export interface PrefetchOptions {
  /** Messages to ask the backend for per receive (1–10, default 10). */
  batch?: number
  /** A held message not handed out within this time is released, so its lease never lapses unseen. */
  maxHoldMs: number
}

/**
 * Receives full batches for a consumer that asks for a few messages at a time. Once its pool is
 * busy, consume() asks for as many messages as slots just freed — usually one — and every receive
 * is a durable write on the embedded queue (one fsync) or a request to SQS. This wrapper asks for
 * a full batch and hands the extra messages out on the next calls, without touching the backend.
 * Held messages are leased like any received one; those not handed out within `maxHoldMs`, and
 * all of them on close(), are released (visibility 0) so no other consumer waits for them.
 */
export class PrefetchQueue implements Queue {
  private held: Held[] = []
  private readonly releasing = new Set<Promise<void>>()
  /** Releases held messages on time even when the consumer stops asking (all its slots busy). */
  private sweeper?: NodeJS.Timeout
  private readonly batch: number

  constructor(
    private readonly inner: Queue,
    private readonly options: PrefetchOptions,
  ) {
    this.batch = Math.min(10, Math.max(1, options.batch ?? 10))
  }

  get url() {
    return this.inner.url
  }

  get kind() {
    return this.inner.kind
  }

  get capabilities() {
    return this.inner.capabilities
  }

  /** Messages received from the backend and not yet handed out. */
  get holding(): number {
    return this.held.length
  }

  async receive(options: ReceiveOptions = {}): Promise<QueueMessage[]> {
    const want = Math.min(10, Math.max(1, options.maxMessages ?? 10))
    this.releaseOlderThan(Date.now() - this.options.maxHoldMs)
    if (this.held.length > 0) return this.held.splice(0, want).map((entry) => entry.message)
    const received = await this.inner.receive({...options, maxMessages: Math.max(want, this.batch)})
    const now = Date.now()
    this.held.push(...received.slice(want).map((message) => ({message, at: now})))
    if (this.held.length > 0 && !this.sweeper) {
      this.sweeper = setInterval(() => this.releaseOlderThan(Date.now() - this.options.maxHoldMs), Math.max(50, this.options.maxHoldMs / 4))
      this.sweeper.unref()
    }
    return received.slice(0, want)
  }

  private releaseOlderThan(cutoff: number): void {
    if (this.held.length === 0 && this.sweeper) {
      clearInterval(this.sweeper)
      this.sweeper = undefined
    }
    const stale = this.held.filter((entry) => entry.at <= cutoff)
    if (stale.length === 0) return
    this.held = this.held.filter((entry) => entry.at > cutoff)
    for (const {message} of stale) {
      const release = this.inner
        .changeVisibility(message.receiptHandle, 0)
        .catch(() => {
          // It comes back by itself when its visibility lapses.
        })
        .finally(() => this.releasing.delete(release))
      this.releasing.add(release)
    }
  }

  async close(): Promise<void> {
    this.releaseOlderThan(Number.POSITIVE_INFINITY)
    clearInterval(this.sweeper)
    this.sweeper = undefined
    await Promise.all([...this.releasing])
    await this.inner.close()
  }

  send: Queue['send'] = (message) => this.inner.send(message)
  sendBatch: Queue['sendBatch'] = (messages) => this.inner.sendBatch(messages)
  delete: Queue['delete'] = (receiptHandle) => this.inner.delete(receiptHandle)
  deleteBatch: Queue['deleteBatch'] = (receiptHandles) => this.inner.deleteBatch(receiptHandles)
  changeVisibility: Queue['changeVisibility'] = (receiptHandle, seconds) => this.inner.changeVisibility(receiptHandle, seconds)
  deadLetter: Queue['deadLetter'] = (message, reason) => this.inner.deadLetter(message, reason)
  peek: Queue['peek'] = (max) => this.inner.peek(max)
  stats: Queue['stats'] = () => this.inner.stats()
  purge: Queue['purge'] = () => this.inner.purge()
  redrive: Queue['redrive'] = () => this.inner.redrive()
}
