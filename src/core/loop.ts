import {setTimeout as delay} from 'node:timers/promises'

import {CisternError, ExitCode, errorMessage} from './errors.js'
import {type Logger, silentLogger} from './log.js'

/**
 * Wait `ms`, or less if `signal` aborts. Never rejects: loops check `signal.aborted` afterwards.
 * Returns true when the full time elapsed.
 */
export async function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return false
  if (!(ms > 0)) return true
  try {
    await delay(ms, undefined, {signal})
    return true
  } catch {
    // The only rejection timers/promises has: the signal aborted.
    return false
  }
}

export interface BackoffOptions {
  /** Delay of the first attempt before jitter (default 1000 ms). */
  baseMs?: number
  /** Cap (default 30 s). */
  maxMs?: number
  /** Random source in [0, 1) (tests pass a fixed one). */
  random?: () => number
}

/**
 * The one back-off formula: exponential with "equal jitter". Attempt 1 waits base/2..base,
 * attempt 2 base..2·base, and so on up to the cap. Half the delay is fixed so a failing dependency
 * is never polled in a hot loop; the other half is random so many workers do not retry in step.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 1000
  const max = options.maxMs ?? 30_000
  const random = options.random ?? Math.random
  const exp = Math.min(max, base * 2 ** Math.max(0, Math.min(attempt - 1, 30)))
  return Math.round(exp / 2 + random() * (exp / 2))
}

/** A promise with its resolve function outside. */
export function deferred<T = void>(): {promise: Promise<T>; resolve: (value: T) => void} {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return {promise, resolve}
}

/**
 * A wake-up call between a loop and what it waits for (a handler settling, a slot freeing, work
 * arriving): `wait()` resolves at the next `notify()`, or when its time is up or its signal aborts.
 */
export class Wake {
  private next = deferred()

  notify(): void {
    this.next.resolve()
    this.next = deferred()
  }

  /** The promise of the next notify(); take it before starting something that may notify. */
  get notified(): Promise<void> {
    return this.next.promise
  }

  /** Until the next notify(), at most `ms` (default: no limit), or until the signal aborts. */
  async wait(ms = Number.POSITIVE_INFINITY, signal?: AbortSignal, notified = this.notified): Promise<void> {
    if (signal?.aborted) return
    // A plain timer and listener, both removed after: this runs on every settle of a busy consumer.
    let timer: NodeJS.Timeout | undefined
    let onAbort: (() => void) | undefined
    const timeUpOrAborted = new Promise<void>((resolve) => {
      if (Number.isFinite(ms)) timer = setTimeout(resolve, Math.max(0, ms))
      onAbort = () => {
        resolve()
      }
      signal?.addEventListener('abort', onAbort, {once: true})
    })
    await Promise.race([notified, timeUpOrAborted])
    clearTimeout(timer)
    if (onAbort) signal?.removeEventListener('abort', onAbort)
  }
}

/** paused() that throws counts as paused (if we cannot tell whether maintenance is on, do not work). */
export async function isPaused(paused: (() => boolean | Promise<boolean>) | undefined, log: Logger): Promise<boolean> {
  if (!paused) return false
  try {
    return await paused()
  } catch (error) {
    log.warn('cannot tell whether processing is paused; waiting', {error: errorMessage(error)})
    return true
  }
}

export interface PollLoopOptions {
  /** One pass: stop the first time `tick` reports it found nothing to do. */
  once?: boolean
  /** Stop when aborted (SIGINT/SIGTERM); `stop()` does the same. */
  signal?: AbortSignal
  /** Wait after a tick that found nothing (default 1000 ms). */
  idleMs?: number
  /**
   * Grow the idle wait while ticks keep finding nothing: the n-th idle tick in a row waits
   * backoffDelay(n, idleBackoff) instead of idleMs (CodePipeline's poll interval min → max).
   */
  idleBackoff?: BackoffOptions
  /** Back-off after a failing tick (defaults of backoffDelay). */
  backoff?: BackoffOptions
  /** Give up after this many failing ticks in a row and rethrow the last error (default 5 once, never in a loop). */
  maxConsecutiveErrors?: number
  /** Errors no retry will fix, rethrown at once (usage/config errors, exit 2, always are). */
  fatal?: (error: unknown) => boolean
  /** Checked before each tick; while true the loop waits (maintenance mode). */
  paused?: () => boolean | Promise<boolean>
  /** How often paused() is re-checked (default 1000 ms). */
  pausePollMs?: number
  log?: Logger
}

export interface PollLoopResult {
  ticks: number
  /** Ticks that threw (each was logged and backed off). */
  errors: number
  stoppedBy: 'empty' | 'signal'
}

/**
 * The loop shape of the pollers that are not queue consumers (CodePipeline's PollForJobs, the
 * hooks scheduler's routines): call `tick` until stopped. `tick` resolves true when it did work
 * (tick again at once) and false when there was nothing (once: stop; else wait the idle time, cut
 * short by `wake()`). A throwing tick is logged and backed off, never retried in a hot loop; a
 * usage/config error (exit 2) or one `fatal` names is rethrown at once. `tick` gets a signal that
 * aborts on stop, to cut its own long poll short. `stop()` resolves once the loop has ended.
 */
export class PollLoop {
  private readonly stopping = new AbortController()
  private readonly wakeUp = new Wake()
  private readonly log: Logger
  private running?: Promise<PollLoopResult>

  constructor(
    private readonly tick: (signal: AbortSignal) => Promise<boolean>,
    private readonly options: PollLoopOptions = {},
  ) {
    this.log = options.log ?? silentLogger
    const outer = options.signal
    if (outer?.aborted) this.stopping.abort()
    else {
      outer?.addEventListener(
        'abort',
        () => {
          this.stopping.abort()
        },
        {once: true, signal: this.stopping.signal},
      )
    }
  }

  /** Runs the loop; calling it again returns the same run. */
  run(): Promise<PollLoopResult> {
    this.running ??= this.loop().finally(() => {
      this.stopping.abort()
    })
    return this.running
  }

  /** Cut an idle or paused wait short: work arrived, a slot freed, maintenance ended. */
  wake(): void {
    this.wakeUp.notify()
  }

  /** Stop after the current tick (its signal aborts); resolves when the loop has ended. */
  async stop(): Promise<PollLoopResult | undefined> {
    this.stopping.abort()
    return this.running
  }

  private async loop(): Promise<PollLoopResult> {
    const {once, idleMs = 1000, pausePollMs = 1000} = this.options
    const signal = this.stopping.signal
    // A function, not `signal.aborted` twice: it changes across every await.
    const stopped = () => signal.aborted
    const maxErrors = this.options.maxConsecutiveErrors ?? (once ? 5 : Number.POSITIVE_INFINITY)
    const result: PollLoopResult = {ticks: 0, errors: 0, stoppedBy: 'signal'}
    let failuresInARow = 0
    let idleInARow = 0
    while (!stopped()) {
      if (await isPaused(this.options.paused, this.log)) {
        await this.wakeUp.wait(pausePollMs, signal)
        continue
      }
      let didWork: boolean
      try {
        result.ticks++
        didWork = await this.tick(signal)
        failuresInARow = 0
      } catch (error) {
        if (stopped()) break
        if (this.isFatal(error)) throw error
        result.errors++
        failuresInARow++
        if (failuresInARow >= maxErrors) throw error
        const wait = backoffDelay(failuresInARow, this.options.backoff)
        this.log.warn(`poll failed; retrying in ${seconds(wait)}`, {error: errorMessage(error), attempt: failuresInARow})
        await sleep(wait, signal)
        continue
      }
      if (didWork) {
        idleInARow = 0
        continue
      }
      if (once) {
        result.stoppedBy = 'empty'
        break
      }
      idleInARow++
      await this.wakeUp.wait(this.options.idleBackoff ? backoffDelay(idleInARow, this.options.idleBackoff) : idleMs, signal)
    }
    return result
  }

  private isFatal(error: unknown): boolean {
    return (error instanceof CisternError && error.exitCode === ExitCode.usage) || Boolean(this.options.fatal?.(error))
  }
}

/** `new PollLoop(tick, options).run()`, for loops nobody needs to wake. */
export function pollLoop(tick: (signal: AbortSignal) => Promise<boolean>, options: PollLoopOptions = {}): Promise<PollLoopResult> {
  return new PollLoop(tick, options).run()
}

/** "2.5s": a wait in a log line. */
export function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10}s`
}
