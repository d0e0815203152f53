/**
 * "Results are delivered" (docs/delivery.md): a status, a response, a CodePipeline job result is
 * retried with back-off until it is delivered or its deadline passes; giving up is an error the
 * caller turns into a warn line and an exit code.
 *
 * Not p-retry: it has its own delay formula (a sixth one in this codebase), cannot wait what an
 * answer asked for (Retry-After, a rate-limit reset) and may start an attempt at the deadline;
 * this is a few lines on loop.ts's one back-off.
 */
import {CisternError, ExitCode, errorMessage} from './errors.js'
import {type BackoffOptions, backoffDelay, sleep} from './loop.js'

export interface RetryUntilOptions {
  /** No attempt starts after this moment (epoch ms or a Date): the job's own deadline. */
  deadline: number | Date
  /** Stop retrying (shutdown): the last error is given up on at once. */
  signal?: AbortSignal
  /** Whether an error is worth another attempt (default: anything but a usage/config error, exit 2). */
  shouldRetry?: (error: unknown, attempt: number) => boolean
  /** Called before each wait, to log it ("status not posted yet; retrying in 2.1s"). */
  onRetry?: (failure: {error: unknown; attempt: number; delayMs: number}) => void
  /** Waits between attempts (default 1 s doubling to 30 s, with jitter). */
  backoff?: BackoffOptions
  /** A wait the failed answer asked for (Retry-After, a rate-limit reset), in ms; the longer of it and the back-off is waited. */
  retryAfterMs?: (error: unknown) => number | undefined
}

/** A result that could not be delivered in time: `cause` is the last failure. Exit 1. */
export class GaveUpError extends CisternError {
  constructor(
    readonly attempts: number,
    readonly why: 'deadline' | 'stopping',
    readonly lastError: unknown,
  ) {
    const when = why === 'deadline' ? 'before its deadline' : 'before the worker stopped'
    super(`not delivered ${when} (${attempts} attempt${attempts === 1 ? '' : 's'}): ${errorMessage(lastError)}`, {exitCode: ExitCode.failure, cause: lastError})
    this.name = 'GaveUpError'
  }
}

/**
 * Runs `work` until it resolves. A failure worth retrying waits its back-off (or what the answer
 * asked for) and tries again, unless that would start after the deadline or the signal aborted:
 * then GaveUpError. A failure not worth retrying is rethrown as it is.
 */
export async function retryUntil<T>(work: (attempt: number) => Promise<T>, options: RetryUntilOptions): Promise<T> {
  const deadline = options.deadline instanceof Date ? options.deadline.getTime() : options.deadline
  const shouldRetry = options.shouldRetry ?? ((error: unknown) => !(error instanceof CisternError && error.exitCode === ExitCode.usage))
  for (let attempt = 1; ; attempt++) {
    try {
      return await work(attempt)
    } catch (error) {
      if (!shouldRetry(error, attempt)) throw error
      if (options.signal?.aborted) throw new GaveUpError(attempt, 'stopping', error)
      const delayMs = Math.max(backoffDelay(attempt, options.backoff), options.retryAfterMs?.(error) ?? 0)
      if (Date.now() + delayMs > deadline) throw new GaveUpError(attempt, 'deadline', error)
      options.onRetry?.({error, attempt, delayMs})
      if (!(await sleep(delayMs, options.signal))) throw new GaveUpError(attempt, 'stopping', error)
      // A timer may fire late on a busy machine: the deadline still holds.
      if (Date.now() > deadline) throw new GaveUpError(attempt, 'deadline', error)
    }
  }
}
