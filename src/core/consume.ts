// CONTRACT STUB — the implementation is being written (helper "core-consume"). Signatures are fixed.
import type {CisternError} from './errors.js'
import type {Logger} from './log.js'
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
  received: number
  done: number
  retried: number
  dead: number
  /** Handler threw (treated as retry). */
  errors: number
  /** Released unfinished at shutdown (visibility set to 0). */
  released: number
  inFlight: number
}

export interface ConsumeOptions {
  /** Drain until a receive comes back empty (and nothing is in flight), then return. */
  once?: boolean
  /** Max handlers running at once (default 4; may exceed 10: several receives fill it). */
  concurrency?: number
  /** Messages per receive, 1–10 (default 10, capped by free slots). */
  batchSize?: number
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
}

export interface ConsumeResult extends ConsumeCounters {
  /** Why consume() returned: queue empty (once), stop signal, or a handler's stop outcome. */
  stoppedBy: 'empty' | 'signal' | 'handler'
}

export async function consume(_queue: Queue, _handler: Handler, _options: ConsumeOptions = {}): Promise<ConsumeResult> {
  throw new Error('consume: not implemented yet')
}
