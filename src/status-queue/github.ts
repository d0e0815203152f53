/**
 * GitHub's commit-status endpoint, spoken directly over the core HttpClient: one request
 * (POST /repos/{owner}/{repo}/statuses/{sha}) and one health check (GET /rate_limit). Octokit's
 * request pipeline and its retry and throttling plugins cost most of a status's CPU
 * (BENCHMARKS.md, status-queue); what they did for this one endpoint is here and in the consumer's
 * target gates: rate limits close the `github` gate (verdicts.ts), writes are spaced by the core
 * Limiter.
 */
import {HttpClient, type HttpResponse} from '../core/http-client.js'
import {Limiter} from '../core/limit.js'
import {type GitHubAnswer, readAnswer, unanswered} from './answers.js'
import type {CommitStatus} from './status.js'

export const DEFAULT_GITHUB_API = 'https://api.github.com'

/** Commit-status answers are a few hundred bytes; anything far bigger is not GitHub talking. */
const MAX_RESPONSE_BYTES = 1024 * 1024

export interface StatusTarget {
  owner: string
  repo: string
  sha: string
}

/** What the handler needs from GitHub (tests give their own). */
export interface StatusPoster {
  /** API base URL, for messages. */
  readonly apiUrl: string
  /** POST one status; the answer read (a request that got no answer is `unwell`). */
  post(target: StatusTarget, status: CommitStatus, signal?: AbortSignal): Promise<GitHubAnswer>
}

export interface GitHubOptions {
  /** API base URL (GITHUB_URL): https://api.github.com or https://ghe.example.com/api/v3. */
  apiUrl?: string
  token: string
  /** Keep-alive connections kept to GitHub (match the statuses in flight; default 16). */
  connections?: number
  /** Requests to GitHub at once, when fewer than the statuses in flight (default: no limit of its own). */
  concurrency?: number
  /** Space write starts to at most this many per minute; 0 = no spacing (default 0). */
  writesPerMinute?: number
  /** One request's deadline (default 30 s). */
  requestTimeoutMs?: number
  userAgent?: string
}

export class GitHubStatuses implements StatusPoster {
  readonly apiUrl: string
  private readonly http: HttpClient
  private readonly limiter?: Limiter
  private readonly timeoutMs: number
  private readonly headers: Record<string, string>

  constructor(options: GitHubOptions) {
    this.apiUrl = (options.apiUrl ?? DEFAULT_GITHUB_API).replace(/\/+$/, '')
    this.timeoutMs = options.requestTimeoutMs ?? 30_000
    this.http = new HttpClient({connections: Math.max(1, options.connections ?? 16), timeoutMs: this.timeoutMs, maxResponseBytes: MAX_RESPONSE_BYTES})
    // The consumer bounds the statuses in flight; a limiter only when GitHub should see fewer, or spaced writes.
    const {concurrency, writesPerMinute = 0} = options
    if (writesPerMinute > 0 || concurrency !== undefined) {
      this.limiter = new Limiter({
        ...(concurrency === undefined ? {} : {concurrency: Math.max(1, concurrency)}),
        ...(writesPerMinute > 0 ? {perSecond: writesPerMinute / 60} : {}),
      })
    }
    this.headers = {
      accept: 'application/vnd.github+json',
      authorization: `token ${options.token}`,
      'content-type': 'application/json; charset=utf-8',
      'user-agent': options.userAgent ?? 'cistern-status-queue',
    }
  }

  async post(target: StatusTarget, status: CommitStatus, signal?: AbortSignal): Promise<GitHubAnswer> {
    const url = `${this.apiUrl}/repos/${encodeURIComponent(target.owner)}/${encodeURIComponent(target.repo)}/statuses/${target.sha}`
    const body = JSON.stringify({state: status.state, target_url: status.target_url, description: status.description, context: status.context})
    return this.answer(() => this.http.request({method: 'POST', url, headers: this.headers, body, signal}), signal)
  }

  /**
   * The health check: GET /rate_limit answers whenever GitHub does, does not count against the
   * rate limit, and tells whether it is used up. (GitHub Enterprise without rate limits answers 404
   * JSON: an answer all the same.)
   */
  health(signal?: AbortSignal): Promise<GitHubAnswer> {
    return this.answer(() => this.http.request({method: 'GET', url: `${this.apiUrl}/rate_limit`, headers: this.headers, signal}))
  }

  /** Idle keep-alive connections closed (the end of a run). */
  close(): Promise<void> {
    return this.http.close()
  }

  private async answer(send: () => Promise<HttpResponse>, signal?: AbortSignal): Promise<GitHubAnswer> {
    try {
      const response = this.limiter ? await this.limiter.run(send, {signal}) : await send()
      return readAnswer(response)
    } catch (error) {
      if (signal?.aborted) throw error
      const answer = unanswered(error, {timeoutMs: this.timeoutMs, host: new URL(this.apiUrl).host})
      if (!answer) throw error
      return answer
    }
  }
}
