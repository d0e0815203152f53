import {createHmac, randomUUID} from 'node:crypto'
import {type IncomingMessage, type ServerResponse, createServer as createHttpServer} from 'node:http'
import {createRequire} from 'node:module'
import {type AddressInfo, createServer} from 'node:net'

import type {RecordedRequest, StandIn} from './http.js'

/**
 * How the stand-in Jenkins behaves for webhook POSTs (any path other than the health endpoints):
 *   accept       200 (Jenkins' github-webhook/ and ghprbhook/ answer 200)
 *   refuse       the port is closed: connections are refused (nothing recorded)
 *   hang         the request is read and recorded but never answered (until close or setMode)
 *   flap         every `every`-th webhook POST answers `status` (default 503), the others 200
 *   server-error every webhook POST answers `status` (default 503)
 *   status       every webhook POST answers `status` (e.g. 400, 404, 408, 429)
 */
export type JenkinsMode =
  | {kind: 'accept'}
  | {kind: 'refuse'}
  | {kind: 'hang'}
  | {kind: 'flap'; every: number; status?: number}
  | {kind: 'server-error'; status?: number}
  | {kind: 'status'; status: number}

export interface JenkinsHealthOptions {
  /** GET /health/ answers this (default 200; 404 = an old core without /health/). */
  health?: number
  /** GET /login answers this (default 200). */
  login?: number
  /** GET /api/json answers this status (default 200). */
  api?: number
  /** quietingDown in GET /api/json (default false). */
  quietingDown?: boolean
  /** Health endpoints never answer (a Jenkins stuck starting up). */
  hang?: boolean
}

export interface JenkinsStandIn {
  /** Base URL with a trailing slash, as a JenkinsTarget url. */
  url: string
  port: number
  /** Every request received (health checks included), raw body bytes and headers. */
  requests: RecordedRequest[]
  /** Webhook POSTs only (GETs are health checks or 404s). */
  readonly webhooks: RecordedRequest[]
  /** Health-check GETs only. */
  readonly healthChecks: RecordedRequest[]
  /** Change the webhook behaviour; from/to `refuse` closes/reopens the port (same port number). */
  setMode(mode: JenkinsMode['kind'] | JenkinsMode): Promise<void>
  /** Change what the health endpoints say. */
  setHealth(health: JenkinsHealthOptions): void
  /** Number of webhook POSTs answered (any status) and the number answered 2xx. */
  readonly answered: number
  readonly accepted: number
  /** Release hanging requests (answer them 200) — e.g. before close in a test. */
  releaseHanging(status?: number): void
  close(): Promise<void>
}

const HEALTH_PATHS = new Set(['/health/', '/health', '/login', '/api/json'])

function isHealthCheck(req: RecordedRequest): boolean {
  return req.method === 'GET' && HEALTH_PATHS.has(req.url.split('?')[0]!)
}

/**
 * A loopback Jenkins stand-in built on test/helpers/http.ts. It records raw bodies and headers of
 * every request; webhook POSTs are answered according to the mode; GET /health/, /login and
 * /api/json?tree=quietingDown answer according to the health options.
 */
export async function jenkinsStandIn(
  mode: JenkinsMode['kind'] | JenkinsMode = 'accept',
  health: JenkinsHealthOptions = {},
): Promise<JenkinsStandIn> {
  let current: JenkinsMode = typeof mode === 'string' ? defaultMode(mode) : mode
  let healthOptions: JenkinsHealthOptions = {...health}
  let webhookCount = 0
  let answered = 0
  let accepted = 0
  const hanging = new Set<ServerResponse>()

  // Same recording as test/helpers/http.ts standIn(), plus closing and reopening the same port
  // (the `refuse` mode), which standIn() does not offer.
  const requests: RecordedRequest[] = []
  const http = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const recorded = {method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks)}
      requests.push(recorded)
      try {
        respond(recorded, res)
      } catch (error) {
        res.statusCode = 500
        res.end(String(error))
      }
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const port = (http.address() as AddressInfo).port
  let listening = true

  function respond(req: RecordedRequest, res: ServerResponse): void {
    if (isHealthCheck(req)) {
      if (healthOptions.hang) {
        hanging.add(res)
        res.on('close', () => hanging.delete(res))
        return
      }
      const path = req.url.split('?')[0]!
      let status = 200
      if (path.startsWith('/health')) status = healthOptions.health ?? 200
      else if (path === '/login') status = healthOptions.login ?? 200
      else status = healthOptions.api ?? 200
      if (path === '/api/json') {
        res.writeHead(status, {'content-type': 'application/json;charset=utf-8', 'x-jenkins': '2.462.3'})
        res.end(JSON.stringify({_class: 'hudson.model.Hudson', quietingDown: healthOptions.quietingDown ?? false}))
        return
      }
      res.writeHead(status, {'content-type': 'text/plain', 'x-jenkins': '2.462.3'})
      res.end(status === 200 ? 'OK' : `status ${status}`)
      return
    }
    if (req.method !== 'POST') {
      // Like Jenkins: an unknown page is a 404, and it is not a webhook.
      res.writeHead(404, {'content-type': 'text/plain'})
      res.end('Not Found')
      return
    }
    webhookCount++
    const finish = (status: number) => {
      answered++
      if (status >= 200 && status < 300) accepted++
      res.writeHead(status, {'content-type': 'text/plain'})
      res.end(status < 300 ? '' : `jenkins says ${status}`)
    }
    switch (current.kind) {
      case 'accept':
        finish(200)
        return
      case 'hang':
        hanging.add(res)
        res.on('close', () => hanging.delete(res))
        return
      case 'flap':
        finish(webhookCount % current.every === 0 ? (current.status ?? 503) : 200)
        return
      case 'server-error':
        finish(current.status ?? 503)
        return
      case 'status':
        finish(current.status)
        return
      case 'refuse':
        // Only reachable for a request that raced the close: drop the connection.
        res.destroy()
        return
    }
  }

  async function closePort(): Promise<void> {
    if (!listening) return
    listening = false
    for (const res of hanging) res.destroy()
    hanging.clear()
    const closed = new Promise<void>((resolve) => http.close(() => resolve()))
    // Keep-alive sockets would otherwise still reach the "down" Jenkins.
    http.closeAllConnections()
    await closed
  }

  async function reopen(): Promise<void> {
    if (listening) return
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen(port, '127.0.0.1', () => {
        http.off('error', reject)
        resolve()
      })
    })
    listening = true
  }

  const api: JenkinsStandIn = {
    url: `http://127.0.0.1:${port}/`,
    port,
    requests,
    get webhooks() {
      return requests.filter((req) => req.method === 'POST')
    },
    get healthChecks() {
      return requests.filter(isHealthCheck)
    },
    get answered() {
      return answered
    },
    get accepted() {
      return accepted
    },
    async setMode(next) {
      const wanted = typeof next === 'string' ? defaultMode(next) : next
      const wasRefusing = current.kind === 'refuse'
      current = wanted
      if (wanted.kind === 'refuse' && !wasRefusing) await closePort()
      if (wanted.kind !== 'refuse' && wasRefusing) await reopen()
      if (wanted.kind !== 'hang') api.releaseHanging()
    },
    setHealth(next) {
      healthOptions = {...healthOptions, ...next}
    },
    releaseHanging(status = 200) {
      for (const res of hanging) {
        if (!res.headersSent) {
          answered++
          if (status < 300) accepted++
          res.writeHead(status).end()
        }
      }
      hanging.clear()
    },
    async close() {
      for (const res of hanging) res.destroy()
      hanging.clear()
      if (listening) {
        listening = false
        const closed = new Promise<void>((resolve) => http.close(() => resolve()))
        http.closeAllConnections()
        await closed
      }
    },
  }
  if (current.kind === 'refuse') await closePort()
  return api

  function defaultMode(kind: JenkinsMode['kind']): JenkinsMode {
    switch (kind) {
      case 'flap':
        return {kind: 'flap', every: 2}
      case 'server-error':
        return {kind: 'server-error', status: 503}
      case 'status':
        return {kind: 'status', status: 400}
      default:
        return {kind}
    }
  }
}

/** A port with nothing listening (bound then released): connections to it are refused. */
export async function closedPort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return port
}

export type {RecordedRequest, StandIn}

// ---------------------------------------------------------------------------------------------
// The GitHub side: real payloads from @octokit/webhooks-examples, delivered as GitHub does.

interface ExampleGroup {
  name: string
  examples: unknown[]
}

let examples: ExampleGroup[] | undefined

/** A real GitHub payload for `event` (`index`-th example, optionally only those with `action`). */
export function githubExample(event: string, options: {index?: number; action?: string} = {}): Record<string, unknown> {
  examples ??= createRequire(import.meta.url)('@octokit/webhooks-examples') as ExampleGroup[]
  const group = examples.find((g) => g.name === event)
  if (!group) throw new Error(`no @octokit/webhooks-examples payload for "${event}"`)
  const list = options.action ? group.examples.filter((e) => (e as {action?: string}).action === options.action) : group.examples
  const example = list[options.index ?? 0]
  if (!example) throw new Error(`no example ${options.index ?? 0} for ${event}${options.action ? ` action ${options.action}` : ''}`)
  return structuredClone(example) as Record<string, unknown>
}

export interface GitHubDelivery {
  body: Buffer
  headers: Record<string, string>
  delivery: string
  event: string
}

/**
 * A delivery as GitHub makes it: the payload bytes (pretty-printed with `pretty`, to prove that
 * nothing re-serialises them), X-GitHub-* headers, and the HMAC signatures when a secret is given.
 */
export function githubDelivery(
  event: string,
  payload: unknown,
  options: {secret?: string; delivery?: string; form?: boolean; pretty?: boolean} = {},
): GitHubDelivery {
  const json = options.pretty ? JSON.stringify(payload, null, 2) + '\n' : JSON.stringify(payload)
  const body = Buffer.from(options.form ? 'payload=' + encodeURIComponent(json) : json, 'utf8')
  const delivery = options.delivery ?? randomUUID()
  const headers: Record<string, string> = {
    'Content-Type': options.form ? 'application/x-www-form-urlencoded' : 'application/json',
    'User-Agent': 'GitHub-Hookshot/5a7f3a1',
    'X-GitHub-Event': event,
    'X-GitHub-Delivery': delivery,
    'X-GitHub-Hook-ID': '412345678',
    'X-GitHub-Hook-Installation-Target-ID': '79929171',
    'X-GitHub-Hook-Installation-Target-Type': 'repository',
  }
  if (options.secret !== undefined) {
    headers['X-Hub-Signature'] = 'sha1=' + createHmac('sha1', options.secret).update(body).digest('hex')
    headers['X-Hub-Signature-256'] = 'sha256=' + createHmac('sha256', options.secret).update(body).digest('hex')
  }
  return {body, headers, delivery, event}
}

/** Does a recorded request carry a valid X-Hub-Signature-256 for its exact bytes? */
export function signatureVerifies(secret: string, request: RecordedRequest): boolean {
  const given = request.headers['x-hub-signature-256']
  return given === 'sha256=' + createHmac('sha256', secret).update(request.body).digest('hex')
}

// ---------------------------------------------------------------------------------------------
// A scripted Jenkins for fault tests: each webhook POST is answered as `answer` says, and what it
// accepted is kept in order, so a test can count losses, duplicates and per-repository order.

export interface Accepted {
  delivery: string
  repository: string
  at: number
}

export interface ScriptedJenkins {
  /** Base URL with a trailing slash. */
  url: string
  /** Webhook POSTs answered 2xx, in the order they were answered. */
  accepted: Accepted[]
  /** Every webhook POST (any answer), by X-GitHub-Delivery. */
  posts: Map<string, number>
  /** Health checks answer this (default 200). */
  health: number
  /** Replace how webhook POSTs are answered. */
  answer(next: (request: RecordedRequest, n: number) => number | 'hang' | Promise<number | 'hang'>): void
  close(): Promise<void>
}

/** `answer` returns a status, or 'hang' never to answer (until close). Health checks answer `health`. */
export async function scriptedJenkins(answer: (request: RecordedRequest, n: number) => number | 'hang' | Promise<number | 'hang'>): Promise<ScriptedJenkins> {
  const {standIn} = await import('./http.js')
  let current = answer
  let n = 0
  const hanging = new Set<ServerResponse>()
  const api: ScriptedJenkins = {
    url: '',
    accepted: [],
    posts: new Map(),
    health: 200,
    answer(next) {
      current = next
    },
    async close() {
      for (const res of hanging) res.destroy()
      await stand.close()
    },
  }
  const stand = await standIn(async (req, res) => {
    if (req.method === 'GET') return void res.writeHead(api.health, {'content-type': 'application/json'}).end('{"quietingDown":false}')
    const delivery = String(req.headers['x-github-delivery'])
    api.posts.set(delivery, (api.posts.get(delivery) ?? 0) + 1)
    const status = await current(req, ++n)
    if (status === 'hang') {
      hanging.add(res)
      res.on('close', () => hanging.delete(res))
      return
    }
    if (status >= 200 && status < 300) api.accepted.push({delivery, repository: repositoryOf(req.body), at: Date.now()})
    res.writeHead(status, {'content-type': 'text/plain'}).end(status < 300 ? '' : `jenkins says ${status}`)
  })
  api.url = `${stand.url}/`
  return api
}

function repositoryOf(body: Buffer): string {
  try {
    return (JSON.parse(body.toString()) as {repository?: {full_name?: string}}).repository?.full_name ?? ''
  } catch {
    return ''
  }
}
