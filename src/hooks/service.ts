import {readFileSync} from 'node:fs'

import type {JobsConfig} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
import {ActionRunner} from './actions.js'
import {Cleaner} from './cleaner.js'
import type {Execution} from './model.js'
import {registerRoutes} from './routes.js'
import {type Clock, Scheduler, systemClock} from './scheduler.js'
import {defaultStoreUrl, openStore} from './store/index.js'
import type {HooksStore} from './store/types.js'
import {type ActionPort, Worker} from './worker.js'

export const DEFAULT_PORT = 8091
export const DEFAULT_BODY_LIMIT = 1024 * 1024

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
  /** jobs.yml for job actions. */
  jobsFile?: string
  /** Jobs already loaded (the jobs: section of cistern.yml), used when there is no jobsFile. */
  jobs?: JobsConfig
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
  /** Stop intake, the routines, then in-flight work within `deadlineMs`; close the store. */
  stop(deadlineMs?: number): Promise<void>
}

export function hooksVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string}).version
  } catch {
    return 'unknown'
  }
}

/** `cistern hooks serve`: the HTTP API and intake, the worker pool, the scheduler and the cleaner. */
export async function startHooksService(options: HooksServiceOptions = {}): Promise<HooksService> {
  const log = options.log ?? silentLogger
  const clock = options.clock ?? systemClock
  const store =
    typeof options.store === 'object' ? options.store : await openStore(options.store ?? defaultStoreUrl(), {prefix: options.storePrefix})
  const ownsStore = typeof options.store !== 'object'

  const [{createHttpServer}, prom] = await Promise.all([import('../core/http.js'), import('prom-client')])
  const server = await createHttpServer({
    log,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    health: async () => {
      await store.ping()
      return {store: store.kind, maintenance}
    },
  })

  const received = new prom.Counter({
    name: 'cistern_hooks_webhooks_received_total',
    help: 'Webhook executions accepted',
    registers: [server.metrics],
  })
  const outcomes = new prom.Counter({
    name: 'cistern_hooks_executions_total',
    help: 'Execution attempts by outcome',
    labelNames: ['outcome'],
    registers: [server.metrics],
  })
  new prom.Gauge({
    name: 'cistern_hooks_queue_length',
    help: 'Executions waiting in the work queue',
    registers: [server.metrics],
    async collect() {
      this.set(await store.queueLength().catch(() => -1))
    },
  })
  const maintenanceGauge = new prom.Gauge({name: 'cistern_hooks_maintenance', help: '1 while in maintenance mode', registers: [server.metrics]})

  let maintenance = await store.getMaintenance()
  maintenanceGauge.set(maintenance ? 1 : 0)
  const follow = (enabled: boolean) => {
    if (enabled === maintenance) return
    maintenance = enabled
    maintenanceGauge.set(enabled ? 1 : 0)
    log.info(enabled ? 'maintenance on: processing paused, intake continues' : 'maintenance off: draining the backlog')
    if (!enabled) worker.wake()
  }

  let jobs: Promise<JobsConfig> | undefined
  const actions =
    options.actions ??
    new ActionRunner({
      log,
      jobs: options.jobsFile
        ? () => {
            jobs ??= import('../core/jobs.js').then(({loadJobs}) => loadJobs(options.jobsFile!))
            jobs.catch(() => (jobs = undefined))
            return jobs
          }
        : options.jobs
          ? async () => options.jobs!
          : undefined,
    })

  const worker = new Worker(store, actions, {
    concurrency: options.concurrency,
    retryMax: options.retryMax,
    retryDelayMs: options.retryDelayMs,
    leaseMs: options.leaseMs,
    paused: () => maintenance,
    clock,
    log,
    onOutcome: (outcome) => outcomes.inc({outcome}),
  })
  const scheduler = new Scheduler(store, {clock, log, tickMs: options.tickMs, onEnqueued: () => worker.wake()})
  const cleaner = new Cleaner(store, {keep: options.keep, intervalMs: options.cleanIntervalMs, log})

  const setMaintenance = async (enabled: boolean) => {
    await store.setMaintenance(enabled)
    follow(enabled)
  }

  registerRoutes(server.app, {
    store,
    token: options.token,
    clock,
    version: hooksVersion(),
    maintenance: () => maintenance,
    setMaintenance,
    onWebhook: (_execution: Execution) => {
      received.inc()
      worker.wake()
    },
    onTaskChanged: async (task) => {
      if (task.type === 'scheduler') await scheduler.plan(task)
    },
    abortLocal: (ref) => worker.abort(ref),
    inFlight: () => worker.inFlight,
  })

  // Other instances flip the flag: told at once on Redis (pub/sub), and re-read periodically
  // (SQLite shared by several processes, or a missed message while Redis reconnected).
  await store.subscribe?.({maintenance: follow})
  const poll = setInterval(() => {
    store.getMaintenance().then(follow, () => {})
  }, options.maintenancePollMs ?? 2000)

  const url = await server.listen(options.port ?? DEFAULT_PORT, options.host)
  if (options.routines !== false) {
    worker.start()
    scheduler.start()
    cleaner.start()
  }
  log.info('hooks service listening', {url, store: store.location, maintenance})

  let stopped: Promise<void> | undefined
  return {
    url,
    store,
    worker,
    scheduler,
    cleaner,
    maintenance: () => maintenance,
    setMaintenance,
    stop(deadlineMs = 10_000) {
      stopped ??= (async () => {
        clearInterval(poll)
        await server.close()
        await scheduler.stop()
        await cleaner.stop()
        await worker.stop(deadlineMs)
        if (actions instanceof ActionRunner) await actions.close()
        if (ownsStore) await store.close()
        log.info('hooks service stopped')
      })()
      return stopped
    },
  }
}
