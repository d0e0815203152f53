import {errorMessage} from '../../core/errors.js'
import {displayUrl} from '../../core/log.js'
import {sleep} from '../../core/loop.js'
import {type HandlerOutcome, JobFailure} from '../job.js'

/** A transient problem reaching the CI server: the job keeps its continuation token and tries again. */
export class Unreachable extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'Unreachable'
  }
}

export interface CallOptions {
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  timeoutMs: number
  signal?: AbortSignal
  /** Names the server in messages ("Jenkins", "Travis"). */
  what: string
}

export interface CallResult {
  status: number
  headers: Headers
  text: string
}

/**
 * One HTTP call with a timeout. Maps the status to a CodePipeline failure type: 401/403 →
 * PermissionError, 404 → ConfigurationError, 5xx and network errors → Unreachable (retryable).
 */
export async function call(url: string, options: CallOptions): Promise<CallResult> {
  const signals = [AbortSignal.timeout(options.timeoutMs)]
  if (options.signal) signals.push(options.signal)
  let response: Response
  try {
    response = await fetch(url, {
      method: options.method ?? 'GET',
      headers: {'user-agent': 'cistern-codepipeline-worker', ...options.headers},
      body: options.body,
      redirect: 'manual',
      signal: AbortSignal.any(signals),
    })
  } catch (error) {
    const cause = (error as {cause?: unknown}).cause
    throw new Unreachable(`${options.what} unreachable (${displayUrl(url)}): ${errorMessage(cause ?? error)}`)
  }
  const text = await response.text().catch(() => '')
  if (response.status === 401 || response.status === 403) {
    throw new JobFailure('PermissionError', `${options.what} refused the credentials (${response.status} on ${displayUrl(url)})`)
  }
  if (response.status === 404) {
    throw new JobFailure('ConfigurationError', `${options.what} answered 404 for ${displayUrl(url)}: check the job/repository name`)
  }
  if (response.status >= 500 || response.status === 429) {
    throw new Unreachable(`${options.what} answered ${response.status} on ${displayUrl(url)}`)
  }
  return {status: response.status, headers: response.headers, text}
}

export function parseJson(result: CallResult, what: string): Record<string, unknown> {
  try {
    const value = JSON.parse(result.text) as unknown
    if (value && typeof value === 'object') return value as Record<string, unknown>
  } catch {
    // fall through
  }
  throw new Unreachable(`${what} answered ${result.status} with a body that is not a JSON object`)
}


/** Consecutive transient errors tolerated on one external build before SystemUnavailable. */
export const MAX_TRANSIENT_ERRORS = 10

export interface Poll<S> {
  /** One status check: a final outcome, or the state to keep (with progress). */
  check(state: S): Promise<{done: true; outcome: HandlerOutcome} | {done: false; state: S; summary: string; percentComplete?: number; externalExecutionId?: string}>
  token(state: S, errors: number): string
}

/**
 * Checks the external build until it is final, `waitMs` has passed, or the worker is stopping;
 * then hands back a continuation token so CodePipeline (and any worker) can resume it.
 */
export async function follow<S>(
  initial: S,
  errors: number,
  poll: Poll<S>,
  options: {waitMs: number; intervalMs: number; stopping: AbortSignal; what: string},
): Promise<HandlerOutcome> {
  const started = Date.now()
  let state = initial
  let consecutive = errors
  let last: {summary: string; percentComplete?: number; externalExecutionId?: string} = {summary: `waiting for ${options.what}`}
  for (;;) {
    try {
      const step = await poll.check(state)
      if (step.done) return step.outcome
      state = step.state
      consecutive = 0
      last = step
    } catch (error) {
      if (!(error instanceof Unreachable)) throw error
      consecutive++
      if (consecutive >= MAX_TRANSIENT_ERRORS) {
        throw new JobFailure('SystemUnavailable', `${error.message} (${consecutive} times in a row)`, last.externalExecutionId)
      }
      last = {...last, summary: `${error.message}; will check again`}
    }
    if (options.stopping.aborted || Date.now() - started >= options.waitMs) break
    await sleep(Math.min(options.intervalMs, Math.max(0, options.waitMs - (Date.now() - started))), options.stopping)
  }
  return {
    status: 'inProgress',
    continuationToken: poll.token(state, consecutive),
    summary: last.summary,
    ...(last.percentComplete !== undefined ? {percentComplete: last.percentComplete} : {}),
    ...(last.externalExecutionId ? {externalExecutionId: last.externalExecutionId} : {}),
  }
}
