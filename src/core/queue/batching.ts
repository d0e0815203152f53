/**
 * Group commit, once: calls that arrive while a commit runs (or in the same event-loop turn) join
 * one batch, so many concurrent writers share one transaction and one fsync. Each call still gets
 * its own result or error.
 *
 *   const sender = coalescingSender(queue, {thread: true})   // a queue's send(), coalesced
 *   await sender.send({body})                                 // joins the next sendBatch
 *
 *   const inserts = new GroupCommit((rows) => insertAll(rows)) // any batch commit (the hooks store)
 *   await inserts.submit(row)
 */
import {errorMessage} from '../errors.js'
import type {Logger} from '../log.js'
import {QueueBatchError} from './errors.js'
import type {BatchFailure, Queue, SendInput, SendResult} from './types.js'
import type {WriterThread} from './writer-thread-client.js'
import {LIMITS, checkSend} from './validate.js'

export interface GroupCommitOptions {
  /** Most items in one commit (default 256); more wait for the next. */
  maxBatch?: number
  /** Commits running at once (default 1: one writer, as SQLite wants; SQS can take several). */
  concurrency?: number
  /**
   * After a commit of more than one item, wait this long before the next commit so that more
   * calls join it (default 0: the next commit starts when the previous one ends).
   */
  lingerMs?: number
  /**
   * A batch whose commit failed as a whole is committed again one item at a time, so that only
   * the item at fault fails (default true: a transaction is all or nothing, so nothing of the
   * failed batch was stored). A commit that fails per item (QueueBatchError with `results`) is
   * never repeated: its items get their own outcome.
   */
  isolateFailures?: boolean
  log?: Logger
}

export interface GroupCommitStats {
  commits: number
  items: number
  largestBatch: number
  /** Batches that failed as a whole and were committed again one by one. */
  isolated: number
}

interface Pending<I, O> {
  item: I
  resolve: (result: O) => void
  reject: (error: unknown) => void
}

/** A closed group commit refuses new items; its message names what was closed. */
export class GroupCommitClosedError extends Error {
  constructor() {
    super('the group commit is closed')
    this.name = 'GroupCommitClosedError'
  }
}

export class GroupCommit<I, O> {
  readonly stats: GroupCommitStats = {commits: 0, items: 0, largestBatch: 0, isolated: 0}
  private readonly pending: Array<Pending<I, O>> = []
  private running = 0
  private scheduled = false
  private closed = false
  private idle: Array<() => void> = []
  private readonly maxBatch: number
  private readonly concurrency: number

  constructor(
    private readonly commit: (items: I[]) => Promise<O[]>,
    private readonly options: GroupCommitOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? 256)
    this.concurrency = Math.max(1, options.concurrency ?? 1)
  }

  /** Resolves with this item's result once the batch it joined is committed. */
  submit(item: I): Promise<O> {
    if (this.closed) return Promise.reject(new GroupCommitClosedError())
    return new Promise<O>((resolve, reject) => {
      this.pending.push({item, resolve, reject})
      this.schedule(0)
    })
  }

  /** Commits everything submitted so far, then refuses new items. */
  async close(): Promise<void> {
    this.closed = true
    if (this.pending.length === 0 && this.running === 0) return
    await new Promise<void>((resolve) => this.idle.push(resolve))
  }

  /** The next commit starts on the next turn (so the calls of this turn join it) or after `delayMs`. */
  private schedule(delayMs: number): void {
    if (this.scheduled || this.running >= this.concurrency || this.pending.length === 0) return
    this.scheduled = true
    const start = () => {
      this.scheduled = false
      this.flush()
    }
    if (delayMs > 0) setTimeout(start, delayMs)
    else setImmediate(start)
  }

  /** Starts commits while there is room and something to commit. */
  private flush(): void {
    while (this.running < this.concurrency && this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch)
      this.running++
      void this.commitBatch(batch).finally(() => {
        this.running--
        if (this.pending.length > 0) this.schedule(batch.length > 1 ? (this.options.lingerMs ?? 0) : 0)
        else if (this.running === 0) for (const resolve of this.idle.splice(0)) resolve()
      })
    }
  }

  private async commitBatch(batch: Array<Pending<I, O>>): Promise<void> {
    this.stats.commits++
    this.stats.items += batch.length
    this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length)
    let results: O[]
    try {
      results = await this.commit(batch.map((p) => p.item))
    } catch (error) {
      if (error instanceof QueueBatchError && error.results) {
        settleEach(batch, error, error.results)
        return
      }
      if (batch.length === 1 || this.options.isolateFailures === false) {
        for (const p of batch) p.reject(error)
        return
      }
      // All or nothing failed: find the item at fault by committing each alone.
      this.stats.isolated++
      this.options.log?.warn('a group commit failed: committing its items one by one', {items: batch.length, error: errorMessage(error)})
      for (const p of batch) {
        try {
          const [result] = await this.commit([p.item])
          p.resolve(result as O)
        } catch (alone) {
          p.reject(aloneError(alone))
        }
      }
      return
    }
    batch.forEach((p, i) => p.resolve(results[i] as O))
  }
}

/** A QueueBatchError that says which entries failed and what the others got: each gets its own. */
function settleEach<O>(batch: Array<Pending<unknown, O>>, error: QueueBatchError, results: Array<SendResult | undefined>): void {
  const failed = new Map(error.failures.map((failure) => [failure.index, failure]))
  batch.forEach((p, i) => {
    const failure = failed.get(i)
    if (failure) p.reject(entryError(error, failure))
    else p.resolve(results[i] as O)
  })
}

/** What an item committed alone failed with: its entry's error when the backend named one. */
function aloneError(error: unknown): unknown {
  if (!(error instanceof QueueBatchError)) return error
  const [failure] = error.failures
  return failure ? entryError(error, failure) : error
}

/** The error of one entry of a batch, as a batch of one. */
function entryError(error: QueueBatchError, failure: BatchFailure): QueueBatchError {
  return new QueueBatchError(error.operation, [{...failure, index: 0}])
}

export interface CoalescingSenderOptions {
  /**
   * Commit in a writer thread (embedded queue only): the fsync of synchronous=FULL then blocks
   * that thread, not the caller's event loop, which keeps reading requests meanwhile. Falls back to
   * this thread when the thread cannot start (e.g. running from TypeScript sources).
   */
  thread?: boolean
  /** Most messages in one commit (default 256 on the embedded queue, 10 on SQS). */
  maxBatch?: number
  log?: Logger
}

export interface Sender {
  /** Sends one message; resolves once it is stored (its batch committed). */
  send(input: SendInput): Promise<SendResult>
  /** Sends what was submitted, then stops (and ends the writer thread). */
  close(): Promise<void>
  readonly stats: GroupCommitStats
  /** Whether commits run in the writer thread (known after the first send). */
  readonly threaded: boolean
}

/**
 * A queue's send(), coalesced: concurrent sends join one sendBatch (one transaction and one fsync
 * on the embedded queue; one SendMessageBatch on SQS, several in flight). A message that is bad on
 * its own (empty, too large) fails alone and the others of its batch are stored.
 */
export function coalescingSender(queue: Queue, options: CoalescingSenderOptions = {}): Sender {
  const embedded = queue.kind === 'sqlite'
  let writer: Promise<WriterThread | undefined> | undefined
  let threaded = false
  const sendBatch = async (inputs: SendInput[]): Promise<SendResult[]> => {
    if (embedded && options.thread) {
      const thread = await (writer ??= startWriterThread(queue, options.log))
      threaded = thread !== undefined
      if (thread) return thread.sendBatch(inputs)
    }
    return queue.sendBatch(inputs)
  }
  const commits = new GroupCommit<SendInput, SendResult>(sendBatch, {
    maxBatch: options.maxBatch ?? (embedded ? 256 : LIMITS.batch),
    concurrency: embedded ? 1 : 4,
    log: options.log,
  })
  return {
    stats: commits.stats,
    get threaded() {
      return threaded
    },
    async send(input) {
      // The backend checks the size (its own limit); a message that fails it fails alone.
      checkSend(input, Number.POSITIVE_INFINITY)
      return commits.submit(input)
    },
    async close() {
      await commits.close()
      const thread = await writer
      await thread?.close()
    },
  }
}

/** The writer thread for an embedded queue, or undefined (commit on this thread) when it cannot start. */
async function startWriterThread(queue: Queue, log?: Logger): Promise<WriterThread | undefined> {
  const {startWriterThread: start} = await import('./writer-thread-client.js')
  return start(queue.url, queue.capabilities.fifo, log)
}
