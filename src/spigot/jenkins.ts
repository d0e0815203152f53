import type {ZodType} from 'zod'

import type {TargetAnswer} from '../core/delivery.js'
import {describeTransportFailure, errorMessage} from '../core/errors.js'
import {HttpClient, type HttpResponse, TransportError} from '../core/http-client.js'
import type {JenkinsTarget} from './config.js'

/**
 * What happened to one delivery:
 *   accepted      2xx
 *   refused       no connection (refused, reset, unreachable, DNS, TLS): Jenkins is down
 *   timeout       no answer within the timeout
 *   server-error  an answer worth retrying: 5xx, 408 Request Timeout, 429 Too Many Requests
 *   client-error  any other answer (3xx, 4xx): retrying the same bytes will not help
 */
export type DeliveryKind = 'accepted' | 'refused' | 'timeout' | 'server-error' | 'client-error'

export interface Delivery {
  kind: DeliveryKind
  status?: number
  ms: number
  /** What went wrong, in words ("HTTP 503: …", "no answer in time (127.0.0.1:8080)"). */
  error?: string
  /** The same, as the delivery contract's TargetJudge reads it (src/core/delivery.ts). */
  answer: TargetAnswer
  /** The caller's signal cut it short: Jenkins did not answer, nor fail. */
  aborted?: boolean
}

export interface Health {
  state: 'up' | 'quieting-down' | 'down'
  ms: number
  detail?: string
}

export interface DeliverOptions {
  timeoutMs: number
  signal?: AbortSignal
}

export interface HealthOptions {
  /** The health path (default /health/, then /login, then /api/json on older cores). */
  healthPath?: string
  /** Per request (default 5 s). */
  timeoutMs?: number
  signal?: AbortSignal
}

/** The gate key of a Jenkins target (docs/delivery.md: targets are keys). */
export function targetKey(name: string): string {
  return `jenkins:${name}`
}

/** The absolute URL of `path` under the target's base URL (a context path such as /jenkins/ is kept). */
export function jenkinsUrl(target: JenkinsTarget, path: string): URL {
  return new URL(path.replace(/^\/+/, ''), target.url)
}

// Hop-by-hop and length headers are the HTTP client's business, not GitHub's; the target's own credentials replace any Authorization.
const NOT_REPLAYED = new Set(['host', 'content-length', 'connection', 'transfer-encoding', 'authorization'])

/** The part of /api/json the health check reads; zod is imported by the first check that gets there, not with the module. */
let apiJson: Promise<ZodType<{quietingDown?: boolean}>> | undefined
const apiJsonSchema = () => (apiJson ??= import('zod').then(({z}) => z.object({quietingDown: z.boolean().optional()}).loose()))

/**
 * Jenkins as the spigot talks to it: webhook POSTs and health checks over one keep-alive
 * HttpClient (src/core/http-client.ts). One per drain, serve or status run, closed at its end: no
 * connection outlives its owner. Basic auth when a target has a user and an API token (Jenkins
 * needs no crumb then).
 */
export class JenkinsClient {
  private readonly http: HttpClient
  private readonly ownsHttp: boolean
  /** "Basic …" per target, and the URL per target and path: built once, not per delivery. */
  private readonly auth = new Map<JenkinsTarget, string | undefined>()
  private readonly urls = new Map<string, URL>()

  constructor(options: {http?: HttpClient; connections?: number} = {}) {
    this.ownsHttp = options.http === undefined
    this.http = options.http ?? new HttpClient({connections: options.connections ?? 64})
  }

  /**
   * POST the raw bytes with the kept GitHub headers to `path` under the target. Never throws: the
   * outcome is the kind (and the answer for the judge). An abort of `signal` is a `refused` kind
   * whose error is the abort's reason.
   */
  async deliver(target: JenkinsTarget, path: string, body: Buffer, headers: Record<string, string>, options: DeliverOptions): Promise<Delivery> {
    const started = performance.now()
    let url: URL
    try {
      url = this.urlOf(target, path)
    } catch (error) {
      const detail = `bad URL: ${errorMessage(error)}`
      return {kind: 'client-error', ms: 0, error: detail, answer: {status: 400, detail}}
    }
    try {
      const response = await this.http.request({method: 'POST', url, headers: this.deliveryHeaders(target, headers), body, timeoutMs: options.timeoutMs, signal: options.signal})
      return answered(response, roundMs(started))
    } catch (error) {
      const delivery = failed(error, roundMs(started))
      return options.signal?.aborted ? {...delivery, aborted: true} : delivery
    }
  }

  /**
   * Is Jenkins up? GET the health path (default /health/ on current cores, falling back to /login
   * then /api/json on older ones that answer 404), then /api/json?tree=quietingDown to see whether
   * it is quieting down for maintenance. Never throws.
   */
  async health(target: JenkinsTarget, options: HealthOptions = {}): Promise<Health> {
    const timeoutMs = options.timeoutMs ?? 5000
    const started = performance.now()
    const headers: Record<string, string> = {Accept: 'application/json, text/plain, */*', 'User-Agent': 'cistern-spigot'}
    const auth = this.basicAuth(target)
    if (auth) headers.Authorization = auth
    const get = (path: string) => this.http.request({url: jenkinsUrl(target, path), headers, timeoutMs, signal: options.signal})

    let lastDetail = ''
    let healthy = false
    for (const path of options.healthPath ? [options.healthPath] : ['health/', 'login', 'api/json']) {
      let response: HttpResponse
      try {
        response = await get(path)
      } catch (error) {
        const failure = error instanceof TransportError ? error.failure : undefined
        const what = failure?.kind === 'timeout' ? 'timeout' : 'unreachable'
        return {state: 'down', ms: roundMs(started), detail: `${what}: ${failure ? `${describeTransportFailure(failure)} (${failure.code})` : errorMessage(error)}`}
      }
      if (response.status >= 200 && response.status < 300) {
        healthy = true
        break
      }
      lastDetail = `GET ${jenkinsUrl(target, path).pathname} answered ${response.status}`
      // Only a 404 (an older core without /health/) is a reason to try the next path.
      if (response.status !== 404) return {state: 'down', ms: roundMs(started), detail: lastDetail}
    }
    const upMs = roundMs(started)
    if (!healthy) return {state: 'down', ms: upMs, detail: lastDetail}
    try {
      const response = await get('api/json?tree=quietingDown')
      if (response.status >= 200 && response.status < 300) {
        const parsed = (await apiJsonSchema()).safeParse(JSON.parse(response.body.toString('utf8')))
        if (parsed.success && parsed.data.quietingDown === true) return {state: 'quieting-down', ms: upMs, detail: 'Jenkins is quieting down (preparing for shutdown)'}
      }
    } catch {
      // No readable /api/json (no Overall/Read for anonymous, a proxy): the health path said up.
    }
    return {state: 'up', ms: upMs}
  }

  /** Close the keep-alive connections (the end of a run). */
  async close(): Promise<void> {
    if (this.ownsHttp) await this.http.close()
  }

  private urlOf(target: JenkinsTarget, path: string): URL {
    const key = `${target.url}\n${path}`
    let url = this.urls.get(key)
    if (url === undefined) {
      url = jenkinsUrl(target, path)
      this.urls.set(key, url)
    }
    return url
  }

  private basicAuth(target: JenkinsTarget): string | undefined {
    if (this.auth.has(target)) return this.auth.get(target)
    const value = target.user && target.token ? 'Basic ' + Buffer.from(`${target.user}:${target.token}`).toString('base64') : undefined
    this.auth.set(target, value)
    return value
  }

  private deliveryHeaders(target: JenkinsTarget, headers: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {}
    let contentType = false
    let userAgent = false
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase()
      if (NOT_REPLAYED.has(lower)) continue
      if (lower === 'content-type') contentType = true
      else if (lower === 'user-agent') userAgent = true
      out[name] = value
    }
    if (!contentType) out['Content-Type'] = 'application/json'
    if (!userAgent) out['User-Agent'] = 'cistern-spigot'
    const auth = this.basicAuth(target)
    if (auth) out.Authorization = auth
    return out
  }
}

function answered(response: HttpResponse, ms: number): Delivery {
  const {status} = response
  if (status >= 200 && status < 300) return {kind: 'accepted', status, ms, answer: {status}}
  const text = response.body.toString('utf8').trim().slice(0, 200)
  const retryAfterSeconds = retryAfter(response.headers['retry-after'])
  const answer: TargetAnswer = {status, ...(text ? {detail: text} : {}), ...(retryAfterSeconds === undefined ? {} : {retryAfterSeconds})}
  const kind: DeliveryKind = status >= 500 || status === 408 || status === 429 ? 'server-error' : 'client-error'
  return {kind, status, ms, error: `HTTP ${status}${text ? ': ' + text : ''}`, answer}
}

function failed(error: unknown, ms: number): Delivery {
  if (error instanceof TransportError) {
    const {failure} = error
    return {
      kind: failure.kind === 'timeout' ? 'timeout' : 'refused',
      ms,
      error: `${describeTransportFailure(failure)} (${failure.code})`,
      answer: {error: failure.kind, detail: failure.where ? `${failure.where}, ${failure.code}` : failure.code},
    }
  }
  // An abort (the run is stopping) or an answer that could not be read: no answer the judge can use.
  const detail = errorMessage(error)
  return {kind: 'refused', ms, error: detail, answer: {error: 'reset', detail}}
}

/** Retry-After: delta-seconds or an HTTP date. */
function retryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds)
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000))
}

function roundMs(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10
}
