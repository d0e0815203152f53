/** Wires a `.sqslistener` file into a running listener: logging, jobs, queues, request store. */
import {existsSync} from 'node:fs'

import {UsageError, errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {openQueue} from '../core/queue/index.js'
import type {Queue} from '../core/queue/types.js'
import {loadListenerConfig, type ListenerConfig} from './config.js'
import {loadListenerJobs} from './jobs.js'
import {listen, type ListenSummary} from './listener.js'
import {loadPythonLogging, type PythonLogging} from './logging.js'
import {openRequestStore, type RequestStore} from './store.js'

export interface RunOptions {
  configPath: string
  once?: boolean
  /** Overrides max_concurrent_jobs. */
  concurrency?: number
  signal?: AbortSignal
  /** cistern's own logger (stderr): used when the file names no logging config, and for start-up warnings. */
  log: Logger
}

export interface RunResult extends ListenSummary {
  requestQueue: string
  responseQueue: string
}

export async function runListener(options: RunOptions): Promise<RunResult> {
  const config = await loadListenerConfig(options.configPath)
  const logging = setUpLogging(config, options.log)
  const log = logging?.logger ?? options.log
  for (const key of config.unknownKeys) {
    warnEverywhere(`${config.file}: unknown key "${key}" ignored`, log, options.log, logging)
  }

  let requests: Queue | undefined
  let responses: Queue | undefined
  let store: RequestStore | undefined
  let pruner: NodeJS.Timeout | undefined
  try {
    const jobs = await loadListenerJobs(config.jobsPath, config.bangCommand)
    log.info(`loaded ${jobs.size} job(s) from ${config.jobsPath}`)
    const queueOptions = {region: config.region, visibilityTimeout: config.visibilityTimeout, log}
    requests = await openQueue(config.requestQueueUrl, queueOptions)
    responses = await openQueue(config.responseQueueUrl, queueOptions)
    if (!responses.capabilities.send) {
      throw new UsageError(`${config.file}: the response queue ${responses.url} cannot be sent to`, 'use an SQS or sqlite: queue for responses')
    }
    store = openRequestStore({path: config.stateDb, queue: requests.url, windowMs: config.completedWindowSeconds * 1000})
    const prune = () => {
      const pruned = store?.prune() ?? 0
      if (pruned > 0) log.debug(`forgot ${pruned} completed request(s) older than the window`)
    }
    prune()
    pruner = setInterval(prune, 3_600_000).unref()
    const summary = await listen(
      {
        requests,
        responses,
        jobs,
        store,
        log,
        settings: {
          maxConcurrentJobs: options.concurrency ?? config.maxConcurrentJobs,
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
      {once: options.once, signal: options.signal},
    )
    return {...summary, requestQueue: requests.url, responseQueue: responses.url}
  } catch (error) {
    // The command prints the error on stderr; a configured log file gets it too.
    if (logging) log.error(`listener failed: ${errorMessage(error)}`)
    throw error
  } finally {
    clearInterval(pruner)
    store?.close()
    await requests?.close().catch(() => {})
    await responses?.close().catch(() => {})
    logging?.close()
  }
}

function setUpLogging(config: ListenerConfig, fallback: Logger): PythonLogging | undefined {
  if (!config.loggingPath) return undefined
  if (!existsSync(config.loggingPath)) {
    // As the original: no logging config file → log to stderr (but say so).
    fallback.warn(`${config.file}: logging_config_path ${config.loggingPath} does not exist; logging to stderr`)
    return undefined
  }
  const logging = loadPythonLogging(config.loggingPath)
  for (const warning of logging.warnings) warnEverywhere(warning, logging.logger, fallback, logging)
  return logging
}

/** Once in the configured log, and on stderr too unless the configured log already goes there. */
function warnEverywhere(line: string, log: Logger, stderr: Logger, logging: PythonLogging | undefined): void {
  log.warn(line)
  if (logging && !logging.writesStderr) stderr.warn(line)
}
