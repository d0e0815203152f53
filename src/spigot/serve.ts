import type {FastifyReply, FastifyRequest} from 'fastify'

import {errorMessage} from '../core/errors.js'
import {type HttpServer, createHttpServer} from '../core/http.js'
import type {Logger} from '../core/log.js'
import type {Queue} from '../core/queue/types.js'
import type {SpigotConfig} from './config.js'
import {type IntakeResult, type SpigotStateValue, createIntake} from './intake.js'
import type {LargePayloadStore} from './large-payload.js'
import type {SpigotMessage} from '../core/webhook-message.js'

/** GitHub caps webhook payloads at 25 MB. */
export const DEFAULT_BODY_LIMIT = 25 * 1024 * 1024
export const DEFAULT_PORT = 8090

/**
 * Paths that accept webhooks. Routing is by X-GitHub-Event, not by path, so a GitHub hook that
 * pointed at Jenkins' own github-webhook/ or ghprbhook/ only needs its host changed.
 */
export const WEBHOOK_PATHS = ['/', '/webhook', '/webhooks', '/github-webhook', '/ghprbhook']

export interface StateSource {
  readonly backend: 'local' | 'apigw'
  get(): Promise<SpigotStateValue>
}

export interface SpigotServerOptions {
  config: SpigotConfig
  queue: Queue
  state: StateSource
  log: Logger
  largePayloads?: LargePayloadStore
  commenter?: {queued(message: SpigotMessage): Promise<void>}
  bodyLimit?: number
  /**
   * Cache the state this long (ms). The local store is one SQLite read (0: read per request);
   * API Gateway's GetStage is a network call with a rate limit (default 5 s there).
   */
  stateCacheMs?: number
  /** Embedded queue: commit in a writer thread (default true; falls back to this thread when it cannot start). */
  writerThread?: boolean
}

export interface SpigotServer {
  http: HttpServer
  listen(port: number, host?: string): Promise<string>
  /** Stop accepting, let in-flight requests finish, close the server (not the queue). */
  close(): Promise<void>
  /** Requests answered so far, by outcome. */
  readonly counts: Record<IntakeResult['outcome'], number>
}

/**
 * A cached reader: concurrent requests share one read, a failed read is not cached. With ttlMs 0
 * (the local store) every event-loop turn reads afresh: the webhooks whose bodies complete in the
 * same turn (they all arrived before it started, bar a few microseconds) share one SQLite read
 * instead of one each; the next turn reads again, so a toggle is seen by the next webhook.
 */
export function cachedState(source: StateSource, ttlMs: number): () => Promise<SpigotStateValue> {
  if (ttlMs <= 0) {
    let thisTurn: Promise<SpigotStateValue> | undefined
    return () => {
      if (thisTurn) return thisTurn
      const read = source.get()
      thisTurn = read
      setImmediate(() => {
        if (thisTurn === read) thisTurn = undefined
      })
      return read
    }
  }
  let cached: {value: SpigotStateValue; at: number} | undefined
  let pending: Promise<SpigotStateValue> | undefined
  return () => {
    if (cached && performance.now() - cached.at < ttlMs) return Promise.resolve(cached.value)
    pending ??= source
      .get()
      .then((value) => {
        cached = {value, at: performance.now()}
        return value
      })
      .finally(() => {
        pending = undefined
      })
    return pending
  }
}

/** `spigot serve`: the fastify intake in front of the transport-independent intake decision. */
export async function createSpigotServer(options: SpigotServerOptions): Promise<SpigotServer> {
  const log = options.log.child({component: 'spigot-serve'})
  const {queue} = options
  const readState = cachedState(options.state, options.stateCacheMs ?? (options.state.backend === 'apigw' ? 5000 : 0))
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT

  const http = await createHttpServer({
    log,
    bodyLimit,
    // GitHub gives up after 10 s; a client still uploading after 30 s is not GitHub.
    requestTimeoutMs: 30_000,
    async health() {
      const [state, stats] = await Promise.all([readState().catch((error: unknown) => ({error: errorMessage(error)})), queue.stats()])
      const stateOk = typeof state === 'string'
      return {
        ok: stateOk,
        state: stateOk ? state : 'unknown',
        ...(stateOk ? {} : {stateError: (state as {error: string}).error}),
        stateBackend: options.state.backend,
        queue: queue.url,
        backlog: stats.visible + stats.inFlight + stats.delayed,
        inFlight: stats.inFlight,
        dead: stats.dead,
      }
    },
  })

  const prom = await import('prom-client')
  const webhooks = new prom.Counter({
    name: 'cistern_spigot_webhooks_total',
    help: 'Webhooks answered by the spigot intake, by outcome (accepted, forwarded, queued, rejected) and reason',
    labelNames: ['outcome', 'reason'] as const,
    registers: [http.metrics],
  })
  const forwards = new prom.Counter({
    name: 'cistern_spigot_forwards_total',
    help: 'Forward attempts to Jenkins during intake, by target and result kind',
    labelNames: ['target', 'kind'] as const,
    registers: [http.metrics],
  })
  const latency = new prom.Histogram({
    name: 'cistern_spigot_intake_seconds',
    help: 'Time from a complete request body to the answer, by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [http.metrics],
  })
  // Known label values exist from the start, so dashboards and alerts see zeros.
  for (const outcome of ['accepted', 'forwarded', 'queued', 'rejected']) webhooks.inc({outcome, reason: outcome === 'forwarded' ? 'jenkins-accepted' : outcome === 'queued' ? 'spigot-off' : outcome === 'accepted' ? 'ping' : 'signature'}, 0)

  let closing = false
  const counts: SpigotServer['counts'] = {accepted: 0, forwarded: 0, queued: 0, rejected: 0}
  const record = (outcome: IntakeResult['outcome'], reason: string) => {
    counts[outcome]++
    webhooks.inc({outcome, reason})
  }

  const intake = createIntake({
    config: options.config,
    queue,
    state: readState,
    log,
    largePayloads: options.largePayloads,
    commenter: options.commenter,
    writerThread: options.writerThread ?? true,
  })

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const started = performance.now()
    const rawBody = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    const query = request.query as Record<string, string | undefined>
    const fromQueueValue = query?.from_queue
    const result = await intake.handle({
      rawBody,
      headers: request.headers,
      fromQueue: fromQueueValue?.toLowerCase() === 'true',
      ...(fromQueueValue === undefined ? {} : {fromQueueValue}),
    })
    record(result.outcome, result.reason)
    for (const d of result.deliveries ?? []) forwards.inc({target: d.target, kind: d.kind})
    latency.observe({outcome: result.outcome}, (performance.now() - started) / 1000)
    // Shutting down: the client must not keep this connection for another request.
    if (closing) reply.header('connection', 'close')
    return reply.code(result.status).send(result.body)
  }

  for (const path of WEBHOOK_PATHS) {
    http.app.post(path, handler)
    if (path !== '/') http.app.post(path + '/', handler)
  }

  // Body over the limit: fastify answers 413 before the handler; count it and say so loudly.
  http.app.addHook('onError', async (request, _reply, error) => {
    if ((error as {code?: string}).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      record('rejected', 'body-limit')
      log.error('webhook refused: body over the limit', {
        limit: bodyLimit,
        length: request.headers['content-length'],
        event: request.headers['x-github-event'],
        delivery: request.headers['x-github-delivery'],
      })
    }
  })

  return {
    http,
    counts,
    listen: (port, host) => http.listen(port, host),
    async close() {
      closing = true
      await http.close()
      await intake.close()
    },
  }
}
