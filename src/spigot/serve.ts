import type {FastifyReply, FastifyRequest} from 'fastify'

import {errorMessage} from '../core/errors.js'
import {type HttpServer, createHttpServer} from '../core/http.js'
import type {Logger} from '../core/log.js'
import {registerQueueMetrics, registerTargetMetric} from '../core/queue-metrics.js'
import type {Queue} from '../core/queue/types.js'
import type {SpigotMessage} from '../core/webhook-message.js'
import {commenterFrom, openSpigotQueue, openStateFrom, type StateFlagValues} from './command-options.js'
import {type SpigotConfig, type SpigotFlags, resolveSpigotConfig} from './config.js'
import {type Intake, type IntakeResult, type SpigotStateValue, createIntake} from './intake.js'
import {targetKey} from './jenkins.js'
import type {LargePayloadStore} from './large-payload.js'

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
  /** Embedded queue: commit in the queue layer's writer thread (default off: see BENCHMARKS.md, spigot intake). */
  writerThread?: boolean
}

export interface SpigotServer {
  http: HttpServer
  listen(port: number, host?: string): Promise<string>
  /** Stop accepting, answer and finish what is in flight, close the connections and the server (not the queue). */
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

/** The counters and histogram of the intake on /metrics (docs/spigot.md, "Health and metrics"). */
class IntakeMetrics {
  readonly counts: SpigotServer['counts'] = {accepted: 0, forwarded: 0, queued: 0, rejected: 0}

  private constructor(
    private readonly webhooks: import('prom-client').Counter<'outcome' | 'reason'>,
    private readonly forwards: import('prom-client').Counter<'target' | 'kind'>,
    private readonly latency: import('prom-client').Histogram<'outcome'>,
  ) {}

  static async register(http: HttpServer): Promise<IntakeMetrics> {
    const prom = await import('prom-client')
    const registers = [http.metrics]
    const metrics = new IntakeMetrics(
      new prom.Counter({
        name: 'cistern_spigot_webhooks_total',
        help: 'Webhooks answered by the spigot intake, by outcome (accepted, forwarded, queued, rejected) and reason',
        labelNames: ['outcome', 'reason'] as const,
        registers,
      }),
      new prom.Counter({name: 'cistern_spigot_forwards_total', help: 'Forward attempts to Jenkins during intake, by target and result kind', labelNames: ['target', 'kind'] as const, registers}),
      new prom.Histogram({
        name: 'cistern_spigot_intake_seconds',
        help: 'Time from a complete request body to the answer, by outcome',
        labelNames: ['outcome'] as const,
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers,
      }),
    )
    // Known label values exist from the start, so dashboards and alerts see zeros.
    for (const [outcome, reason] of [['accepted', 'ping'], ['forwarded', 'jenkins-accepted'], ['queued', 'spigot-off'], ['rejected', 'signature']] as const) metrics.webhooks.inc({outcome, reason}, 0)
    return metrics
  }

  answered(result: Pick<IntakeResult, 'outcome' | 'reason' | 'deliveries'>, seconds: number): void {
    this.counts[result.outcome]++
    this.webhooks.inc({outcome: result.outcome, reason: result.reason})
    for (const d of result.deliveries ?? []) this.forwards.inc({target: d.target, kind: d.kind})
    this.latency.observe({outcome: result.outcome}, seconds)
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
      const [state, stats] = await Promise.all([readState().then((value) => ({value}), (error: unknown) => ({error: errorMessage(error)})), queue.stats()])
      return {
        ok: 'value' in state,
        state: 'value' in state ? state.value : 'unknown',
        ...('error' in state ? {stateError: state.error} : {}),
        stateBackend: options.state.backend,
        queue: queue.url,
        backlog: stats.visible + stats.inFlight + stats.delayed,
        inFlight: stats.inFlight,
        dead: stats.dead,
      }
    },
  })

  const intake = createIntake({
    config: options.config,
    queue,
    state: readState,
    log,
    largePayloads: options.largePayloads,
    commenter: options.commenter,
    writerThread: options.writerThread ?? false,
  })
  const metrics = await IntakeMetrics.register(http)
  await registerQueueMetrics(http.metrics, [queue], {log})
  await registerTargetMetric(http.metrics, () => targetsUp(intake, options.config))

  const handler = async (request: FastifyRequest<{Querystring: {from_queue?: string}}>, reply: FastifyReply) => {
    const started = performance.now()
    const fromQueueValue = request.query.from_queue
    const result = await intake.handle({
      rawBody: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
      headers: request.headers,
      fromQueue: fromQueueValue?.toLowerCase() === 'true',
      ...(fromQueueValue === undefined ? {} : {fromQueueValue}),
    })
    metrics.answered(result, (performance.now() - started) / 1000)
    return reply.code(result.status).send(result.body)
  }
  for (const path of WEBHOOK_PATHS) {
    http.app.post(path, handler)
    if (path !== '/') http.app.post(path + '/', handler)
  }

  // Body over the limit: fastify answers 413 before the handler; count it and say so loudly.
  http.app.addHook('onError', async (request, _reply, error) => {
    if ((error as {code?: string}).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      metrics.answered({outcome: 'rejected', reason: 'body-limit'}, 0)
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
    counts: metrics.counts,
    listen: (port, host) => http.listen(port, host),
    async close() {
      // A forward in flight waits up to its timeout; then its webhook is still queued and answered.
      await http.close({deadlineMs: options.config.forwardTimeoutMs + 10_000})
      await intake.close()
    },
  }
}

/** Each Jenkins target's health for `cistern_target_up`. */
async function targetsUp(intake: Intake, config: Pick<SpigotConfig, 'targets'>): Promise<Array<{target: string; up: boolean}>> {
  return Promise.all(config.targets.map(async (target) => ({target: targetKey(target.name), up: await intake.forwarder.isUp(target)})))
}

export interface ServeFlags extends SpigotFlags, StateFlagValues {
  port: number
  host: string
  comment?: boolean
  'github-url'?: string
}

export interface ServeSummary {
  url: string
  queue: string
  stateBackend: 'local' | 'apigw'
  answered: SpigotServer['counts']
}

/**
 * `cistern spigot serve`: resolve the settings, open the state and the queue, serve until `signal`
 * aborts (SIGTERM/SIGINT), then stop gracefully and say what was answered.
 */
export async function serveSpigot(flags: ServeFlags, run: {log: Logger; signal: AbortSignal; announce(line: string): void}): Promise<ServeSummary> {
  const {log, signal} = run
  const config = await resolveSpigotConfig(flags)
  const commenter = await commenterFrom(flags, log)
  const state = await openStateFrom(flags, log)
  try {
    const queue = await openSpigotQueue(config, {region: flags.region, profile: flags.profile, log})
    try {
      const largePayloads = config.largePayloadBucket
        ? (await import('./large-payload.js')).s3LargePayloadStore({bucket: config.largePayloadBucket, region: flags.region, profile: flags.profile})
        : undefined
      const server = await createSpigotServer({config, queue, state, log, commenter, largePayloads})
      try {
        const url = await server.listen(flags.port, flags.host)
        if (!config.webhookSecret) log.warn('no webhook secret: anyone who can reach this port can queue webhooks (set GITHUB_WEBHOOK_SECRET)')
        log.info('spigot intake listening', {url, queue: queue.url, state: state.backend, jenkins: config.targets.map((t) => t.url), forwardTimeoutMs: config.forwardTimeoutMs})
        run.announce(`spigot intake listening on ${url} → ${config.targets.map((t) => t.url).join(', ')} (queue ${queue.url})`)
        await aborted(signal)
        return {url, queue: queue.url, stateBackend: state.backend, answered: server.counts}
      } finally {
        await server.close()
        log.info('spigot intake stopped', {...server.counts})
      }
    } finally {
      await queue.close()
    }
  } finally {
    await state.close()
  }
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => resolve(), {once: true})
  })
}
