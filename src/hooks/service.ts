import {readFileSync} from 'node:fs'

import {errorMessage} from '../core/errors.js'
import type {JobsConfig} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
import type {BackoffOptions} from '../core/loop.js'
import {instanceId} from '../core/orphans.js'
import {type ActionPort, ActionRunner} from './actions.js'
import {Cleaner} from './cleaner.js'
import {registerHeaderSecrets} from './headers.js'
import {type HooksMetrics, hooksMetrics} from './metrics.js'
import {registerRoutes} from './routes/index.js'
import {type Clock, Scheduler, systemClock} from './scheduler.js'
import type {ServiceStatus} from './status.js'
import {defaultStoreUrl, openStore} from './store/index.js'
import type {Backlog, HooksStore} from './store/types.js'
import {settlesWithin, withinMs} from './time.js'
import {Worker} from './worker.js'

export const DEFAULT_PORT = 8091
export const DEFAULT_BODY_LIMIT = 1024 * 1024
/** How long an intake waits for the store before answering 503 (GitHub gives up after 10 s). */
export const DEFAULT_INTAKE_TIMEOUT_MS = 5000
/** /healthz and /mon/status answer within 2 s, store or not. */
export const STATUS_TIMEOUT_MS = 1500

export interface HooksServiceOptions {
  /** An open store, or its URL (default: the embedded db file). */
  store?: HooksStore | string
  /** Redis key prefix (tests). */
  storePrefix?: string
  host?: string
  /** 0 = any free port. */
  port?: number
  /** The API token; without one the task API answers 401. */
  token?: string
  concurrency?: number
  retryMax?: number
  retryDelayMs?: number
  leaseMs?: number
  /** DONE executions kept per task (default 10). */
  keep?: number
  cleanIntervalMs?: number
  bodyLimit?: number
  /** jobs.yml for job actions: read and validated now (a bad file is a ConfigError, exit 2). */
  jobsFile?: string
  /** Jobs already loaded (the jobs: section of cistern.yml), used when there is no jobsFile. */
  jobs?: JobsConfig
  /** How long an intake waits for the store before answering 503 (ms, default 5 s). */
  intakeTimeoutMs?: number
  /** What stop() gives running executions by default (ms, default 30 s): also bounds a stopped job's SIGTERM → SIGKILL grace. */
  stopTimeoutMs?: number
  /** How long a target that is down is left alone (its gate's back-off; default 1 s doubling to 60 s). */
  targetBackoff?: BackoffOptions
  /** Scheduler tick (ms, default 250). */
  tickMs?: number
  /** How often the maintenance flag is re-read from the store (ms, default 2000). */
  maintenancePollMs?: number
  /** Run the routines (worker, scheduler, cleaner); false = API only (tests drive them). */
  routines?: boolean
  clock?: Clock
  log?: Logger
  /** Replace the actions (tests). */
  actions?: ActionPort
}

export interface HooksService {
  url: string
  store: HooksStore
  worker: Worker
  scheduler: Scheduler
  cleaner: Cleaner
  maintenance(): boolean
  setMaintenance(enabled: boolean): Promise<void>
  /** What GET /mon/status answers. */
  status(): Promise<ServiceStatus>
  /** Stop intake and the routines, give in-flight work `deadlineMs`, close the store: resolves within the deadline, whatever the store does. */
  stop(deadlineMs?: number): Promise<void>
}

export function hooksVersion(): string {
  try {
    const parsed: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
    return parsed && typeof parsed === 'object' && 'version' in parsed && typeof parsed.version === 'string' ? parsed.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

/** `cistern hooks serve`: the HTTP API and intake, the worker pool, the scheduler and the cleaner. */
export async function startHooksService(options: HooksServiceOptions = {}): Promise<HooksService> {
  const log = options.log ?? silentLogger
  const jobs = options.jobsFile ? await import('../core/jobs.js').then(({loadJobs}) => loadJobs(options.jobsFile ?? '')) : options.jobs
  const store = typeof options.store === 'object' ? options.store : await openStore(options.store ?? defaultStoreUrl(), {prefix: options.storePrefix})
  try {
    return await new ServiceParts(store, typeof options.store !== 'object', jobs, options, log).start()
  } catch (error) {
    if (typeof options.store !== 'object') await store.close({force: true})
    throw error
  }
}

/** The service's parts, started and stopped in order. */
class ServiceParts {
  private readonly clock: Clock
  private readonly stopTimeoutMs: number
  private readonly statusTimeoutMs = STATUS_TIMEOUT_MS
  private maintenance = false
  private metrics?: HooksMetrics
  private readonly owner = instanceId()
  private readonly actions: ActionPort
  readonly worker: Worker
  readonly scheduler: Scheduler
  readonly cleaner: Cleaner
  private poll?: NodeJS.Timeout
  private backlogThisTurn?: Promise<Backlog | undefined>
  private stopped?: Promise<void>

  constructor(
    readonly store: HooksStore,
    private readonly ownsStore: boolean,
    jobs: JobsConfig | undefined,
    private readonly options: HooksServiceOptions,
    private readonly log: Logger,
  ) {
    this.clock = options.clock ?? systemClock
    this.stopTimeoutMs = options.stopTimeoutMs ?? 30_000
    this.actions = options.actions ?? new ActionRunner({log, jobs, killGraceMs: Math.min(5000, Math.max(200, this.stopTimeoutMs / 5))})
    this.worker = new Worker(store, this.actions, {
      concurrency: options.concurrency,
      retryMax: options.retryMax,
      retryDelayMs: options.retryDelayMs,
      leaseMs: options.leaseMs,
      targetBackoff: options.targetBackoff,
      paused: () => this.maintenance,
      owner: this.owner,
      clock: this.clock,
      log,
      onOutcome: (outcome) => this.metrics?.outcome(outcome),
    })
    this.scheduler = new Scheduler(store, {clock: this.clock, log, tickMs: options.tickMs, onEnqueued: () => this.worker.wake()})
    this.cleaner = new Cleaner(store, {keep: options.keep, intervalMs: options.cleanIntervalMs, log})
  }

  async start(): Promise<HooksService> {
    const {store, log} = this
    const {createHttpServer} = await import('../core/http.js')
    const server = await createHttpServer({
      log,
      bodyLimit: this.options.bodyLimit ?? DEFAULT_BODY_LIMIT,
      health: async () => {
        await withinMs(store.ping(), this.statusTimeoutMs, 'ping')
        return {store: store.kind, maintenance: this.maintenance}
      },
    })
    this.metrics = await hooksMetrics(server.metrics, store, this.worker, () => this.backlog())
    const metrics = this.metrics
    this.maintenance = await store.getMaintenance()
    for (const task of await store.listTasks()) registerHeaderSecrets(task)
    const maintenanceGauge = new (await import('prom-client')).Gauge({name: 'cistern_hooks_maintenance', help: '1 while in maintenance mode', registers: [server.metrics]})
    maintenanceGauge.set(this.maintenance ? 1 : 0)
    const follow = (enabled: boolean) => {
      if (enabled === this.maintenance) return
      this.maintenance = enabled
      maintenanceGauge.set(enabled ? 1 : 0)
      log.info(enabled ? 'maintenance on: processing paused, intake continues' : 'maintenance off: draining the backlog')
      if (!enabled) this.worker.wake()
    }
    const setMaintenance = async (enabled: boolean) => {
      await store.setMaintenance(enabled)
      follow(enabled)
    }

    await registerRoutes(server.app, {
      store,
      token: this.options.token,
      clock: this.clock,
      intakeTimeoutMs: this.options.intakeTimeoutMs ?? DEFAULT_INTAKE_TIMEOUT_MS,
      statusTimeoutMs: this.statusTimeoutMs,
      maintenance: () => this.maintenance,
      setMaintenance,
      onWebhook: () => {
        metrics.webhookReceived()
        // Paused slots are woken when maintenance ends, not by each webhook (that churned them per request).
        if (!this.maintenance) this.worker.wake()
      },
      onTaskChanged: async (task) => {
        registerHeaderSecrets(task)
        if (task.type === 'scheduler') await this.scheduler.plan(task)
      },
      abortLocal: (ref) => this.worker.abort(ref),
      status: () => this.status(),
    })

    // Other instances flip the flag: told at once on Redis (pub/sub), and re-read periodically
    // (SQLite shared by several processes, or a missed message while Redis reconnected).
    await store.subscribe?.({maintenance: follow})
    this.poll = setInterval(() => {
      store.getMaintenance().then(follow, () => undefined)
    }, this.options.maintenancePollMs ?? 2000)

    const url = await server.listen(this.options.port ?? DEFAULT_PORT, this.options.host)
    if (this.options.routines !== false) {
      this.worker.start()
      this.scheduler.start()
      this.cleaner.start()
    }
    log.info('hooks service listening', {url, store: store.location, maintenance: this.maintenance, instance: this.owner})

    return {
      url,
      store,
      worker: this.worker,
      scheduler: this.scheduler,
      cleaner: this.cleaner,
      maintenance: () => this.maintenance,
      setMaintenance,
      status: () => this.status(),
      stop: (deadlineMs = this.stopTimeoutMs) => (this.stopped ??= this.stop(() => server.close(), deadlineMs)),
    }
  }

  /**
   * The work queue's counts, or undefined when the store does not answer in time. One read per
   * scrape: prom-client collects the gauges in the same turn, and they share it.
   */
  backlog(): Promise<Backlog | undefined> {
    if (this.backlogThisTurn) return this.backlogThisTurn
    const read = withinMs(this.store.backlog(this.clock.now()), this.statusTimeoutMs, 'counting executions').catch(() => undefined)
    this.backlogThisTurn = read
    setImmediate(() => (this.backlogThisTurn = undefined))
    return read
  }

  async status(): Promise<ServiceStatus> {
    const {store} = this
    let backlog: Backlog | undefined
    let error: string | undefined
    try {
      backlog = await withinMs(store.backlog(this.clock.now()), this.statusTimeoutMs, 'counting executions')
    } catch (failure) {
      error = errorMessage(failure)
    }
    return {
      version: hooksVersion(),
      store: {kind: store.kind, location: store.location, reachable: backlog !== undefined, ...(error ? {error} : {})},
      maintenance: this.maintenance,
      queue_length: backlog?.queued ?? -1,
      in_flight: this.worker.inFlight,
      ...(backlog
        ? {executions: {queued: backlog.queued, in_flight: backlog.inFlight, delayed: backlog.delayed, dead: backlog.dead, oldest_age_seconds: Math.round(backlog.oldestAgeSeconds)}}
        : {}),
      dead_letters: this.metrics?.deadLetters ?? 0,
      targets_down: this.worker.gates.down().map(({target, reason, since}) => ({target, reason, since})),
    }
  }

  /**
   * Stop intake and the routines at once, let running executions finish until shortly before the
   * deadline (then abort them: back to the queue, not counted), close the store. Past the deadline
   * the store connection is dropped whatever it is doing: what an instance still holds is
   * recovered elsewhere when its lease lapses.
   */
  private async stop(closeServer: () => Promise<void>, deadlineMs: number): Promise<void> {
    clearInterval(this.poll)
    const started = Date.now()
    // The last part of the deadline is kept for dropping the store connection when it does not answer.
    const forceAtMs = Math.max(0, deadlineMs - Math.min(1000, deadlineMs / 4))
    const abortAfterMs = Math.max(0, forceAtMs - Math.min(4000, forceAtMs / 3))
    const orderly = (async () => {
      await Promise.all([closeServer(), this.scheduler.stop(), this.cleaner.stop(), this.worker.stop(forceAtMs, abortAfterMs)])
      if (this.actions instanceof ActionRunner) await this.actions.close()
      if (this.ownsStore) await this.store.close()
    })()
    const orderlyEnd = orderly.catch((error: unknown) => {
      this.log.warn('stopping the hooks service failed', {error: errorMessage(error)})
    })
    if (!(await settlesWithin(orderlyEnd, Math.max(0, forceAtMs - (Date.now() - started))))) {
      this.log.warn('stop deadline reached: dropping the store connection; executions still held here are recovered by their lease')
      this.worker.halt()
      if (this.ownsStore) await this.store.close({force: true})
      await settlesWithin(orderlyEnd, Math.max(0, deadlineMs - (Date.now() - started)))
    }
    this.log.info('hooks service stopped')
  }
}
