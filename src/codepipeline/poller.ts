import type {CodePipelineClient, Job} from '@aws-sdk/client-codepipeline'

import {CisternError, ConfigError, errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {type ActionConfig, actionKey} from './config.js'
import {type ActionHandler, type JobResultKind, processJob} from './job.js'

export interface WorkerAction {
  config: ActionConfig
  handler: ActionHandler
}

export interface WorkerOptions {
  client: Pick<CodePipelineClient, 'send'>
  actions: WorkerAction[]
  /** Jobs across all action types at once. */
  concurrency: number
  /** Seconds. */
  pollInterval: {min: number; max: number}
  /** Seconds handlers get after a stop before the deadline aborts them. */
  stopTimeout: number
  logger: Logger
  /** Aborting stops polling; running jobs finish or hand back a continuation token. */
  signal?: AbortSignal
  /** One poll round; the jobs it takes are finished before returning. */
  once?: boolean
  /** For tests: the jitter source (0 ≤ r < 1). */
  random?: () => number
  /** After the deadline, how long a handler may wind down before "worker stopped" is reported. */
  deadlineGraceMs?: number
}

export interface WorkerSummary {
  polls: number
  jobs: number
  succeeded: number
  continued: number
  failed: number
  skipped: number
  unreported: number
  pollErrors: number
  throttled: number
  stopped: boolean
}

/** Free job slots, globally and per action type; never over-committed. */
export class Slots {
  private running = 0
  private readonly perAction = new Map<string, number>()
  private waiters: Array<() => void> = []

  constructor(
    readonly global: number,
    private readonly limits: Map<string, number>,
  ) {}

  free(key: string): number {
    const limit = Math.min(this.limits.get(key) ?? 1, this.global)
    return Math.max(0, Math.min(this.global - this.running, limit - (this.perAction.get(key) ?? 0)))
  }

  get inUse(): number {
    return this.running
  }

  acquire(key: string): void {
    if (this.free(key) < 1) throw new Error(`no free slot for ${key}`)
    this.running++
    this.perAction.set(key, (this.perAction.get(key) ?? 0) + 1)
  }

  release(key: string): void {
    this.running--
    this.perAction.set(key, (this.perAction.get(key) ?? 1) - 1)
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }

  /** Resolves at the next release. */
  released(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve))
  }
}

/** Resolves after ms, or early when the signal aborts or `wake` settles. */
function sleep(ms: number, signal?: AbortSignal, wake?: Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, {once: true})
    wake?.then(done, done)
  })
}

const THROTTLED = new Set(['ThrottlingException', 'Throttling', 'TooManyRequestsException', 'RequestLimitExceeded', 'LimitExceededException'])
// Errors no retry will fix: stop with a clear line instead of polling in vain.
const CREDENTIAL_ERRORS = new Set([
  'CredentialsProviderError',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'AccessDeniedException',
  'ExpiredTokenException',
  'InvalidClientTokenId',
])

function errorName(error: unknown): string {
  return String((error as {name?: string})?.name ?? '')
}

/**
 * The poll loop: polls each action type for as many jobs as it has free slots, runs them, polls
 * again at once while jobs come back, and backs off with jitter (up to pollInterval.max) when none
 * do or when throttled.
 */
export async function runWorker(options: WorkerOptions): Promise<WorkerSummary> {
  const {client, logger} = options
  const {PollForJobsCommand} = await import('@aws-sdk/client-codepipeline')
  const random = options.random ?? Math.random
  const minMs = options.pollInterval.min * 1000
  const maxMs = Math.max(options.pollInterval.max * 1000, minMs)
  const summary: WorkerSummary = {polls: 0, jobs: 0, succeeded: 0, continued: 0, failed: 0, skipped: 0, unreported: 0, pollErrors: 0, throttled: 0, stopped: false}

  const stopping = options.signal ?? new AbortController().signal
  const deadline = new AbortController()
  let deadlineTimer: NodeJS.Timeout | undefined
  const onStop = () => {
    summary.stopped = true
    logger.info('stopping: no new jobs; running handlers finish or hand back a continuation token', {
      running: slots.inUse,
      deadlineSeconds: options.stopTimeout,
    })
    deadlineTimer = setTimeout(() => {
      if (slots.inUse > 0) logger.warn('stop deadline reached: stopping running handlers', {running: slots.inUse})
      deadline.abort(new Error('stop deadline'))
    }, options.stopTimeout * 1000)
  }

  const keys = options.actions.map((action) => actionKey(action.config))
  const slots = new Slots(options.concurrency, new Map(options.actions.map((action, i) => [keys[i], action.config.concurrency])))
  const inflight = new Set<Promise<void>>()
  if (stopping.aborted) onStop()
  else stopping.addEventListener('abort', onStop, {once: true})

  const count = (kind: JobResultKind) => {
    summary[kind]++
  }

  const start = (action: WorkerAction, key: string, job: Job) => {
    slots.acquire(key)
    summary.jobs++
    const run = processJob(job, {
      client,
      handler: action.handler,
      logger: logger.child({actionType: key}),
      secretKeys: action.config.secretConfiguration,
      stopping,
      deadline: deadline.signal,
      deadlineGraceMs: options.deadlineGraceMs,
    })
      .then(count, (error: unknown) => {
        // processJob reports every job-level problem itself; reaching here is a bug, still logged.
        summary.unreported++
        logger.error('job processing crashed', {jobId: job.id, error: errorMessage(error)})
      })
      .finally(() => {
        slots.release(key)
        inflight.delete(run)
      })
    inflight.add(run)
  }

  let emptyDelay = minMs
  let errorDelay = 0
  let succeededOnce = false
  try {
    while (!stopping.aborted) {
      let taken = 0
      let polled = false
      let failed = false
      for (const [index, action] of options.actions.entries()) {
        if (stopping.aborted) break
        const key = keys[index]
        const free = slots.free(key)
        if (free < 1) continue
        polled = true
        const {category, owner, provider, version, queryParam} = action.config
        let jobs: Job[]
        try {
          const out = await client.send(
            new PollForJobsCommand({actionTypeId: {category, owner, provider, version}, maxBatchSize: free, ...(queryParam ? {queryParam} : {})}),
            {abortSignal: stopping},
          )
          summary.polls++
          succeededOnce = true
          jobs = out.jobs ?? []
        } catch (error) {
          if (stopping.aborted) break
          failed = true
          summary.pollErrors++
          const name = errorName(error)
          if (THROTTLED.has(name)) {
            summary.throttled++
            logger.warn('PollForJobs throttled: backing off', {actionType: key})
          } else if (name === 'ActionTypeNotFoundException') {
            throw new ConfigError(
              `action type ${key} does not exist in this account/region: create it (aws codepipeline create-custom-action-type --cli-input-json file://…) or fix the config`,
            )
          } else if (CREDENTIAL_ERRORS.has(name) && !succeededOnce) {
            throw new CisternError(`PollForJobs failed: ${name}: ${errorMessage(error)}`, {
              fix: 'check the AWS credentials, region and the codepipeline:PollForJobs/AcknowledgeJob/PutJob*Result permissions',
            })
          } else {
            logger.warn('PollForJobs failed: backing off', {actionType: key, error: `${name}: ${errorMessage(error)}`})
          }
          continue
        }
        if (jobs.length > free) {
          // Never exceed the limits: jobs not acknowledged go back to CodePipeline.
          logger.warn('poll returned more jobs than asked for: leaving the extra ones', {actionType: key, asked: free, got: jobs.length})
        }
        for (const job of jobs.slice(0, free)) start(action, key, job)
        taken += Math.min(jobs.length, free)
      }
      if (options.once || stopping.aborted) break

      if (failed) {
        // Throttled or failing: exponential back-off with jitter, capped at max (at least 1 s).
        errorDelay = Math.min(maxMs, Math.max(errorDelay * 2, minMs, 1000))
        await sleep(jitter(errorDelay, random), stopping)
        continue
      }
      errorDelay = 0
      if (taken > 0) {
        emptyDelay = minMs
        // Poll again at once, or when a slot frees if none is free.
        if (options.actions.every((_, i) => slots.free(keys[i]) < 1)) await sleep(maxMs, stopping, slots.released())
        continue
      }
      if (!polled) {
        await sleep(maxMs, stopping, slots.released())
        continue
      }
      await sleep(jitter(emptyDelay, random), stopping)
      emptyDelay = Math.min(maxMs, Math.max(emptyDelay * 2, 250))
    }
  } finally {
    // Whatever ended the loop, no job taken is abandoned: each reports a result first.
    while (inflight.size > 0) await Promise.all([...inflight])
    stopping.removeEventListener('abort', onStop)
    if (deadlineTimer) clearTimeout(deadlineTimer)
  }
  return summary
}

/** Between half and all of the delay. */
function jitter(ms: number, random: () => number): number {
  return Math.round(ms / 2 + (random() * ms) / 2)
}
