import {errorMessage} from '../core/errors.js'
import {type Logger, silentLogger} from '../core/log.js'
import type {Queue} from '../core/queue/types.js'

/**
 * Order end to end (docs/delivery.md, issue 11.8): while a repository has webhooks queued for a
 * target, a new one for that repository and target is queued behind them, not forwarded ahead.
 * Two parts: webhooks of one group are decided in the order they arrived (ArrivalOrder), and the
 * decision asks whether the group still has webhooks queued (QueuedAhead).
 */

/**
 * Per key (a message group: a repository, for one target), each webhook is decided only after the
 * ones that arrived before it: a forward in flight holds the next webhook of its repository until
 * Jenkins took it or it was queued. Deciding is quick for a webhook that is only queued (the spigot
 * OFF): it is handed to the queue in arrival order and the next one goes on at once.
 */
export class ArrivalOrder {
  private readonly last = new Map<string, Promise<void>>()

  /**
   * Runs `step` once every earlier step of `key` has decided. The step calls `decided()` as soon as
   * its decision is final (forwarded, or handed to the queue in order); ending counts as deciding.
   */
  async inTurn<T>(key: string, step: (decided: () => void) => Promise<T>): Promise<T> {
    const before = this.last.get(key)
    let resolve!: () => void
    const mine = new Promise<void>((done) => (resolve = done))
    this.last.set(key, mine)
    const decided = () => {
      resolve()
      if (this.last.get(key) === mine) this.last.delete(key)
    }
    try {
      if (before) await before
      return await step(decided)
    } finally {
      decided()
    }
  }

  /** Keys with a webhook still being decided (tests). */
  get pending(): number {
    return this.last.size
  }
}

export interface QueuedAheadOptions {
  log?: Logger
  /** SQS: how long one read of the queue's counts is used (default 1 s). */
  backlogTtlMs?: number
  /** SQS: how long after this process queued something its counts are not trusted to show it (default 60 s). */
  countsLagMs?: number
  now?: () => number
}

/**
 * Does a group still have webhooks queued? The embedded queue answers exactly, per group, with one
 * indexed read (Queue.groupHasLiveMessages). SQS cannot be asked per group, so there the answer is
 * "yes" while the queue's backlog is not empty (its approximate counts, read at most once a second,
 * shared by concurrent webhooks) and for a minute after this process queued anything (the counts lag
 * behind by up to a minute): while anything waits in an SQS queue, every webhook queues behind it, and
 * the spigot forwards directly again once the drain has emptied it. Messages this process is still
 * sending count at once, on every backend. A queue that cannot be asked counts as "yes": queueing
 * never breaks the order, forwarding might.
 */
export class QueuedAhead {
  private readonly sending = new Map<string, number>()
  private lastQueuedAt = Number.NEGATIVE_INFINITY
  private backlog: {at: number; read: Promise<boolean>} | undefined
  private readonly log: Logger
  private readonly now: () => number

  constructor(
    private readonly queue: Pick<Queue, 'stats' | 'groupHasLiveMessages' | 'url'>,
    private readonly options: QueuedAheadOptions = {},
  ) {
    this.log = options.log ?? silentLogger
    this.now = options.now ?? Date.now
  }

  /** A message of `group` handed to the queue; it counts until `stored` settles (then the queue answers). */
  track(group: string, stored: Promise<unknown>): void {
    this.sending.set(group, (this.sending.get(group) ?? 0) + 1)
    this.lastQueuedAt = this.now()
    const done = () => {
      const left = (this.sending.get(group) ?? 1) - 1
      if (left > 0) this.sending.set(group, left)
      else this.sending.delete(group)
    }
    stored.then(done, done)
  }

  async has(group: string): Promise<boolean> {
    if (this.sending.has(group)) return true
    try {
      if (this.queue.groupHasLiveMessages) return await this.queue.groupHasLiveMessages(group)
      if (this.now() - this.lastQueuedAt < (this.options.countsLagMs ?? 60_000)) return true
      return await this.backlogNotEmpty()
    } catch (error) {
      this.log.warn('cannot tell whether webhooks are queued ahead: queueing this one behind them', {queue: this.queue.url, error: errorMessage(error)})
      return true
    }
  }

  private backlogNotEmpty(): Promise<boolean> {
    const now = this.now()
    if (this.backlog && now - this.backlog.at < (this.options.backlogTtlMs ?? 1000)) return this.backlog.read
    const read = this.queue.stats().then((stats) => stats.visible + stats.inFlight + stats.delayed > 0)
    this.backlog = {at: now, read}
    // A failed read is not kept: the next webhook asks again.
    read.catch(() => {
      if (this.backlog?.read === read) this.backlog = undefined
    })
    return read
  }
}
