import {CisternError, ExitCode, errorMessage} from './errors.js'
import {type Logger, silentLogger} from './log.js'
import {backoffDelay, deferred, isPaused, sleep} from './loop.js'
import {QueueBatchError, StaleReceiptError} from './queue/errors.js'
import type {Queue, QueueMessage} from './queue/types.js'

/** What a handler decided for one message. */
export type Outcome =
  | {kind: 'done'}
  /** Leave it for later: visibility set to delaySeconds (default: exponential backoff by receiveCount, with jitter). */
  | {kind: 'retry'; delaySeconds?: number; reason?: string}
  /** Give up: queue.deadLetter(message, reason). */
  | {kind: 'dead'; reason: string}
  /** The target is unusable (Jenkins down, bad GitHub token): release this message and stop the consumer; consume() rejects with `error` after in-flight work settles. */
  | {kind: 'stop'; error: CisternError}

export const done = (): Outcome => ({kind: 'done'})
export const retry = (delaySeconds?: number, reason?: string): Outcome => ({kind: 'retry', delaySeconds, reason})
export const dead = (reason: string): Outcome => ({kind: 'dead', reason})
export const stop = (error: CisternError): Outcome => ({kind: 'stop', error})

export interface HandlerContext {
  /** Aborted when the consumer's drain deadline passes during shutdown: stop work, return retry. */
  signal: AbortSignal
  log: Logger
}

export type Handler = (message: QueueMessage, context: HandlerContext) => Promise<Outcome>

export interface ConsumeCounters {
  /**
   * Messages handed to the handler. A prefetched message given back before it started (stop,
   * pause, its FIFO group held back) is not counted here nor in `released`: it was never taken on.
   */
  received: number
  done: number
  retried: number
  dead: number
  /** Handler threw (treated as retry). */
  errors: number
  /** Released unfinished at shutdown (visibility set to 0). */
  released: number
  inFlight: number
  /** Receives that failed (each backed off before the next). */
  receiveErrors: number
}

export interface ConsumeOptions {
  /** Drain until a receive comes back empty (and nothing is in flight), then return. */
  once?: boolean
  /** Max handlers running at once (default 4; may exceed 10: several receives fill it). */
  concurrency?: number
  /** Messages per receive, 1–10 (default 10; capped by free slots when `prefetch` is false). */
  batchSize?: number
  /**
   * Receive full batches (`batchSize`) even when fewer slots are free, and hold the extra messages
   * (at most batchSize − 1) until slots free up, in the order received. Default true: once the pool
   * is busy, slots free one at a time, and without this every freed slot costs a receive of one
   * message (a durable write on the embedded queue, a request on SQS). Held messages are leased
   * like running ones: the same heartbeat keeps them hidden however long they wait, and they are
   * given back (visibility 0) at once on stop or pause, and when an earlier message of their FIFO
   * group is retried. Turn it off when handlers run for minutes and other consumers share the
   * queue, so that idle consumers get those messages instead (or lower `batchSize`).
   */
  prefetch?: boolean
  /** Long-poll seconds for foreground mode (default 20; once mode uses 0 then stops on empty). */
  waitSeconds?: number
  /** Visibility timeout per receive (default 30 s); the heartbeat extends it while a handler runs. */
  visibilityTimeout?: number
  /** Stop receiving when aborted (SIGINT/SIGTERM), finish in-flight work within drainDeadlineMs. */
  signal?: AbortSignal
  /** After a stop, how long in-flight handlers get before their context.signal aborts and they are released (default 30 s). */
  drainDeadlineMs?: number
  /** Checked before each receive; while true the consumer waits (maintenance mode / spigot OFF). */
  paused?: () => boolean | Promise<boolean>
  /** Called whenever counters change (progress bars, metrics). */
  onProgress?: (counters: Readonly<ConsumeCounters>) => void
  log?: Logger
  /** Foreground: an empty receive that returned sooner than this waits out the rest (backends without long polling). Default 1000 ms. */
  idleMs?: number
  /** How often paused() is re-checked while paused (default 1000 ms). */
  pausePollMs?: number
  /** Backoff after failed receives (default 1 s doubling to 30 s, with jitter). */
  receiveBackoff?: {baseMs?: number; maxMs?: number}
  /**
   * Give up after this many failed receives in a row: consume() rejects with the last error once
   * in-flight work has settled. Default 5 in once mode (a cron run should fail, not hang), never in
   * foreground mode. A usage error (exit 2: the queue does not exist, a bad URL) is never retried.
   */
  maxReceiveErrors?: number
  /** Deletes are collected and sent in batches of 10, or after this many ms (default 50), and before each receive. */
  deleteFlushMs?: number
}

export interface ConsumeResult extends ConsumeCounters {
  /** Why consume() returned: queue empty (once), stop signal, or a handler's stop outcome. */
  stoppedBy: 'empty' | 'signal' | 'handler'
}

/** SQS allows at most 12 h, but a retry later than 15 minutes is a lost message in practice. */
const MAX_RETRY_SECONDS = 900

/** Default retry delay: 2 s doubling per receive (1 → 1-2 s, 2 → 2-4 s, …), capped at 15 min, with jitter. */
export function retryDelaySeconds(receiveCount: number, random: () => number = Math.random): number {
  return Math.round(backoffDelay(Math.max(1, receiveCount), {baseMs: 2000, maxMs: MAX_RETRY_SECONDS * 1000, random}) / 1000)
}

interface Flight {
  message: QueueMessage
  heartbeat?: NodeJS.Timeout
  /** Still ours to keep hidden: false once settled, released or abandoned (heartbeat errors are moot). */
  leased: boolean
  /** Released at the drain deadline: whatever the handler returns later is ignored. */
  abandoned: boolean
  promise?: Promise<void>
}

/**
 * The one consumer loop: receive in batches, run up to `concurrency` handlers, keep their messages
 * hidden while they run (heartbeat), and settle each by its outcome. See ConsumeOptions for modes.
 */
export async function consume(queue: Queue, handler: Handler, options: ConsumeOptions = {}): Promise<ConsumeResult> {
  const log = options.log ?? silentLogger
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 4))
  const batchSize = clamp(Math.floor(options.batchSize ?? 10), 1, 10)
  const prefetch = options.prefetch ?? true
  const pausePollMs = options.pausePollMs ?? 1000
  const once = options.once ?? false
  const waitSeconds = once ? 0 : clamp(options.waitSeconds ?? 20, 0, 20)
  const visibility = Math.max(1, options.visibilityTimeout ?? 30)
  const drainDeadlineMs = Math.max(0, options.drainDeadlineMs ?? 30_000)
  const idleMs = options.idleMs ?? 1000
  const heartbeatMs = Math.max(250, (visibility * 1000) / 2)
  const maxReceiveErrors = options.maxReceiveErrors ?? (once ? 5 : Number.POSITIVE_INFINITY)

  const counters: ConsumeCounters = {received: 0, done: 0, retried: 0, dead: 0, errors: 0, released: 0, inFlight: 0, receiveErrors: 0}
  const progress = () => {
    if (!options.onProgress) return
    try {
      options.onProgress({...counters})
    } catch (error) {
      log.debug('onProgress failed', {error: errorMessage(error)})
    }
  }

  // Aborted when we stop receiving (signal or a stop outcome): cuts a long poll short.
  const receiving = new AbortController()
  // Aborted at the drain deadline: handlers see it as context.signal.
  const handlersAbort = new AbortController()
  let stopError: unknown
  let stoppedBy: ConsumeResult['stoppedBy'] | undefined
  const beginStop = (why: 'signal' | 'handler') => {
    stoppedBy ??= why
    receiving.abort()
    wake()
  }
  // The receive loop sleeps on this when all slots are busy; every settle wakes it.
  let change = deferred()
  function wake() {
    change.resolve()
    change = deferred()
  }
  const onSignal = () => beginStop('signal')
  options.signal?.addEventListener('abort', onSignal, {once: true})
  if (options.signal?.aborted) beginStop('signal')

  const deletes = new DeleteBatcher(queue, log, options.deleteFlushMs ?? 50)
  /** Messages in a handler (each takes a slot). */
  const flights = new Set<Flight>()
  /** Prefetched: received and leased, not yet started, in the order received. */
  const waiting: Flight[] = []
  /** Give-backs started from a settling handler; awaited before consume() returns. */
  const givingBack = new Set<Promise<void>>()

  const settle = async (flight: Flight, outcome: Outcome) => {
    const {message} = flight
    if (!isOutcome(outcome)) {
      // A handler returned something that is not an Outcome: a bug, treated like a throw.
      counters.errors++
      counters.retried++
      log.error('handler returned no outcome; retrying later', {messageId: message.id, outcome: String(outcome)})
      await queue.changeVisibility(message.receiptHandle, retryDelaySeconds(message.receiveCount)).catch(() => {})
      return
    }
    switch (outcome.kind) {
      case 'done':
        counters.done++
        deletes.add(message)
        break
      case 'retry': {
        const asked = outcome.delaySeconds
        const delay = clamp(Math.round(asked !== undefined && Number.isFinite(asked) ? asked : retryDelaySeconds(message.receiveCount)), 0, MAX_RETRY_SECONDS)
        counters.retried++
        log.debug('retry later', {messageId: message.id, delaySeconds: delay, reason: outcome.reason})
        await queue.changeVisibility(message.receiptHandle, delay).catch((error) => {
          // The message still comes back when its current visibility lapses: only the delay is lost.
          log.warn('could not set the retry delay', {messageId: message.id, error: errorMessage(error)})
        })
        break
      }
      case 'dead': {
        counters.dead++
        try {
          const where = await queue.deadLetter(message, outcome.reason)
          log.warn('message given up', {messageId: message.id, reason: outcome.reason, to: where})
        } catch (error) {
          log.error('could not dead-letter the message; it will be received again', {messageId: message.id, error: errorMessage(error)})
        }
        break
      }
      case 'stop': {
        counters.released++
        stopError ??= outcome.error
        log.error(`stopping: ${outcome.error instanceof CisternError ? outcome.error.oneLine : errorMessage(outcome.error)}`, {messageId: message.id})
        beginStop('handler')
        await release(message)
        break
      }
    }
  }

  const release = (message: QueueMessage) =>
    queue.changeVisibility(message.receiptHandle, 0).catch((error) => {
      log.warn('could not release the message; it comes back when its visibility lapses', {messageId: message.id, error: errorMessage(error)})
    })

  /** Give prefetched messages back to the queue untouched (visibility 0). */
  const giveBack = async (held: Flight[], why: string) => {
    if (held.length === 0) return
    for (const flight of held) {
      flight.leased = false
      clearInterval(flight.heartbeat)
    }
    log.debug(`giving back ${held.length} prefetched message(s): ${why}`, {messageIds: held.map((flight) => flight.message.id)})
    await Promise.all(held.map((flight) => release(flight.message)))
  }

  /** A received message: leased from now until it settles or is given back. */
  const lease = (message: QueueMessage): Flight => {
    const flight: Flight = {message, leased: true, abandoned: false}
    // Keep the message hidden while it waits and while the handler runs: extend at half the visibility timeout.
    flight.heartbeat = setInterval(() => {
      queue.changeVisibility(message.receiptHandle, visibility).catch((error) => {
        if (!flight.leased) return
        const started = !waiting.includes(flight)
        if (error instanceof StaleReceiptError) {
          // The lease is gone (it lapsed, or the message was redelivered): extending again cannot help.
          clearInterval(flight.heartbeat)
          if (!started) {
            // Not started yet: drop it; whoever holds it now handles it.
            flight.leased = false
            waiting.splice(waiting.indexOf(flight), 1)
            log.warn('lost the lease on a prefetched message; not handling it here', {messageId: message.id, error: errorMessage(error)})
            return
          }
          log.warn('lost the lease on a message still being handled; it may be handled twice', {messageId: message.id, error: errorMessage(error)})
          return
        }
        log.warn('heartbeat failed; retrying at the next beat', {messageId: message.id, error: errorMessage(error)})
      })
    }, heartbeatMs)
    return flight
  }

  /** A FIFO group's later messages must not overtake an earlier one that is coming back: give them back too. */
  const holdBackGroup = (groupId: string) => {
    const held = waiting.filter((flight) => flight.message.groupId === groupId)
    if (held.length === 0) return
    for (const flight of held) waiting.splice(waiting.indexOf(flight), 1)
    const giving = giveBack(held, `an earlier message of group ${groupId} is coming back`).finally(() => givingBack.delete(giving))
    givingBack.add(giving)
  }

  const start = (flight: Flight) => {
    const {message} = flight
    flights.add(flight)
    counters.received++
    counters.inFlight++
    progress()
    const messageLog = log.child({messageId: message.id})
    flight.promise = (async () => {
      let outcome: Outcome
      try {
        outcome = await handler(message, {signal: handlersAbort.signal, log: messageLog})
      } catch (error) {
        counters.errors++
        messageLog.error('handler failed; retrying later', {error: errorMessage(error), receiveCount: message.receiveCount})
        if (error instanceof Error && error.stack) messageLog.debug(error.stack)
        outcome = {kind: 'retry', reason: errorMessage(error)}
      } finally {
        clearInterval(flight.heartbeat)
      }
      if (flight.abandoned) {
        messageLog.debug('handler finished after its message was released', {outcome: outcome?.kind})
        return
      }
      flight.leased = false
      // Anything but done/dead puts the message back in its group ahead of prefetched followers.
      if (message.groupId !== undefined && !(isOutcome(outcome) && (outcome.kind === 'done' || outcome.kind === 'dead'))) {
        holdBackGroup(message.groupId)
      }
      await settle(flight, outcome)
    })()
      .catch((error) => log.error('settling a message failed', {messageId: message.id, error: errorMessage(error)}))
      .finally(() => {
        if (flight.abandoned) return
        flights.delete(flight)
        counters.inFlight--
        progress()
        wake()
      })
  }

  // --- the receive loop ---
  let failuresInARow = 0
  while (!receiving.signal.aborted) {
    if (await isPaused(options.paused, log)) {
      await giveBack(waiting.splice(0), 'paused')
      await sleep(pausePollMs, receiving.signal)
      continue
    }
    const free = concurrency - flights.size
    if (free <= 0) {
      if (waiting.length > 0 && options.paused) {
        // Holding prefetched messages: notice a pause within pausePollMs, not only when a slot frees.
        const tick = new AbortController()
        await Promise.race([change.promise, sleep(pausePollMs, AbortSignal.any([tick.signal, receiving.signal]))])
        tick.abort()
      } else {
        await change.promise
      }
      continue
    }
    if (waiting.length > 0) {
      for (const flight of waiting.splice(0, free)) start(flight)
      continue
    }
    const waitFor = change.promise
    deletes.flushGroups()
    const began = Date.now()
    let messages: QueueMessage[]
    try {
      messages = await queue.receive({
        maxMessages: prefetch ? batchSize : Math.min(batchSize, free),
        waitSeconds,
        visibilityTimeout: visibility,
        signal: receiving.signal,
      })
      failuresInARow = 0
    } catch (error) {
      if (receiving.signal.aborted) break
      failuresInARow++
      counters.receiveErrors++
      progress()
      if (isUsageError(error) || failuresInARow >= maxReceiveErrors) {
        log.error('receive failed; giving up', {error: errorMessage(error), attempt: failuresInARow})
        // A network or service error is the operator's to fix, not a bug: say which queue.
        stopError ??=
          error instanceof CisternError
            ? error
            : new CisternError(`cannot receive from ${queue.url}: ${errorMessage(error)} (${failuresInARow} attempts)`, {
                fix: 'check the queue URL, credentials and network',
                cause: error,
              })
        beginStop('handler')
        break
      }
      const delay = backoffDelay(failuresInARow, options.receiveBackoff)
      log.warn(`receive failed; retrying in ${Math.round(delay / 100) / 10}s`, {error: errorMessage(error), attempt: failuresInARow})
      await sleep(delay, receiving.signal)
      continue
    }
    if (receiving.signal.aborted) {
      // Received while the stop began: give them straight back.
      await Promise.all(messages.map((message) => release(message)))
      break
    }
    if (messages.length === 0) {
      if (once) {
        if (flights.size === 0) {
          // Deletes still waiting in the batch hold back FIFO groups (a group is blocked while its
          // head is in flight): send them, then look once more before calling the queue empty.
          if (await deletes.settle()) continue
          stoppedBy = 'empty'
          break
        }
        // Handlers still running may retry or finish; look again once one settles.
        await waitFor
        continue
      }
      const elapsed = Date.now() - began
      if (elapsed < idleMs) await sleep(idleMs - elapsed, receiving.signal)
      continue
    }
    // Paused during the long poll (spigot turned OFF, maintenance began): hand them back untouched.
    if (options.paused && (await isPaused(options.paused, log))) {
      log.debug('paused while receiving: releasing the batch', {count: messages.length})
      await Promise.all(messages.map((message) => release(message)))
      continue
    }
    // Slots can only have freed during the receive: `free` are still free at least.
    const leased = messages.map(lease)
    for (const flight of leased.slice(0, free)) start(flight)
    waiting.push(...leased.slice(free))
  }
  // Stopping: prefetched messages were never started; give them back before waiting on the rest.
  await giveBack(waiting.splice(0), 'stopping')

  // --- shutdown: let in-flight work finish within the deadline, then abort and release the rest ---
  if (flights.size > 0) {
    const allSettled = Promise.all([...flights].map((flight) => flight.promise))
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), drainDeadlineMs)))
    const first = await Promise.race([allSettled.then(() => 'settled' as const), deadline])
    clearTimeout(timer)
    if (first === 'deadline' && flights.size > 0) {
      handlersAbort.abort(new Error('drain deadline passed'))
      const unfinished = [...flights]
      log.warn(`drain deadline passed: releasing ${unfinished.length} unfinished message(s)`)
      for (const flight of unfinished) {
        flight.abandoned = true
        flight.leased = false
        clearInterval(flight.heartbeat)
        flights.delete(flight)
        counters.inFlight--
        counters.released++
      }
      progress()
      await Promise.all(unfinished.map((flight) => release(flight.message)))
    }
  }
  await Promise.all([...givingBack])
  await deletes.close()
  options.signal?.removeEventListener('abort', onSignal)
  if (stopError) throw stopError
  return {...counters, stoppedBy: stoppedBy ?? 'signal'}
}

/**
 * Deletes of finished messages, sent 10 at a time or after a short tick, so a busy consumer makes
 * one request per 10 messages. A failed batch is retried; entries that still fail are logged (the
 * message comes back after its visibility timeout and is handled again: at-least-once).
 */
class DeleteBatcher {
  private pending: QueueMessage[] = []
  private timer?: NodeJS.Timeout
  private inFlight = new Set<Promise<void>>()

  constructor(
    private readonly queue: Queue,
    private readonly log: Logger,
    private readonly flushMs: number,
  ) {}

  add(message: QueueMessage): void {
    this.pending.push(message)
    if (this.pending.length >= 10) this.flush()
    else this.timer ??= setTimeout(() => this.flush(), this.flushMs)
  }

  /**
   * Called before each receive: a FIFO group stays blocked until its finished head is deleted, so
   * the next receive must not find one still pending; send them now (with whatever else is pending).
   * Other consumers of the queue see the group unblocked within the flush tick. Deletes of
   * messages without a group keep waiting for a full batch or the tick.
   */
  flushGroups(): void {
    if (this.pending.some((message) => message.groupId !== undefined)) this.flush()
  }

  private flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, 10)
      const sending = this.send(batch).finally(() => this.inFlight.delete(sending))
      this.inFlight.add(sending)
    }
  }

  private async send(batch: QueueMessage[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.queue.deleteBatch(batch.map((message) => message.receiptHandle))
        return
      } catch (error) {
        if (error instanceof QueueBatchError) {
          // The backend already retried what could be retried: report the entries that failed.
          for (const failure of error.failures) {
            this.log.warn('could not delete a finished message; it will be handled again', {
              messageId: batch[failure.index]?.id,
              code: failure.code,
              error: failure.message,
            })
          }
          return
        }
        if (attempt >= 3) {
          this.log.error('could not delete finished messages; they will be handled again', {
            messageIds: batch.map((message) => message.id),
            error: errorMessage(error),
          })
          return
        }
        await sleep(backoffDelay(attempt, {baseMs: 200, maxMs: 2000}))
      }
    }
  }

  /** Send what is pending and wait for every delete; true if there was anything to wait for. */
  async settle(): Promise<boolean> {
    const busy = this.pending.length > 0 || this.inFlight.size > 0
    this.flush()
    await Promise.all([...this.inFlight])
    return busy
  }

  async close(): Promise<void> {
    await this.settle()
  }
}

function isOutcome(value: unknown): value is Outcome {
  const kind = (value as {kind?: unknown} | null | undefined)?.kind
  return kind === 'done' || kind === 'retry' || kind === 'dead' || kind === 'stop'
}

function isUsageError(error: unknown): boolean {
  return error instanceof CisternError && error.exitCode === ExitCode.usage
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value))
}
