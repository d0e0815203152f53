import {consume} from '../core/consume.js'
import {type Outcome, dead, delivered, retry, stop} from '../core/delivery.js'
import {TargetUnhealthyError, UsageError, errorMessage} from '../core/errors.js'
import {type Logger, silentLogger} from '../core/log.js'
import type {Queue, QueueMessage} from '../core/queue/types.js'
import type {PrCommenter} from './comments.js'
import {pullRequestOf} from './comments.js'
import {type JenkinsTarget, type SpigotConfig, targetNamed} from './config.js'
import {type Delivery, deliver, jenkinsUrl} from './jenkins.js'
import {type SpigotMessage, decodeMessage, header, keptHeaders, replayBytes} from '../core/webhook-message.js'
import {routeFor} from './routes.js'
import type {SpigotState, StateStore} from './state.js'
import {type TargetHealth, describeHealth, isUp, targetHealth, targetsHealth} from './status.js'

/**
 * `spigot drain`: replay what the spigot queued, once Jenkins is healthy. One pass empties the
 * queue (cron, systemd timer, `maintenance`); `watch` keeps going. A message is deleted only after
 * every Jenkins it is routed to answered 2xx, so a killed drain replays it again (at least once).
 */
export interface DrainOptions {
  queue: Queue
  config: SpigotConfig
  /** Needed for autoOff, onlyWhenOn and watch (a watching drain pauses while the spigot is OFF). */
  state?: StateStore
  /** Jenkins unhealthy (at the start or mid-run): set the spigot OFF, as the original drain Lambda did. */
  autoOff?: boolean
  /** Keep draining in the foreground until `signal` aborts. */
  watch?: boolean
  /** One pass only when the spigot is ON (a cron drain during maintenance does nothing). */
  onlyWhenOn?: boolean
  /** Deliveries in flight at once (default 4). */
  concurrency?: number
  /** Deliveries per second (token bucket, burst = concurrency); 0/undefined = unlimited. */
  rate?: number
  /** List what would be sent; receive, deliver and delete nothing. */
  dryRun?: boolean
  /** How many messages a dry run lists at most (default 1000). */
  dryRunLimit?: number
  /** Per delivery (default 30 s: the drain is not held to GitHub's 10 s). */
  deliveryTimeoutMs?: number
  /** Per health check (default 5 s). */
  healthTimeoutMs?: number
  /** Seconds a received message stays hidden (the consumer's heartbeat extends it). */
  visibilityTimeout?: number
  /** Seconds before a retried message comes back (default: the consumer's backoff by receive count). */
  retryDelaySeconds?: number
  /** "Jenkins is back, testing resumes" on replayed pull_request webhooks. */
  commenter?: PrCommenter
  /** How a large_payload pointer is read (default: S3 GetObject). */
  fetchLargePayload?: (pointer: NonNullable<SpigotMessage['large_payload']>) => Promise<Buffer>
  region?: string
  profile?: string
  signal?: AbortSignal
  log?: Logger
  onProgress?: (progress: DrainProgress) => void
}

export interface DrainProgress {
  delivered: number
  retried: number
  dead: number
  inFlight: number
}

export interface DryRunEntry {
  id: string
  event?: string
  delivery?: string
  repository?: string
  /** Absolute Jenkins URLs it would be POSTed to (empty: no route, it would be dead-lettered). */
  urls: string[]
  bytes: number
  /** raw: cistern's byte-identical copy; reserialised: queued by the original Lambda; s3: large payload. */
  source: 'raw' | 'reserialised' | 's3' | 'undecodable'
  receiveCount: number
}

export interface DrainSummary {
  queue: string
  /** Messages every target accepted (deleted from the queue). */
  delivered: number
  /** Messages left for a later attempt (refused, timeout, 5xx, 408/429). */
  retried: number
  /** Messages given up on (4xx, undecodable, no route) with the reason logged. */
  dead: number
  /** Waiting in the queue after the pass: visible + in flight + delayed (-1 if unknown). */
  remaining: number
  stoppedBy: 'empty' | 'signal' | 'unhealthy' | 'off' | 'dry-run'
  /** The target that made the drain stop, when stoppedBy is unhealthy. */
  unhealthy?: TargetHealth
  /** What --auto-off did. */
  autoOff?: {before: SpigotState; after: SpigotState}
  health: TargetHealth[]
  /** --dry-run: what would be sent. */
  wouldSend?: DryRunEntry[]
  elapsedMs: number
}

const RETRY_STATUSES = new Set([408, 429])

export async function drain(options: DrainOptions): Promise<DrainSummary> {
  const started = performance.now()
  const log = (options.log ?? silentLogger).child({component: 'drain'})
  const {queue, config} = options
  const summary: DrainSummary = {queue: queue.url, delivered: 0, retried: 0, dead: 0, remaining: -1, stoppedBy: 'empty', health: [], elapsedMs: 0}
  const finish = async (): Promise<DrainSummary> => {
    summary.remaining = await remainingIn(queue)
    summary.elapsedMs = Math.round(performance.now() - started)
    return summary
  }

  if ((options.autoOff || options.onlyWhenOn) && !options.state) throw new Error('drain: autoOff and onlyWhenOn need a state store')
  if (options.onlyWhenOn && !options.dryRun && (await options.state!.get()) === 'OFF') {
    log.info('the spigot is OFF: nothing replayed (turn it ON with `cistern spigot toggle --state ON`)')
    summary.stoppedBy = 'off'
    return finish()
  }

  // Health first: an unhealthy Jenkins means not one message is touched.
  summary.health = await targetsHealth(config, {timeoutMs: options.healthTimeoutMs, signal: options.signal})
  const down = summary.health.find((health) => !isUp(health))

  if (options.dryRun) {
    summary.stoppedBy = 'dry-run'
    summary.wouldSend = await dryRun(queue, config, options.dryRunLimit ?? 1000)
    if (down) log.warn(`Jenkins is not healthy: ${describeHealth(down)} (a real drain would stop with exit 3)`)
    return finish()
  }
  if (down) {
    log.warn(`Jenkins is not healthy, nothing replayed: ${describeHealth(down)}`, {target: down.name})
    await stopUnhealthy(down)
    return finish()
  }

  const bucket = options.rate && options.rate > 0 ? new TokenBucket(options.rate, Math.max(1, options.concurrency ?? 4)) : undefined
  const recheck = healthRechecker(config, options.healthTimeoutMs)
  // Targets that already took a message routed to several: a retry does not send it to them again.
  const acceptedBy = new Map<string, Set<string>>()
  const comments: Promise<void>[] = []
  let inFlight = 0
  const progress = () => options.onProgress?.({delivered: summary.delivered, retried: summary.retried, dead: summary.dead, inFlight})
  const retryOutcome = (reason: string): Outcome => retry(reason, options.retryDelaySeconds)
  // "name URL" per target and path, built once (new URL() per message is not free).
  const described = new Map<JenkinsTarget, Map<string, string>>()
  const describeTarget = (target: JenkinsTarget, path: string): string => {
    let byPath = described.get(target)
    if (!byPath) described.set(target, (byPath = new Map()))
    let where = byPath.get(path)
    if (where === undefined) byPath.set(path, (where = `${target.name} ${jenkinsUrl(target, path).toString()}`))
    return where
  }

  async function replay(received: QueueMessage, signal: AbortSignal): Promise<Outcome> {
    let message: SpigotMessage
    try {
      message = decodeMessage(received.body)
    } catch (error) {
      return dead(`undecodable message: ${errorMessage(error)}`)
    }
    const event = header(message.headers, 'X-GitHub-Event')
    const fields = {id: received.id, event, delivery: header(message.headers, 'X-GitHub-Delivery'), receiveCount: received.receiveCount}
    const targets = routesOf(message, config)
    if (typeof targets === 'string') return dead(targets)

    let body: Buffer
    try {
      body = message.large_payload ? await readLargePayload(message.large_payload, options) : replayBytes(message)
    } catch (error) {
      return retryOutcome(`cannot read the large payload s3://${message.large_payload?.bucket}/${message.large_payload?.key}: ${errorMessage(error)}`)
    }
    const headers = keptHeaders(message.headers)

    const already = acceptedBy.get(received.id) ?? new Set<string>()
    for (const {target, path} of targets) {
      if (already.has(target.name)) continue
      await bucket?.take(signal)
      if (signal.aborted) return retryOutcome('drain stopping')
      const delivery = await deliver(target, path, body, headers, {timeoutMs: options.deliveryTimeoutMs ?? 30_000, signal})
      const where = describeTarget(target, path)
      if (delivery.kind === 'accepted') {
        already.add(target.name)
        log.debug(`replayed to ${where} (${delivery.status}, ${delivery.ms} ms)`, fields)
        continue
      }
      if (already.size > 0) acceptedBy.set(received.id, already)
      return failed(delivery, target, where, fields, signal)
    }
    acceptedBy.delete(received.id)
    log.info(`replayed ${event ?? 'webhook'} ${fields.delivery ?? received.id} to ${targets.map((t) => t.target.name).join(', ')}`, fields)
    if (options.commenter && pullRequestOf(message)) comments.push(options.commenter.replayed(message).catch(() => {}))
    return delivered()
  }

  async function failed(delivery: Delivery, target: JenkinsTarget, where: string, fields: Record<string, unknown>, signal: AbortSignal): Promise<Outcome> {
    const reason = `${where}: ${delivery.kind}${delivery.error ? ` (${delivery.error})` : ''}`
    if (delivery.kind === 'client-error') return dead(`Jenkins refused the webhook: ${reason}`)
    if (delivery.status !== undefined && RETRY_STATUSES.has(delivery.status)) return retryOutcome(reason)
    if (signal.aborted) return retryOutcome(`drain stopping: ${reason}`)
    // Refused, timeout, 5xx: is it this webhook or is Jenkins going down?
    const health = await recheck(target)
    if (!isUp(health)) {
      log.warn(`Jenkins became unhealthy during the drain: ${describeHealth(health)}`, {...fields, target: target.name})
      return stop(unhealthyError(health))
    }
    log.warn(`will retry: ${reason}`, fields)
    return retryOutcome(reason)
  }

  async function stopUnhealthy(health: TargetHealth): Promise<void> {
    summary.stoppedBy = 'unhealthy'
    summary.unhealthy = health
    if (options.autoOff) {
      summary.autoOff = await options.state!.set('OFF')
      log.warn(`auto-off: spigot ${summary.autoOff.before} → ${summary.autoOff.after}; webhooks are queued until it is turned ON`)
    }
  }

  // A watching drain pauses while the spigot is OFF, as the original drain rule was disabled then.
  let stateCache: {at: number; value: SpigotState} | undefined
  const paused =
    options.watch && options.state
      ? async () => {
          if (!stateCache || performance.now() - stateCache.at > 2000) stateCache = {at: performance.now(), value: await options.state!.get()}
          return stateCache.value === 'OFF'
        }
      : undefined

  const handler = async (message: QueueMessage, context: {signal: AbortSignal}): Promise<Outcome> => {
    inFlight++
    progress()
    try {
      const outcome = await replay(message, context.signal)
      if (outcome.kind === 'delivered') summary.delivered++
      else if (outcome.kind === 'retry') summary.retried++
      else if (outcome.kind === 'dead') {
        summary.dead++
        log.error(`dead-lettered ${message.id}: ${outcome.reason}`, {id: message.id})
      }
      return outcome
    } finally {
      inFlight--
      progress()
    }
  }

  try {
    for (let pass = 1; ; pass++) {
      const before = summary.delivered + summary.dead
      // consume() prefetches full batches: one receive (one SQS request, one SQLite transaction) per 10 messages.
      const result = await consume(queue, handler, {
        once: !options.watch,
        concurrency: options.concurrency ?? 4,
        visibilityTimeout: options.visibilityTimeout,
        signal: options.signal,
        paused,
        log,
        // As before the delivery contract (one pass, no deadline) until drain adopts it.
        onePass: true,
      })
      if (result.stopError) throw result.stopError
      summary.stoppedBy = result.stoppedBy === 'signal' ? 'signal' : 'empty'
      if (options.watch || summary.stoppedBy === 'signal') break
      // A FIFO group is blocked until its in-flight head is deleted, so a pass can see "empty"
      // while later messages of a group wait behind a delete: go again while passes make progress.
      if (!queue.capabilities.fifo || summary.delivered + summary.dead === before || (await visibleIn(queue)) === 0) break
      log.debug(`pass ${pass} done; messages still visible, going again`)
    }
  } catch (error) {
    if (!(error instanceof TargetUnhealthyError)) throw error
    const health = (error as TargetUnhealthyError & {health?: TargetHealth}).health
    await stopUnhealthy(health ?? {name: '?', url: '?', state: 'down', ms: 0, detail: error.message})
  } finally {
    await Promise.all(comments)
  }
  return finish()
}

/** The one-line error a stopped drain exits with (3). */
export function unhealthyError(health: TargetHealth): TargetUnhealthyError {
  const error = new TargetUnhealthyError(
    `Jenkins ${describeHealth(health)}`,
    'queued webhooks are kept; drain again when Jenkins is healthy (`cistern spigot status` shows it)',
  )
  return Object.assign(error, {health})
}

/** The human summary line. */
export function renderSummary(summary: DrainSummary): string {
  if (summary.stoppedBy === 'dry-run') {
    const lines = (summary.wouldSend ?? []).map(
      (entry) =>
        `${entry.id}  ${entry.event ?? '?'}  ${entry.delivery ?? '-'}  ${entry.repository ?? '-'}  ${entry.bytes} B ${entry.source}  → ${entry.urls.join(', ') || 'no route (would be dead-lettered)'}`,
    )
    return [...lines, `dry run: ${summary.wouldSend?.length ?? 0} would be sent; nothing was touched (${summary.remaining} waiting)`].join('\n')
  }
  const base = `drain: ${summary.delivered} delivered, ${summary.retried} retried, ${summary.dead} dead, ${summary.remaining < 0 ? 'unknown' : summary.remaining} remaining`
  switch (summary.stoppedBy) {
    case 'unhealthy':
      return `${base} — stopped: Jenkins ${summary.unhealthy?.state ?? 'unhealthy'}${summary.autoOff ? `; spigot ${summary.autoOff.before} → ${summary.autoOff.after}` : ''}`
    case 'off':
      return `${base} — the spigot is OFF, nothing replayed`
    case 'signal':
      return `${base} — stopped by signal`
    default:
      return `${base} (${(summary.elapsedMs / 1000).toFixed(1)} s)`
  }
}

/** The targets and paths of a message, or the reason it cannot be replayed. */
function routesOf(message: SpigotMessage, config: SpigotConfig): {target: JenkinsTarget; path: string}[] | string {
  const event = header(message.headers, 'X-GitHub-Event')
  if (!event) return 'no X-GitHub-Event header: cannot route'
  const routes = routeFor(event, config)
  if (!routes || routes.length === 0) return `no route for the "${event}" event (add one under spigot.routes)`
  if (!message.target) return routes
  // Queued for one named target (intake fanned out, or that target alone failed).
  const target = targetNamed(config, message.target)
  if (!target) return `the message names Jenkins target "${message.target}", which is not configured (known: ${config.targets.map((t) => t.name).join(', ')})`
  const own = routes.find((route) => route.target.name === target.name)
  return [{target, path: own?.path ?? routes[0]!.path}]
}

async function dryRun(queue: Queue, config: SpigotConfig, limit: number): Promise<DryRunEntry[]> {
  if (!queue.capabilities.peek) {
    throw new UsageError(`--dry-run needs a queue that can be looked at without receiving; ${queue.kind} cannot`, 'use `cistern queue stats` instead')
  }
  const entries: DryRunEntry[] = []
  for (const received of await queue.peek(limit)) {
    let message: SpigotMessage
    try {
      message = decodeMessage(received.body)
    } catch {
      entries.push({id: received.id, urls: [], bytes: Buffer.byteLength(received.body), source: 'undecodable', receiveCount: received.receiveCount})
      continue
    }
    const routes = routesOf(message, config)
    entries.push({
      id: received.id,
      event: header(message.headers, 'X-GitHub-Event'),
      delivery: header(message.headers, 'X-GitHub-Delivery'),
      repository: (message.body as {repository?: {full_name?: string}} | undefined)?.repository?.full_name,
      urls: typeof routes === 'string' ? [] : routes.map((route) => jenkinsUrl(route.target, route.path).toString()),
      bytes: message.large_payload ? message.large_payload.bytes : replayBytes(message).length,
      source: message.large_payload ? 's3' : message.raw_body !== undefined ? 'raw' : 'reserialised',
      receiveCount: received.receiveCount,
    })
  }
  return entries
}

async function visibleIn(queue: Queue): Promise<number> {
  try {
    return (await queue.stats()).visible
  } catch {
    return 0
  }
}

async function remainingIn(queue: Queue): Promise<number> {
  try {
    const stats = await queue.stats()
    return stats.visible + stats.inFlight + stats.delayed
  } catch {
    return -1
  }
}

async function readLargePayload(pointer: NonNullable<SpigotMessage['large_payload']>, options: DrainOptions): Promise<Buffer> {
  if (options.fetchLargePayload) return options.fetchLargePayload(pointer)
  const {readLargePayload: fromS3} = await import('./large-payload.js')
  return fromS3(pointer, {region: options.region, profile: options.profile})
}

/** Re-check a target after a failed delivery; concurrent failures share one check (1 s). */
function healthRechecker(config: SpigotConfig, timeoutMs: number | undefined) {
  const recent = new Map<string, {at: number; check: Promise<TargetHealth>}>()
  return (target: JenkinsTarget): Promise<TargetHealth> => {
    const cached = recent.get(target.name)
    if (cached && performance.now() - cached.at < 1000) return cached.check
    const check = targetHealth(target, config.healthPath, {timeoutMs})
    recent.set(target.name, {at: performance.now(), check})
    return check
  }
}

/** Deliveries per second with a burst: each take() waits for its slot (GCRA). */
export class TokenBucket {
  private readonly interval: number
  private readonly burstWindow: number
  private next = 0

  constructor(perSecond: number, burst = 1) {
    this.interval = 1000 / perSecond
    this.burstWindow = this.interval * Math.max(0, burst - 1)
  }

  async take(signal?: AbortSignal): Promise<void> {
    const now = performance.now()
    // Theoretical arrival time: a take may run up to burstWindow ahead of it.
    const tat = Math.max(this.next, now)
    this.next = tat + this.interval
    const wait = tat - this.burstWindow - now
    if (wait <= 0 || signal?.aborted) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, wait)
      function done() {
        clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      signal?.addEventListener('abort', done, {once: true})
    })
  }
}
