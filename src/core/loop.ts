import {CisternError, ExitCode, errorMessage} from './errors.js'
import {type Logger, silentLogger} from './log.js'

/**
 * Wait `ms`, or less if `signal` aborts. Never rejects: loops check `signal.aborted` afterwards.
 * Returns true when the full time elapsed.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false)
  if (ms <= 0) return Promise.resolve(true)
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve(true)
    }, ms)
    signal?.addEventListener('abort', onAbort, {once: true})
  })
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
 * Exponential backoff with "equal jitter": attempt 1 waits base/2..base, attempt 2 base..2·base,
 * and so on up to the cap. Half the delay is fixed so a failing dependency is never polled in a
 * hot loop; the other half is random so many workers do not retry in step.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 1000
  const max = options.maxMs ?? 30_000
  const random = options.random ?? Math.random
  const exp = Math.min(max, base * 2 ** Math.max(0, Math.min(attempt - 1, 30)))
  return Math.round(exp / 2 + random() * (exp / 2))
}

export interface PollLoopOptions {
  /** One pass: stop the first time `tick` reports it found nothing to do. */
  once?: boolean
  /** Foreground mode: stop when aborted (SIGINT/SIGTERM). */
  signal?: AbortSignal
  /** Wait between ticks that found nothing (default 1000 ms). */
  idleMs?: number
  /** Backoff after a failing tick (defaults of backoffDelay). */
  backoff?: BackoffOptions
  /** In once mode, give up after this many failures in a row and rethrow (default 5; foreground never gives up). */
  maxConsecutiveErrors?: number
  /** Checked before each tick; while true the loop waits (maintenance mode). */
  paused?: () => boolean | Promise<boolean>
  /** How often paused() is re-checked (default 1000 ms). */
  pausePollMs?: number
  log?: Logger
}

export interface PollLoopResult {
  ticks: number
  errors: number
  stoppedBy: 'empty' | 'signal'
}

/**
 * The loop shape every non-queue poller shares (CodePipeline's PollForJobs, cron routines): call
 * `tick` until stopped. `tick` resolves true when it did work (tick again at once) and false when
 * there was nothing (once: stop; foreground: wait idleMs). A throwing tick is logged and backed off;
 * a usage/config error (exit 2) is not transient and is rethrown at once.
 */
export async function pollLoop(tick: (signal: AbortSignal) => Promise<boolean>, options: PollLoopOptions = {}): Promise<PollLoopResult> {
  const log = options.log ?? silentLogger
  const signal = options.signal ?? new AbortController().signal
  const maxErrors = options.once ? (options.maxConsecutiveErrors ?? 5) : Number.POSITIVE_INFINITY
  let ticks = 0
  let errors = 0
  let inARow = 0
  while (!signal.aborted) {
    if (await isPaused(options.paused, log)) {
      await sleep(options.pausePollMs ?? 1000, signal)
      continue
    }
    let didWork: boolean
    try {
      ticks++
      didWork = await tick(signal)
      inARow = 0
    } catch (error) {
      if (signal.aborted) break
      if (error instanceof CisternError && error.exitCode === ExitCode.usage) throw error
      errors++
      inARow++
      if (inARow >= maxErrors) throw error
      const delay = backoffDelay(inARow, options.backoff)
      log.warn(`poll failed; retrying in ${Math.round(delay / 100) / 10}s`, {error: errorMessage(error), attempt: inARow})
      await sleep(delay, signal)
      continue
    }
    if (!didWork) {
      if (options.once) return {ticks, errors, stoppedBy: 'empty'}
      await sleep(options.idleMs ?? 1000, signal)
    }
  }
  return {ticks, errors, stoppedBy: 'signal'}
}

/** paused() that throws counts as paused (if we cannot tell whether maintenance is on, do not work). */
export async function isPaused(paused: (() => boolean | Promise<boolean>) | undefined, log: Logger): Promise<boolean> {
  if (!paused) return false
  try {
    return Boolean(await paused())
  } catch (error) {
    log.warn('cannot tell whether processing is paused; waiting', {error: errorMessage(error)})
    return true
  }
}

/** A promise with its resolve function outside (wake-ups between the receive loop and handlers). */
export function deferred<T = void>(): {promise: Promise<T>; resolve: (value: T) => void} {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return {promise, resolve}
}
