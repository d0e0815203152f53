import {type ConsumeCounters, type ConsumeOptions, type ConsumeResult, type DeadLetter, consume} from '../core/consume.js'
import {type TargetDownReport, TargetGates, TargetJudge} from '../core/delivery.js'
import {ExitCode, type RunOutcome, TargetUnhealthyError, UsageError, runOutcome} from '../core/errors.js'
import {Limiter} from '../core/limit.js'
import {type Logger, silentLogger} from '../core/log.js'
import type {BackoffOptions} from '../core/loop.js'
import type {Queue} from '../core/queue/types.js'
import {type SpigotMessage, decodeMessage, groupOf, header, replayBytes} from '../core/webhook-message.js'
import type {PrCommenter} from './comments.js'
import type {SpigotConfig} from './config.js'
import {DrainProgressReport, type DrainProgress, type ProgressMode} from './drain-progress.js'
import {JenkinsClient, jenkinsUrl, targetKey} from './jenkins.js'
import {DeliveredPayloads, type LargePayloadPointer, LargePayloads} from './large-payload.js'
import {Replayer, routesOf} from './replay.js'
import type {SpigotState, StateStore} from './state.js'
import {type TargetHealth, describeHealth, isUp, targetsHealth} from './status.js'

export type {DrainProgress} from './drain-progress.js'

/**
 * `spigot drain`: replay what the spigot queued, Jenkins' health first. A one-shot run (cron,
 * systemd timer, `maintenance`) works until the queue is empty, retrying what failed in-process
 * until its deadline (docs/delivery.md); `watch` keeps going. A message is deleted only after every
 * Jenkins it is routed to answered 2xx, so a killed drain loses nothing (at least once).
 */
export interface DrainOptions {
  queue: Queue
  config: SpigotConfig
  /** Needed for autoOff, onlyWhenOn and watch (a watching drain pauses while the spigot is OFF). */
  state?: StateStore
  /** No Jenkins target healthy (at the start, or given up at the end): set the spigot OFF, as the original drain Lambda did. */
  autoOff?: boolean
  /** Keep draining in the foreground until `signal` aborts; targets are never given up. */
  watch?: boolean
  /** Nothing while the spigot is OFF (a cron drain during maintenance does nothing). */
  onlyWhenOn?: boolean
  /** Deliveries in flight at once (default 4). */
  concurrency?: number
  /** Deliveries per second (burst = concurrency); undefined = unlimited. */
  rate?: number
  /** List what would be sent; receive, deliver and delete nothing. */
  dryRun?: boolean
  /** How many messages a dry run lists at most (default 1000). */
  dryRunLimit?: number
  /** One-shot: retry in-process until this long after the start (default 5 minutes). */
  deadlineMs?: number
  /** One-shot: a target down this long with no success is given up (default 30 s). */
  giveUpAfterMs?: number
  /** Per delivery (default 30 s: the drain is not held to GitHub's 10 s). */
  deliveryTimeoutMs?: number
  /** Per health check (default 5 s). */
  healthTimeoutMs?: number
  /** Seconds a received message stays hidden (the consumer's heartbeat extends it). */
  visibilityTimeout?: number
  /** Seconds before a refused (suspect) message is retried (default: the consumer's back-off by attempts). */
  retryDelaySeconds?: number
  /** "Jenkins is back, testing resumes" on replayed pull_request webhooks. */
  commenter?: PrCommenter
  /** Where large payloads are read and deleted (default: S3, one client per bucket for the run). */
  largePayloads?: Pick<LargePayloads, 'read' | 'delete'>
  /** The Jenkins client (default: one for this run, closed at its end). */
  jenkins?: JenkinsClient
  region?: string
  profile?: string
  signal?: AbortSignal
  log?: Logger
  /** 'tty': one live line on stderr; 'log': a progress line every 30 s; default: neither. */
  progress?: ProgressMode
  onProgress?: (progress: DrainProgress) => void
  /** The target gates' back-off (default 1 s doubling to 60 s); tests make it short. */
  targetBackoff?: BackoffOptions
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

/** Why a drain ended. */
export type DrainStop = 'empty' | 'signal' | 'deadline' | 'unhealthy' | 'stop' | 'off' | 'dry-run'

export interface DrainSummary extends RunOutcome {
  queue: string
  /** Messages every target accepted (deleted from the queue). */
  delivered: number
  /** Retries: a message refused once (a suspect), a large payload that could not be read. */
  retried: number
  /** Dead letters (refused again while others passed, undecodable, no route), each with its reason. */
  dead: number
  /** Handed back never attempted: their target was down, or the run stopped. */
  released: number
  /** Waiting in the queue after the run: visible + in flight + delayed (-1 if unknown). */
  remaining: number
  /** When what another consumer holds becomes visible again (ISO), when that is why work remains. */
  heldUntil?: string
  stoppedBy: DrainStop
  /** Targets down when the run ended (`givenUp`: the run stopped trying them). */
  targetsDown: TargetDownReport[]
  /** The first 100 dead letters: queue id, label (event, delivery, repository) and reason. */
  deadLetters: DeadLetter[]
  /** The first target found unhealthy before anything was received, when that stopped the run. */
  unhealthy?: TargetHealth
  /** What --auto-off did. */
  autoOff?: {before: SpigotState; after: SpigotState}
  /** Every target's health at the start. */
  health: TargetHealth[]
  /** --dry-run: what would be sent. */
  wouldSend?: DryRunEntry[]
  elapsedMs: number
}

export async function drain(options: DrainOptions): Promise<DrainSummary> {
  return new DrainRun(options).run()
}

/** The one-line error (exit 3) of a Jenkins found unhealthy: the drain's problem line, maintenance's error. */
export function unhealthyError(health: TargetHealth): TargetUnhealthyError {
  return new TargetUnhealthyError(
    `Jenkins ${describeHealth(health)}`,
    'queued webhooks are kept; drain again when Jenkins is healthy (`cistern spigot status` shows it)',
  )
}

/** The human summary line (the problems that decide the exit code follow it on stderr). */
export function renderSummary(summary: DrainSummary): string {
  if (summary.stoppedBy === 'dry-run') {
    const lines = (summary.wouldSend ?? []).map(
      (entry) =>
        `${entry.id}  ${entry.event ?? '?'}  ${entry.delivery ?? '-'}  ${entry.repository ?? '-'}  ${entry.bytes} B ${entry.source}  → ${entry.urls.join(', ') || 'no route (would be dead-lettered)'}`,
    )
    return [...lines, `dry run: ${summary.wouldSend?.length ?? 0} would be sent; nothing was touched (${summary.remaining} waiting)`].join('\n')
  }
  const base = `drain: ${summary.delivered} delivered, ${summary.retried} retried, ${summary.dead} dead, ${summary.remaining < 0 ? 'unknown' : summary.remaining} remaining`
  const autoOff = summary.autoOff ? `; spigot ${summary.autoOff.before} → ${summary.autoOff.after}` : ''
  switch (summary.stoppedBy) {
    case 'unhealthy': {
      const what = summary.unhealthy ? `Jenkins ${summary.unhealthy.state}` : `${summary.targetsDown.map((down) => down.target).join(', ')} down`
      return `${base} — stopped: ${what}${autoOff}`
    }
    case 'off':
      return `${base} — the spigot is OFF, nothing replayed`
    case 'signal':
      return `${base} — stopped by signal`
    case 'deadline':
      return `${base} — stopped at the deadline (${seconds(summary.elapsedMs)})`
    default:
      return `${base} (${seconds(summary.elapsedMs)})`
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`
}

/**
 * One drain, step by step: the spigot's state (onlyWhenOn), Jenkins' health, then the replay on the
 * one consumer with per-target gates, then auto-off and the summary. What it opened (the Jenkins
 * client, S3 clients) it closes.
 */
class DrainRun {
  private readonly started = performance.now()
  private readonly log: Logger
  private readonly jenkins: JenkinsClient
  private readonly payloads: Pick<LargePayloads, 'read' | 'delete'>
  /** The S3 clients this run opened (none when large payloads were given). */
  private readonly ownPayloads?: LargePayloads

  constructor(private readonly options: DrainOptions) {
    this.log = (options.log ?? silentLogger).child({component: 'drain'})
    this.jenkins = options.jenkins ?? new JenkinsClient({connections: Math.max(4, options.concurrency ?? 4)})
    this.payloads = options.largePayloads ?? (this.ownPayloads = new LargePayloads({region: options.region, profile: options.profile}))
  }

  async run(): Promise<DrainSummary> {
    try {
      if (await this.spigotIsOff()) {
        this.log.info('the spigot is OFF: nothing replayed (turn it ON with `cistern spigot toggle --state ON`)')
        return await this.summary({stoppedBy: 'off', health: []})
      }
      // Health first: a target that is down gets nothing; when none is up, nothing is received.
      const health = await targetsHealth(this.jenkins, this.options.config, {timeoutMs: this.options.healthTimeoutMs, signal: this.options.signal})
      if (this.options.dryRun) return await this.dryRun(health)
      const down = health.filter((target) => !isUp(target))
      if (down.length > 0 && down.length === health.length && !this.options.watch) return await this.unhealthyAtStart(health, down)
      return await this.replay(health, down)
    } finally {
      await this.close()
    }
  }

  private async spigotIsOff(): Promise<boolean> {
    const {state, onlyWhenOn, dryRun} = this.options
    return Boolean(onlyWhenOn && !dryRun && state && (await state.get()) === 'OFF')
  }

  private async dryRun(health: TargetHealth[]): Promise<DrainSummary> {
    const wouldSend = await dryRun(this.options.queue, this.options.config, this.options.dryRunLimit ?? 1000)
    const down = health.find((target) => !isUp(target))
    if (down) this.log.warn(`Jenkins is not healthy: ${describeHealth(down)} (a real drain would not send to it)`)
    return this.summary({stoppedBy: 'dry-run', health, wouldSend})
  }

  /** No target is up: nothing is received (SQS counts every receive), exit 3. */
  private async unhealthyAtStart(health: TargetHealth[], down: TargetHealth[]): Promise<DrainSummary> {
    for (const target of down) this.log.warn(`Jenkins is not healthy, nothing replayed: ${describeHealth(target)}`, {target: target.name})
    const autoOff = await this.autoOff()
    const problems = down.map((target) => ({exitCode: ExitCode.unhealthy, line: unhealthyError(target).oneLine}))
    return this.summary({stoppedBy: 'unhealthy', health, unhealthy: down[0], autoOff, ...runOutcome(problems)})
  }

  /** The replay itself: the one consumer, this run's gates (targets found down are closed already), the replayer. */
  private async replay(health: TargetHealth[], down: TargetHealth[]): Promise<DrainSummary> {
    const once = !this.options.watch
    const gates = new TargetGates({once, giveUpAfterMs: this.options.giveUpAfterMs, backoff: this.options.targetBackoff, log: this.log})
    for (const target of down) gates.failed(targetKey(target.name), describeHealth(target))
    const progress = new DrainProgressReport(this.options.progress, {
      total: once ? await backlogOf(this.options.queue) : undefined,
      log: this.log,
      onProgress: this.options.onProgress,
    })
    const log = progress.logger(this.log)
    const overflow = new DeliveredPayloads(this.payloads, log)
    const replayer = this.replayer(log, overflow)
    let result: ConsumeResult
    try {
      result = await consume(this.options.queue, replayer.handle, await this.consumeOptions({once, gates, log, progress}))
    } finally {
      progress.end()
      await replayer.finish()
      await overflow.close()
    }
    return this.finished(result, health, once)
  }

  private replayer(log: Logger, overflow: DeliveredPayloads): Replayer {
    const {options} = this
    return new Replayer({
      config: options.config,
      jenkins: this.jenkins,
      deliveryTimeoutMs: options.deliveryTimeoutMs ?? 30_000,
      retryDelaySeconds: options.retryDelaySeconds,
      limiter: options.rate === undefined ? undefined : new Limiter({perSecond: options.rate, burst: options.concurrency ?? 4}),
      payloads: {read: (pointer: LargePayloadPointer) => this.payloads.read(pointer), delivered: (pointer) => overflow.add(pointer)},
      commenter: options.commenter,
      log,
    })
  }

  private async consumeOptions({once, gates, log, progress}: {once: boolean; gates: TargetGates; log: Logger; progress: DrainProgressReport}): Promise<ConsumeOptions> {
    const {options} = this
    const single = options.config.targets.length === 1 ? options.config.targets[0] : undefined
    return {
      once,
      deadlineMs: options.deadlineMs,
      concurrency: options.concurrency ?? 4,
      visibilityTimeout: options.visibilityTimeout,
      signal: options.signal,
      paused: this.pausedWhileOff(),
      log,
      gates,
      judge: new TargetJudge(gates),
      // One Jenkins: nothing is received while it is down (SQS counts every receive).
      ...(single ? {target: targetKey(single.name)} : {}),
      maxAttempts: await options.queue.maxAttempts?.(),
      // After a kill -9, the dead drain's messages come back when their leases lapse.
      awaitLapsingLeases: true,
      // Nobody watching: no progress object per counter change.
      ...(options.progress || options.onProgress
        ? {
            onProgress: (counters: ConsumeCounters) => {
              progress.update(counters)
            },
          }
        : {}),
    }
  }

  /** The consumer's result as the drain's summary; auto-off when every target was given up. */
  private async finished(result: ConsumeResult, health: TargetHealth[], once: boolean): Promise<DrainSummary> {
    const givenUp = (name: string) => result.targetsDown.some((report) => report.target === targetKey(name) && report.givenUp)
    const autoOff = once && this.options.config.targets.every((target) => givenUp(target.name)) ? await this.autoOff() : undefined
    const summary = await this.summary({
      ...countsOf(result),
      stoppedBy: result.stoppedBy === 'target-down' ? 'unhealthy' : result.stoppedBy,
      remaining: result.remaining,
      ...(result.heldUntil ? {heldUntil: result.heldUntil} : {}),
      targetsDown: result.targetsDown,
      deadLetters: result.deadLetters,
      health,
      autoOff,
      exitCode: result.exitCode,
      problems: result.problems,
    })
    // Off a terminal (cron, systemd, CI) the log has the run's summary; on one it is the command's output.
    if (this.options.progress === 'log') {
      this.log.info(renderSummary(summary), {delivered: summary.delivered, retried: summary.retried, dead: summary.dead, released: summary.released, remaining: summary.remaining})
    }
    return summary
  }

  /** A watching drain pauses while the spigot is OFF, as the original drain rule was disabled then (the state is read at most every 2 s). */
  private pausedWhileOff(): (() => Promise<boolean>) | undefined {
    const {state, watch} = this.options
    if (!watch || !state) return undefined
    let cached: {at: number; off: boolean} | undefined
    return async () => {
      if (!cached || performance.now() - cached.at > 2000) cached = {at: performance.now(), off: (await state.get()) === 'OFF'}
      return cached.off
    }
  }

  /** --auto-off: the spigot OFF, so intake queues instead of trying a Jenkins that is away. */
  private async autoOff(): Promise<{before: SpigotState; after: SpigotState} | undefined> {
    if (!this.options.autoOff || !this.options.state) return undefined
    const change = await this.options.state.set('OFF')
    this.log.warn(`auto-off: spigot ${change.before} → ${change.after}; webhooks are queued until it is turned ON`)
    return change
  }

  private async summary(fields: Partial<DrainSummary> & Pick<DrainSummary, 'stoppedBy' | 'health'>): Promise<DrainSummary> {
    return {
      queue: this.options.queue.url,
      delivered: 0,
      retried: 0,
      dead: 0,
      released: 0,
      remaining: fields.remaining ?? (await remainingIn(this.options.queue)),
      targetsDown: [],
      deadLetters: [],
      exitCode: ExitCode.ok,
      problems: [],
      ...fields,
      elapsedMs: Math.round(performance.now() - this.started),
    }
  }

  private async close(): Promise<void> {
    if (!this.options.jenkins) await this.jenkins.close()
    this.ownPayloads?.close()
    await this.options.commenter?.close?.()
  }
}

function countsOf(counters: ConsumeCounters): Pick<DrainSummary, 'delivered' | 'retried' | 'dead' | 'released'> {
  return {delivered: counters.delivered, retried: counters.retried, dead: counters.dead, released: counters.released}
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
    const repository = groupOf(message)
    entries.push({
      id: received.id,
      event: header(message.headers, 'X-GitHub-Event'),
      delivery: header(message.headers, 'X-GitHub-Delivery'),
      ...(repository === 'no-repository' ? {} : {repository}),
      urls: typeof routes === 'string' ? [] : routes.map((route) => jenkinsUrl(route.target, route.path).toString()),
      bytes: message.large_payload ? message.large_payload.bytes : replayBytes(message).length,
      source: message.large_payload ? 's3' : message.raw_body === undefined ? 'reserialised' : 'raw',
      receiveCount: received.receiveCount,
    })
  }
  return entries
}

/** Visible + in flight + delayed: what a one-shot drain has in front of it (undefined if the queue cannot tell). */
async function backlogOf(queue: Queue): Promise<number | undefined> {
  const remaining = await remainingIn(queue)
  return remaining < 0 ? undefined : remaining
}

async function remainingIn(queue: Queue): Promise<number> {
  try {
    const stats = await queue.stats()
    return stats.visible < 0 ? -1 : stats.visible + stats.inFlight + stats.delayed
  } catch {
    return -1
  }
}
