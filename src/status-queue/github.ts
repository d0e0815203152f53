import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
import {nodeFetch} from './http.js'
import type {CommitStatus} from './status.js'

export const DEFAULT_GITHUB_API = 'https://api.github.com'

export interface GitHubOptions {
  /** API base URL (GITHUB_URL): https://api.github.com or https://ghe.example.com/api/v3. */
  apiUrl?: string
  token: string
  /** Requests to GitHub at once (default 8; GitHub allows 100 concurrent per token). */
  concurrency?: number
  /** Space write starts to at most this many per minute; 0 = no spacing (default 0). */
  writesPerMinute?: number
  /** In-process retries of 5xx and network errors (retry plugin), before the queue takes over (default 2). */
  retries?: number
  /** Milliseconds per plugin "second" (retry waits (n+1)² of them; rate-limit waits Retry-After of them). Default 1000; tests shrink it. */
  retryBaseMs?: number
  /** A rate limit that lifts within this many seconds is waited out in-process (default 5); longer ones become a queue retry. */
  inlineWaitMaxSeconds?: number
  /** Cap on the delay handed to the queue for a rate-limited message (default 900 = SQS's max delay). */
  maxRetryDelaySeconds?: number
  /** Per-attempt request timeout (default 30 s). */
  requestTimeoutMs?: number
  userAgent?: string
  log?: Logger
}

export interface StatusTarget {
  owner: string
  repo: string
  sha: string
}

/** What happened to one POST /repos/{owner}/{repo}/statuses/{sha}. */
export type PostResult =
  | {kind: 'posted'; httpStatus: number}
  /** Try again later: after delaySeconds when GitHub said so (Retry-After / x-ratelimit-reset), else the queue's backoff. */
  | {kind: 'retry'; delaySeconds?: number; reason: string}
  /** GitHub will never accept it (404, 422, …). */
  | {kind: 'dead'; reason: string}
  /** GITHUB_URL does not point at the API (a redirect, an HTML page): no message can succeed. */
  | {kind: 'misdirected'; httpStatus: number; reason: string}
  /** The token is rejected (401) or lacks permission (403): no message can succeed. */
  | {kind: 'auth'; httpStatus: number; reason: string}

export interface GitHubClient {
  readonly apiUrl: string
  postStatus(target: StatusTarget, status: CommitStatus, signal?: AbortSignal): Promise<PostResult>
}

/** Structural view of @octokit/request-error's RequestError (and of fetch failures). */
interface RequestErrorLike {
  name?: string
  status?: number
  message?: string
  response?: {headers?: Record<string, string | number | undefined>; data?: unknown}
}

export interface ClassifyOptions {
  maxRetryDelaySeconds?: number
  now?: number
}

/**
 * GitHub's answer → what to do with the message. Rate limits (429, or 403 with
 * x-ratelimit-remaining 0 or a "secondary rate limit" message) retry after Retry-After or
 * x-ratelimit-reset, capped; 5xx and network errors retry with the queue's backoff.
 */
export function classifyGitHubError(error: unknown, options: ClassifyOptions = {}): PostResult {
  const e = (error ?? {}) as RequestErrorLike
  const maxDelay = options.maxRetryDelaySeconds ?? 900
  const now = options.now ?? Date.now()
  const status = typeof e.status === 'number' ? e.status : 0
  const message = githubMessage(e)

  if (e.name === 'AbortError') return {kind: 'retry', delaySeconds: 0, reason: 'request aborted at shutdown'}
  if (status === 0 || status >= 500) {
    return {kind: 'retry', reason: status ? `GitHub answered ${status}: ${message}` : `request failed: ${message}`}
  }
  const rateDelay = rateLimitDelaySeconds(e, status, now)
  if (rateDelay !== undefined) {
    return {kind: 'retry', delaySeconds: Math.min(Math.max(rateDelay, 1), maxDelay), reason: `GitHub rate limit (${status}): ${message}`}
  }
  // The API always answers JSON: an HTML 404/405 means GITHUB_URL points at the web UI or a proxy.
  if ([404, 405, 406].includes(status) && typeof e.response?.data === 'string') {
    return {kind: 'misdirected', httpStatus: status, reason: `GitHub answered ${status} with a non-JSON page: GITHUB_URL does not look like the GitHub API`}
  }
  if (status === 401) return {kind: 'auth', httpStatus: status, reason: `GitHub rejected the token (401 ${message})`}
  if (status === 403) return {kind: 'auth', httpStatus: status, reason: `GitHub refused the token (403 ${message})`}
  if (status === 404) {
    return {kind: 'dead', reason: `GitHub answered 404: repository or commit not found, or the token cannot see the repository (${message})`}
  }
  if (status === 422) return {kind: 'dead', reason: `GitHub refused the status (422 ${message})`}
  return {kind: 'dead', reason: `GitHub answered ${status}: ${message}`}
}

function header(e: RequestErrorLike, name: string): string | undefined {
  const value = e.response?.headers?.[name]
  return value === undefined ? undefined : String(value)
}

/** Seconds until a rate limit lifts, or undefined when the error is not a rate limit. */
function rateLimitDelaySeconds(e: RequestErrorLike, status: number, now: number): number | undefined {
  if (status !== 403 && status !== 429) return undefined
  const retryAfter = header(e, 'retry-after')
  const remaining = header(e, 'x-ratelimit-remaining')
  const reset = header(e, 'x-ratelimit-reset')
  const secondary = /secondary rate limit|abuse/i.test(e.message ?? '')
  const primary = remaining === '0' || /rate limit/i.test(e.message ?? '')
  if (status === 403 && !secondary && !primary && retryAfter === undefined) return undefined
  if (retryAfter !== undefined) {
    const seconds = Number(retryAfter)
    if (Number.isFinite(seconds)) return Math.ceil(seconds)
    const date = Date.parse(retryAfter)
    if (Number.isFinite(date)) return Math.ceil((date - now) / 1000)
  }
  if (remaining === '0' && reset !== undefined && Number.isFinite(Number(reset))) {
    return Math.ceil(Number(reset) - now / 1000) + 1
  }
  // GitHub's advice for a secondary limit without Retry-After: wait at least a minute.
  return 60
}

function githubMessage(e: RequestErrorLike): string {
  const data = e.response?.data as {message?: unknown; errors?: unknown} | undefined
  let message = typeof data?.message === 'string' ? data.message : (e.message ?? 'unknown error')
  if (Array.isArray(data?.errors) && data.errors.length > 0) {
    const details = data.errors.map((item) => (typeof item === 'object' && item && 'message' in item ? String(item.message) : JSON.stringify(item)))
    message += ` (${details.join('; ')})`
  }
  return message.slice(0, 300)
}

/**
 * A small limiter standing in for the throttling plugin's Bottleneck groups: the plugin's own
 * `write` group allows one write per second, process-wide, whatever the GitHub. This one allows
 * `concurrency` requests at once and spaces writes only when `writesPerMinute` asks for it
 * (github.com's content-creation limit; GitHub Enterprise has none by default).
 */
class Limiter {
  private running = 0
  private readonly waiting: Array<() => void> = []
  private nextStart = 0

  constructor(
    private readonly concurrency: number,
    private readonly intervalMs: number,
  ) {}

  async schedule<R>(run: () => Promise<R>): Promise<R> {
    if (this.running >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve))
    else this.running++
    try {
      if (this.intervalMs > 0) {
        const now = Date.now()
        const start = Math.max(now, this.nextStart)
        this.nextStart = start + this.intervalMs
        if (start > now) await new Promise((resolve) => setTimeout(resolve, start - now))
      }
      return await run()
    } finally {
      const next = this.waiting.shift()
      if (next) next()
      else this.running--
    }
  }

  /** The shape plugin-throttling calls: group.key(id).schedule(jobOptions, fn, ...args). */
  asGroup() {
    const schedule = <A extends unknown[], R>(_options: unknown, fn: (...args: A) => Promise<R>, ...args: A) => this.schedule(() => fn(...args))
    return {key: () => ({schedule})}
  }
}

const passThrough = {
  key: () => ({schedule: <A extends unknown[], R>(_options: unknown, fn: (...args: A) => Promise<R>, ...args: A) => fn(...args)}),
}

/**
 * Stands in for the throttling plugin's retry Bottleneck, which costs more CPU per request than
 * the request itself at hundreds of statuses a second. Same contract as the plugin uses: `failed`
 * listeners get (error, {args, retryCount}) and return the milliseconds to wait before the next
 * attempt, or nothing to give up.
 */
type FailedListener = (error: unknown, info: {args: unknown[]; retryCount: number}) => unknown
class RetryLimiter {
  private readonly listeners: FailedListener[] = []

  on(event: string, listener: FailedListener): void {
    if (event === 'failed') this.listeners.push(listener)
  }

  async schedule<A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> {
    for (let retryCount = 0; ; retryCount++) {
      try {
        return await fn(...args)
      } catch (error) {
        let waitMs: number | undefined
        for (const listener of this.listeners) {
          const answer = await listener(error, {args, retryCount})
          if (typeof answer === 'number') waitMs = answer
        }
        if (waitMs === undefined) throw error
        await new Promise((resolve) => setTimeout(resolve, waitMs))
      }
    }
  }
}

/**
 * Octokit (lazy-loaded) with the retry and throttling plugins, pointed at GITHUB_URL.
 *
 * Waiting policy: a 5xx or network error is retried in-process `retries` times ((n+1)² × base);
 * a rate limit that lifts within `inlineWaitMaxSeconds` is waited out in-process once; anything
 * longer is handed back as `retry` with the Retry-After / reset delay so the queue holds the
 * message instead of a worker slot, and later messages skip the call until the limit lifts.
 */
export async function createGitHubClient(options: GitHubOptions): Promise<GitHubClient> {
  const [{Octokit}, {retry}, {throttling}] = await Promise.all([
    import('@octokit/rest'),
    import('@octokit/plugin-retry'),
    import('@octokit/plugin-throttling'),
  ])
  const apiUrl = (options.apiUrl ?? DEFAULT_GITHUB_API).replace(/\/+$/, '')
  const log = options.log ?? silentLogger
  const inlineWaitMax = options.inlineWaitMaxSeconds ?? 5
  const maxRetryDelaySeconds = options.maxRetryDelaySeconds ?? 900
  const baseMs = options.retryBaseMs ?? 1000
  const timeoutMs = options.requestTimeoutMs ?? 30_000
  const writesPerMinute = options.writesPerMinute ?? 0
  const limiter = new Limiter(Math.max(1, options.concurrency ?? 8), writesPerMinute > 0 ? Math.ceil(60_000 / writesPerMinute) : 0)

  // node:http with keep-alive, a per-attempt timeout the retry plugin retries, and a caller abort (shutdown) it does not.
  const fetchImpl = nodeFetch({maxSockets: Math.max(1, options.concurrency ?? 8), timeoutMs})

  const onLimit = (kind: string) => (retryAfter: number, request: {method?: string; url?: string}, _octokit: unknown, retryCount: number) => {
    const wait = retryCount < 1 && retryAfter <= inlineWaitMax
    log.debug(`GitHub ${kind} rate limit`, {retryAfter, waitInProcess: wait, method: request.method, url: request.url})
    return wait
  }

  const RetryingOctokit = Octokit.plugin(retry, throttling)
  const octokit = new RetryingOctokit({
    auth: options.token,
    baseUrl: apiUrl,
    userAgent: options.userAgent ?? 'cistern-status-queue',
    log: {
      debug: (message: string) => log.debug(message, {component: 'octokit'}),
      info: (message: string) => log.debug(message, {component: 'octokit'}),
      warn: (message: string) => log.warn(message, {component: 'octokit'}),
      error: (message: string) => log.error(message, {component: 'octokit'}),
    },
    request: {fetch: fetchImpl},
    retry: {
      retries: options.retries ?? 2,
      retryAfterBaseValue: baseMs,
      // 429 is the throttling plugin's (it reads Retry-After); the rest never succeed on a retry.
      doNotRetry: [400, 401, 403, 404, 410, 422, 429, 451],
    },
    throttle: {
      retryAfterBaseValue: baseMs,
      fallbackSecondaryRateRetryAfter: 60,
      onRateLimit: onLimit('primary'),
      onSecondaryRateLimit: onLimit('secondary'),
      retryLimiter: new RetryLimiter(),
      global: limiter.asGroup(),
      write: passThrough,
      notifications: passThrough,
      search: passThrough,
      auth: passThrough,
    } as never,
  })

  // When GitHub says the limit is exhausted, later messages go back to the queue without a request.
  let cooldownUntil = 0
  const cooldown = (seconds: number) => {
    cooldownUntil = Math.max(cooldownUntil, Date.now() + seconds * 1000)
  }

  return {
    apiUrl,
    async postStatus(target, status, signal) {
      const waitMs = cooldownUntil - Date.now()
      if (waitMs > 0) {
        return {kind: 'retry', delaySeconds: Math.min(Math.ceil(waitMs / 1000), maxRetryDelaySeconds), reason: 'GitHub rate limit still in force'}
      }
      try {
        const response = await octokit.rest.repos.createCommitStatus({
          owner: target.owner,
          repo: target.repo,
          sha: target.sha,
          ...status,
          request: {signal},
        })
        const headers = response.headers as Record<string, string | undefined>
        if (headers['x-ratelimit-remaining'] === '0' && headers['x-ratelimit-reset']) {
          const seconds = Number(headers['x-ratelimit-reset']) - Date.now() / 1000
          if (seconds > 0) {
            log.warn('GitHub rate limit exhausted: holding further statuses until it resets', {resetInSeconds: Math.ceil(seconds)})
            cooldown(Math.ceil(seconds) + 1)
          }
        }
        if (response.status < 200 || response.status >= 300) {
          return {kind: 'misdirected', httpStatus: response.status, reason: `GitHub answered ${response.status} (${String(headers.location ?? 'no location')}) instead of 201`}
        }
        return {kind: 'posted', httpStatus: response.status}
      } catch (error) {
        const result = classifyGitHubError(error, {maxRetryDelaySeconds})
        if (result.kind === 'retry' && result.delaySeconds && /rate limit/.test(result.reason)) cooldown(result.delaySeconds)
        return result
      }
    },
  }
}
