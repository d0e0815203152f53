/** Wires the listener's config into a running listener: logging, jobs, queues, request store. */
import {existsSync} from 'node:fs'

import {UsageError, errorMessage} from '../core/errors.js'
import type {JobsConfig} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import {openQueue} from '../core/queue/index.js'
import type {Queue} from '../core/queue/types.js'
import {resolveListenerConfig, type ListenerConfig, type ListenerFlags} from './config.js'
import {loadListenerJobs} from './jobs.js'
import {listen, type ListenResult} from './listener.js'
import {loadPythonLogging, type PythonLogging} from './logging.js'
import {stopAbandonedJobs} from './orphans.js'
import {openRequestStore, type RequestStore} from './store.js'

export interface RunOptions {
  flags: ListenerFlags
  once?: boolean
  /** One-shot: stop receiving this long after the start (default 5 minutes). */
  deadlineMs?: number
  /** One-shot: give the response queue up after it failed this long with no success (default 30 s). */
  giveUpAfterMs?: number
  signal?: AbortSignal
  /** cistern's own logger (stderr): used when the file names no logging config, and for start-up warnings. */
  log: Logger
}

export interface RunResult extends ListenResult {
  requestQueue: string
  responseQueue: string
}

export async function runListener(options: RunOptions): Promise<RunResult> {
  const config = await resolveListenerConfig(options.flags)
  const session = new ListenerSession(config, options.log)
  try {
    return await session.run(options)
  } finally {
    await session.close()
  }
}

/** The human summary line of a run (the problems follow on stderr). */
export function summaryLine(result: RunResult): string {
  const remaining = result.remaining > 0 ? `; ${result.remaining} remaining` : ''
  return (
    `${result.received} request(s): ${result.succeeded} succeeded, ${result.failed} failed, ${result.badRequests} bad, ` +
    `${result.answeredAgain} answered again, ${result.released} released, ${result.duplicates} duplicate(s) dropped, ${result.dead} dead${remaining}`
  )
}

/** One run of the listener, from its config: each step a method, everything it opened closed by close(). */
class ListenerSession {
  private readonly logging?: PythonLogging
  private readonly log: Logger
  private requests?: Queue
  private responses?: Queue
  private store?: RequestStore
  private pruner?: NodeJS.Timeout

  constructor(
    private readonly config: ListenerConfig,
    private readonly stderr: Logger,
  ) {
    this.logging = this.setUpLogging()
    this.log = this.logging?.logger ?? stderr
    for (const key of config.unknownKeys) this.warnEverywhere(`${config.file}: unknown key "${key}" ignored`)
  }

  async run(options: RunOptions): Promise<RunResult> {
    const {config, log} = this
    try {
      const jobs = await this.loadJobs()
      const {requests, responses} = await this.openQueues()
      const store = this.openStore(requests.url)
      await stopAbandonedJobs(store, log)
      const result = await listen(
        {
          requests,
          responses,
          jobs,
          store,
          log,
          settings: {
            maxConcurrentJobs: config.maxConcurrentJobs,
            visibilityTimeout: config.visibilityTimeout,
            pollingIntervalSeconds: config.pollingIntervalSeconds,
            jobTimeoutSeconds: config.jobTimeoutSeconds,
            responseEncoding: config.responseEncoding,
            stopTimeoutSeconds: config.stopTimeoutSeconds,
            workingLines: config.workingLines,
            workingIntervalMs: config.workingIntervalMs,
            jobsPath: config.jobsPath,
          },
        },
        {once: options.once, signal: options.signal, deadlineMs: options.deadlineMs, giveUpAfterMs: options.giveUpAfterMs},
      )
      return {...result, requestQueue: requests.url, responseQueue: responses.url}
    } catch (error) {
      // The command prints the error on stderr; a configured log file gets it too.
      if (this.logging) log.error(`listener failed: ${errorMessage(error)}`)
      throw error
    }
  }

  async close(): Promise<void> {
    clearInterval(this.pruner)
    this.store?.close()
    await this.requests?.close().catch(() => undefined)
    await this.responses?.close().catch(() => undefined)
    this.logging?.close()
  }

  private async loadJobs(): Promise<JobsConfig> {
    const {config} = this
    const jobs = config.sharedJobs ?? (await loadListenerJobs(config.jobsPath, config.bangCommand))
    this.log.info(`loaded ${jobs.size} job(s) from ${config.jobsPath}`)
    return jobs
  }

  /** The job queue is a consumer's: on SQS it refuses to open without a dead-letter queue (exit 2, with the fix). */
  private async openQueues(): Promise<{requests: Queue; responses: Queue}> {
    const {config, log} = this
    const options = {visibilityTimeout: config.visibilityTimeout, log, ...(config.region ? {region: config.region} : {}), ...(config.profile ? {profile: config.profile} : {})}
    const requests = (this.requests = await openQueue(config.requestQueueUrl, {...options, consumer: true, ...(config.deadLetterUrl ? {deadLetterUrl: config.deadLetterUrl} : {})}))
    const responses = (this.responses = await openQueue(config.responseQueueUrl, options))
    if (!responses.capabilities.send) {
      throw new UsageError(`${config.file}: the response queue ${responses.url} cannot be sent to`, 'use an SQS or sqlite: queue for responses')
    }
    return {requests, responses}
  }

  /** The completed-request window and the running claims, pruned now and hourly. */
  private openStore(queue: string): RequestStore {
    const store = (this.store = openRequestStore({path: this.config.stateDb, queue, windowMs: this.config.completedWindowSeconds * 1000}))
    const prune = () => {
      const pruned = store.prune()
      if (pruned > 0) this.log.debug(`forgot ${pruned} completed request(s) older than the window`)
    }
    prune()
    this.pruner = setInterval(prune, 3_600_000).unref()
    return store
  }

  private setUpLogging(): PythonLogging | undefined {
    const {config, stderr} = this
    if (!config.loggingPath) return undefined
    if (!existsSync(config.loggingPath)) {
      // As the original: no logging config file → log to stderr (but say so).
      stderr.warn(`${config.file}: logging_config_path ${config.loggingPath} does not exist; logging to stderr`)
      return undefined
    }
    const logging = loadPythonLogging(config.loggingPath)
    for (const warning of logging.warnings) {
      logging.logger.warn(warning)
      if (!logging.writesStderr) stderr.warn(warning)
    }
    return logging
  }

  /** Once in the configured log, and on stderr too unless the configured log already goes there. */
  private warnEverywhere(line: string): void {
    this.log.warn(line)
    if (this.logging && !this.logging.writesStderr) this.stderr.warn(line)
  }
}
