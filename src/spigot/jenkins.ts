import {Agent as HttpAgent, request as httpRequest, type IncomingMessage} from 'node:http'
import {Agent as HttpsAgent, request as httpsRequest} from 'node:https'
import {urlToHttpOptions} from 'node:url'

import type {JenkinsTarget} from './config.js'

/**
 * What happened to one delivery:
 *   accepted      2xx
 *   refused       no connection (refused, reset, unreachable, DNS): Jenkins is down
 *   timeout       no answer within the timeout
 *   server-error  an answer worth retrying: 5xx, 408 Request Timeout, 429 Too Many Requests
 *   client-error  any other answer (3xx, 4xx): retrying the same bytes will not help
 */
export type DeliveryKind = 'accepted' | 'refused' | 'timeout' | 'server-error' | 'client-error'

export interface Delivery {
  kind: DeliveryKind
  status?: number
  ms: number
  error?: string
}

export interface Health {
  state: 'up' | 'quieting-down' | 'down'
  ms: number
  detail?: string
}

// One keep-alive agent per Jenkins origin: intake and drain post many small requests to the same host.
const agents = new Map<string, HttpAgent>()

function agentFor(url: URL): HttpAgent {
  const key = url.origin
  let agent = agents.get(key)
  if (!agent) {
    const options = {keepAlive: true, keepAliveMsecs: 1000, maxSockets: 64, maxFreeSockets: 16, scheduling: 'lifo' as const}
    agent = url.protocol === 'https:' ? new HttpsAgent(options) : new HttpAgent(options)
    agents.set(key, agent)
  }
  return agent
}

/** Close idle keep-alive sockets (end of a drain, tests). */
export function closeJenkinsAgents(): void {
  for (const agent of agents.values()) agent.destroy()
  agents.clear()
}

// Built once per credentials, not per delivery.
const authHeaders = new Map<string, string>()

function basicAuth(target: JenkinsTarget): string | undefined {
  if (!target.user || !target.token) return undefined
  const key = `${target.user}:${target.token}`
  let value = authHeaders.get(key)
  if (value === undefined) {
    value = 'Basic ' + Buffer.from(key).toString('base64')
    if (authHeaders.size >= 64) authHeaders.clear()
    authHeaders.set(key, value)
  }
  return value
}

/** A URL with what node:http needs to request it, resolved once (a drain posts to the same few URLs). */
interface Endpoint {
  url: URL
  options: ReturnType<typeof urlToHttpOptions> & {agent: HttpAgent}
  https: boolean
}

const endpoints = new Map<string, Endpoint>()

function endpointOf(url: URL): Endpoint {
  return {url, options: {...urlToHttpOptions(url), agent: agentFor(url)}, https: url.protocol === 'https:'}
}

/** The endpoint of `path` under a target, cached by base URL and path. */
function deliveryEndpoint(target: JenkinsTarget, path: string): Endpoint {
  const key = `${target.url}\n${path}`
  let endpoint = endpoints.get(key)
  // The agent may have been closed (closeJenkinsAgents) since: resolve it again then.
  if (endpoint === undefined || agents.get(endpoint.url.origin) !== endpoint.options.agent) {
    endpoint = endpointOf(jenkinsUrl(target, path))
    if (endpoints.size >= 256) endpoints.clear()
    endpoints.set(key, endpoint)
  }
  return endpoint
}

interface RawResponse {
  status: number
  body: string
}

class RequestTimeout extends Error {}

/** One HTTP request with a hard deadline; resolves with the status and up to 64 KiB of the body. */
function send(
  target: URL | Endpoint,
  method: 'GET' | 'POST',
  headers: Record<string, string>,
  body: Buffer | undefined,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<RawResponse> {
  const endpoint = target instanceof URL ? endpointOf(target) : target
  return new Promise<RawResponse>((resolve, reject) => {
    const requestFn = endpoint.https ? httpsRequest : httpRequest
    let settled = false
    const finish = (error: Error | undefined, response?: RawResponse) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      if (error) reject(error)
      else resolve(response!)
    }
    const req = requestFn({...endpoint.options, method, headers}, (res: IncomingMessage) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        if (size < 65_536) chunks.push(chunk)
        size += chunk.length
      })
      res.on('end', () => finish(undefined, {status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8')}))
      res.on('error', (error) => finish(error))
    })
    const timer = setTimeout(() => {
      req.destroy(new RequestTimeout(`no answer within ${timeoutMs} ms`))
    }, timeoutMs)
    const onAbort = () => req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'))
    if (signal?.aborted) onAbort()
    else signal?.addEventListener('abort', onAbort, {once: true})
    req.on('error', (error) => {
      // A keep-alive socket the server closed while idle: the request never reached Jenkins.
      if (!settled && (req as {reusedSocket?: boolean}).reusedSocket && (error as NodeJS.ErrnoException).code === 'ECONNRESET' && !signal?.aborted) {
        settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        send(endpoint, method, headers, body, timeoutMs, signal).then(resolve, reject)
        return
      }
      finish(error)
    })
    req.end(body)
  })
}

const REFUSED_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED'])

function classifyError(error: unknown): {kind: DeliveryKind; error: string} {
  if (error instanceof RequestTimeout) return {kind: 'timeout', error: error.message}
  const code = (error as NodeJS.ErrnoException).code
  const message = (error as Error).message ?? String(error)
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return {kind: 'timeout', error: message}
  if (code && REFUSED_CODES.has(code)) return {kind: 'refused', error: `${code}: ${message}`}
  return {kind: 'refused', error: message}
}

function classifyStatus(status: number): DeliveryKind {
  if (status >= 200 && status < 300) return 'accepted'
  if (status >= 500 || status === 408 || status === 429) return 'server-error'
  return 'client-error'
}

/** The absolute URL of `path` under the target's base URL (a context path such as /jenkins/ is kept). */
export function jenkinsUrl(target: JenkinsTarget, path: string): URL {
  return new URL(path.replace(/^\/+/, ''), target.url)
}

/**
 * POST the raw bytes with the kept GitHub headers to `path` under the target. Basic auth when the
 * target has a user and token (Jenkins needs no crumb then). Never throws: the outcome is the kind.
 */
export async function deliver(
  target: JenkinsTarget,
  path: string,
  body: Buffer,
  headers: Record<string, string>,
  options: {timeoutMs: number; signal?: AbortSignal},
): Promise<Delivery> {
  const started = performance.now()
  const ms = () => Math.round((performance.now() - started) * 10) / 10
  let endpoint: Endpoint
  try {
    endpoint = deliveryEndpoint(target, path)
  } catch (error) {
    return {kind: 'client-error', ms: ms(), error: `bad URL: ${(error as Error).message}`}
  }
  const out: Record<string, string> = {}
  let contentType = false
  let userAgent = false
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue
    const lower = name.toLowerCase()
    // Hop-by-hop and length headers are the client's business, not GitHub's.
    if (lower === 'host' || lower === 'content-length' || lower === 'connection' || lower === 'transfer-encoding' || lower === 'authorization') continue
    if (lower === 'content-type') contentType = true
    else if (lower === 'user-agent') userAgent = true
    out[name] = headers[name]!
  }
  if (!contentType) out['Content-Type'] = 'application/json'
  if (!userAgent) out['User-Agent'] = 'cistern-spigot'
  out['Content-Length'] = String(body.length)
  const auth = basicAuth(target)
  if (auth) out.Authorization = auth
  try {
    const response = await send(endpoint, 'POST', out, body, options.timeoutMs, options.signal)
    const kind = classifyStatus(response.status)
    const delivery: Delivery = {kind, status: response.status, ms: ms()}
    if (kind !== 'accepted') delivery.error = `HTTP ${response.status}${response.body ? ': ' + response.body.trim().slice(0, 200) : ''}`
    return delivery
  } catch (error) {
    return {...classifyError(error), ms: ms()}
  }
}

/**
 * Is Jenkins up? GET the health path (default /health/ on current cores, falling back to /login
 * then /api/json on older ones that answer 404), then /api/json?tree=quietingDown to see whether
 * it is quieting down for maintenance. Never throws.
 */
export async function checkHealth(target: JenkinsTarget, options: {healthPath?: string; timeoutMs?: number; signal?: AbortSignal} = {}): Promise<Health> {
  const timeoutMs = options.timeoutMs ?? 5000
  const started = performance.now()
  const ms = () => Math.round((performance.now() - started) * 10) / 10
  const headers: Record<string, string> = {Accept: 'application/json, text/plain, */*', 'User-Agent': 'cistern-spigot'}
  const auth = basicAuth(target)
  if (auth) headers.Authorization = auth
  const paths = options.healthPath ? [options.healthPath] : ['health/', 'login', 'api/json']

  let healthy: {path: string; status: number} | undefined
  let lastDetail = ''
  for (const path of paths) {
    let response: RawResponse
    try {
      response = await send(jenkinsUrl(target, path), 'GET', headers, undefined, timeoutMs, options.signal)
    } catch (error) {
      const {kind, error: message} = classifyError(error)
      return {state: 'down', ms: ms(), detail: `${kind === 'timeout' ? 'timeout' : 'unreachable'}: ${message}`}
    }
    if (response.status >= 200 && response.status < 300) {
      healthy = {path, status: response.status}
      break
    }
    lastDetail = `GET ${jenkinsUrl(target, path).pathname} answered ${response.status}`
    // Only a 404 (an older core without /health/) is a reason to try the next path.
    if (response.status !== 404) return {state: 'down', ms: ms(), detail: lastDetail}
  }
  if (!healthy) return {state: 'down', ms: ms(), detail: lastDetail}
  const upMs = ms()

  try {
    const response = await send(jenkinsUrl(target, 'api/json?tree=quietingDown'), 'GET', headers, undefined, timeoutMs, options.signal)
    if (response.status >= 200 && response.status < 300) {
      const parsed = JSON.parse(response.body) as {quietingDown?: boolean}
      if (parsed.quietingDown === true) return {state: 'quieting-down', ms: upMs, detail: 'Jenkins is quieting down (preparing for shutdown)'}
    }
  } catch {
    // No readable /api/json (no Overall/Read for anonymous, a proxy): the health path said up.
  }
  return {state: 'up', ms: upMs}
}
