/**
 * The one consumer every worker runs (docs/delivery.md): batch receive, a concurrency limit above
 * 10 if asked, prefetch with heartbeats, FIFO hold-back, batched deletes, target gates, in-process
 * retries for one-shot runs, and a result that says what remains and why. The steps live in
 * ./consume/consumer.ts; the outcomes a handler returns in ./delivery.ts.
 */
import {type Delivered, type Outcome, type Stop, type TargetDown, type TargetDownReport, TargetGates, TargetJudge} from './delivery.js'
import type {CisternError, RunOutcome} from './errors.js'
import {type Logger, silentLogger} from './log.js'
import type {Queue, QueueMessage} from './queue/types.js'
import {Consumer} from './consume/consumer.js'
import type {StoppedBy} from './consume/report.js'

export type {StoppedBy} from './consume/report.js'

export interface HandlerContext {
  /** Aborted when the stop deadline passes during shutdown: stop work, the message is released. */
  signal: AbortSignal
  /** Lines about this message carry its id. */
  log: Logger
  /** The run's target gates: a handler of several targets returns `gates.heldBack(key)` for a closed one. */
  gates: TargetGates
  /** The run's judge of target answers (shares the gates). */
  judge: TargetJudge
  /** Attempts of this message so far, this one included (`attempts`, else `receiveCount`). */
  attempt: number
  /** The piece's own id of this message ("push 3f2a… acme/widgets"), for every line about it; an outcome's own label wins. */
  setLabel(label: string): void
}

export type Handler = (message: QueueMessage, context: HandlerContext) => Promise<Outcome>

/** A handler's context outside a consumer run (a handler called directly, tests): what is not given is fresh. */
export function handlerContext(given: Partial<HandlerContext> = {}): HandlerContext {
  const gates = given.gates ?? new TargetGates()
  return {
    signal: new AbortController().signal,
    log: silentLogger,
    judge: new TargetJudge(gates),
    attempt: 1,
    setLabel: () => undefined,
    ...given,
    gates,
  }
}

export interface ConsumeCounters {
  /**
   * Messages handed to the handler. A prefetched message given back before it started (stop,
   * pause, its FIFO group held back, its target down) is not counted here nor in `released`: it
   * was never taken on.
   */
  received: number
  delivered: number
  /** Retry outcomes, a throwing handler's included. */
  retried: number
  /** Dead letters written, by the handler's outcome, at the attempt limit, or by the queue at receive. */
  dead: number
  /** Handed back never attempted: released and target-down outcomes, a stop, and messages unfinished at the stop deadline. */
  released: number
  /** Handler threw (or returned no outcome): treated as a retry. */
  errors: number
  inFlight: number
  /** Receives that failed (each backed off before the next). */
  receiveErrors: number
}

export interface DeadLetter {
  /** The queue's message id. */
  id: string
  label?: string
  reason: string
}

export interface ConsumeResult extends ConsumeCounters, RunOutcome {
  /** Why the run ended: the queue was empty (one-shot), a stop signal, the one-shot deadline, its target gave up, a stop outcome. */
  stoppedBy: StoppedBy
  /** The first 100 dead letters. */
  deadLetters: DeadLetter[]
  /** visible + in flight + delayed after the run; -1 when the queue cannot tell. */
  remaining: number
  /** When what another consumer holds becomes visible again (ISO), where the queue tells. */
  heldUntil?: string
  /** Targets down when the run ended. */
  targetsDown: TargetDownReport[]
  /** The error of a stop outcome (`problems` already carries its line and `exitCode` its code). */
  stopError?: CisternError
}

export interface ConsumeOptions {
  /**
   * One-shot: work until nothing is left that can be done now, then return. Retried and released
   * messages due back before `deadlineMs` are waited for; the run ends when the queue is empty, the
   * deadline passes, or what is left waits only for targets it gave up.
   */
  once?: boolean
  /** One-shot: stop receiving this long after the start (default 5 minutes). */
  deadlineMs?: number
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
   * given back (released) at once on stop or pause, when their only target goes down, and when an
   * earlier message of their FIFO group is coming back. Turn it off when handlers run for minutes
   * and other consumers share the queue, so that idle consumers get those messages instead.
   */
  prefetch?: boolean
  /** Long-poll seconds in a loop (default 20; one-shot runs use 0). */
  waitSeconds?: number
  /** Visibility timeout per receive (default 30 s); the heartbeat extends it while a message is held. */
  visibilityTimeout?: number
  /** Stop receiving when aborted (SIGINT/SIGTERM); in-flight work gets `stopDeadlineMs` to finish. */
  signal?: AbortSignal
  /** After a stop, how long in-flight handlers get before their context.signal aborts and their messages are released (default 30 s). */
  stopDeadlineMs?: number
  /** Checked before each receive; while true the consumer waits (maintenance mode / spigot OFF). */
  paused?: () => boolean | Promise<boolean>
  /** Called whenever counters change (progress bars, metrics). */
  onProgress?: (counters: Readonly<ConsumeCounters>) => void
  log?: Logger
  /** A loop's empty receive that returned sooner than this waits out the rest (backends without long polling). Default 1000 ms. */
  idleMs?: number
  /** How often paused() is re-checked while paused (default 1000 ms). */
  pausePollMs?: number
  /** Back-off after failed receives (default 1 s doubling to 30 s, with jitter). */
  receiveBackoff?: {baseMs?: number; maxMs?: number}
  /**
   * Give up after this many failed receives in a row: consume() rejects with the last error once
   * in-flight work has settled (a CisternError as it is, anything else as TargetUnhealthyError,
   * exit 3). Default 5 one-shot, never in a loop. A usage error (exit 2: no such queue, a bad URL)
   * is never retried.
   */
  maxReceiveErrors?: number
  /** Deletes are collected and sent in batches of 10, or after this many ms (default 50), and before each receive. */
  deleteFlushMs?: number
  /**
   * The queue's attempt limit (its maxReceiveCount): a retry at this many attempts goes dead from
   * the consumer, loudly, with the last reason ("gave up after 5 attempts: …"). Default: none.
   */
  maxAttempts?: number
  /**
   * The one target of a single-target consumer (status-queue → `github:<host>`): while its gate is
   * closed nothing is received (SQS counts every receive); a one-shot run stops when it gives the
   * target up; delivered outcomes open the gate.
   */
  target?: string
  /**
   * The health check of a single-target consumer (with `target`): asked whenever the target is
   * down and its gate opens, and before the first receive on SQS and the facade, so that no message
   * is received to test a target that may still be down (those count every receive toward the
   * redrive policy). Delivered: the target answers, and one message tests it (only a delivery
   * makes it well again); target down: its gate closes (again); stop: the run stops with the error.
   * A probe that throws is a target down. Without a probe, one received message tests the target.
   */
  probe?: (signal: AbortSignal) => Promise<Delivered | TargetDown | Stop>
  /**
   * One-shot: when nothing of this run's is left but the queue says a hidden message (another
   * consumer's lease, a delay) becomes visible before the deadline, wait for it. A consumer that was
   * killed leaves its messages to this run; one that is alive keeps extending its leases, so a wait
   * after which nothing was received ends the run, which then reports them held by another
   * consumer. Default false.
   */
  awaitLapsingLeases?: boolean
  /** Target gates to use (shared across runs); default: new ones for this run. */
  gates?: TargetGates
  /** One-shot: give a target up after this long down with no success (default 30 s; for the gates this run creates). */
  giveUpAfterMs?: number
  /** The judge of target answers handed to handlers; default: one on this run's gates. */
  judge?: TargetJudge
}

export {MAX_RETRY_SECONDS, retryDelaySeconds} from './consume/consumer.js'

/** Runs the consumer until its work is done (one-shot), a stop signal, or a stop outcome. See ConsumeOptions. */
export function consume(queue: Queue, handler: Handler, options: ConsumeOptions = {}): Promise<ConsumeResult> {
  return new Consumer(queue, handler, options).run()
}
