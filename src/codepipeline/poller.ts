import type {CodePipelineClient, Job} from '@aws-sdk/client-codepipeline'

import {type AwsErrorKind, awsError, classifyAwsError} from '../core/aws.js'
import {type TargetDownReport, TargetGates} from '../core/delivery.js'
import {CisternError, ConfigError, type Problem, type RunOutcome, TargetUnhealthyError, errorMessage, runOutcome} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {type BackoffOptions, PollLoop, seconds} from '../core/loop.js'
import {type ActionConfig, actionKey} from './config.js'
import type {ActionHandler} from './job.js'
import {type JobResultKind, processJob} from './lifecycle.js'
import {JobSlots} from './slots.js'

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
  /**
   * One-shot: poll each action type until a poll brings back fewer jobs than it asked for (nothing
   * more waits), finish the jobs taken, return. Transient failures are retried until `deadlineMs`.
   */
  once?: boolean
  /** One-shot: no poll starts after this long (default 5 min); the jobs taken still finish. */
  deadlineMs?: number
  /** One-shot: CodePipeline or a CI server down this long with no success is given up for the run (default 30 s). */
  giveUpAfterMs?: number
  /** The targets' gates, shared with the CI handlers so the run reports what is down (default: the worker's own). */
  gates?: TargetGates
  /** For tests: the jitter source (0 ≤ r < 1). */
  random?: () => number
  /** After the deadline, how long a handler may wind down before "worker stopped" is reported. */
  deadlineGraceMs?: number
  /** Waits between acknowledge and result attempts (tests shorten them). */
  retryBackoff?: BackoffOptions
}

export interface WorkerSummary extends RunOutcome {
  polls: number
  jobs: number
  succeeded: number
  continued: number
  /** Handed back with a continuation token, unfinished, because their CI server was down. */
  held: number
  failed: number
  skipped: number
  /** Jobs whose result could not be delivered to CodePipeline (each a warn or error line). */
  unreported: number
  /** Their ids (the first 100). */
  unreportedJobs: string[]
  pollErrors: number
  throttled: number
  stopped: boolean
  stoppedBy: 'empty' | 'signal' | 'deadline'
  targetsDown: TargetDownReport[]
}

/** CodePipeline's own API, as a target: its gate says whether PollForJobs is down. */
export const CODEPIPELINE = 'codepipeline'
const MAX_LISTED = 100

/** Poll, run, report until stopped (or one pass with `once`). */
export function runWorker(options: WorkerOptions): Promise<WorkerSummary> {
  return new Worker(options).run()
}

/** An action type as the worker polls it. */
interface PolledAction extends WorkerAction {
  key: string
  /** One-shot: its last poll brought back fewer jobs than asked for, or only jobs this run handed back. */
  drained: boolean
}

/**
 * The poll loop (core PollLoop): polls each action type for as many jobs as it has free slots,
 * runs them, polls again at once while jobs come back, and backs off with jitter (idle: pollInterval
 * min → max; failing or throttled: at least 1 s, to max) when none do. CodePipeline's API unwell is
 * its target being down: backed off, never a failed job; a one-shot run gives it up after
 * giveUpAfterMs (exit 3). Errors no retry fixes (an unknown action type, credentials refused
 * before any poll succeeded) stop the worker after the jobs it took are reported.
 */
export class Worker {
  private readonly log: Logger
  private readonly actions: PolledAction[]
  private readonly slots: JobSlots
  private readonly gates: TargetGates
  private readonly loop: PollLoop
  private readonly inFlight = new Set<Promise<void>>()
  /** Aborted stopTimeout after a stop: handlers must end now. */
  private readonly handlerDeadline = new AbortController()
  private readonly summary: Omit<WorkerSummary, 'exitCode' | 'problems' | 'targetsDown'> = {
    polls: 0,
    jobs: 0,
    succeeded: 0,
    continued: 0,
    held: 0,
    failed: 0,
    skipped: 0,
    unreported: 0,
    unreportedJobs: [],
    pollErrors: 0,
    throttled: 0,
    stopped: false,
    stoppedBy: 'empty',
  }
  private readonly runDeadline: number
  private polledOnce = false
  /** What stops the worker for good: an unknown action type, or credentials refused before any poll succeeded. */
  private refusal?: CisternError
  /** Continuation tokens this run handed back: CodePipeline offers those jobs again. */
  private readonly tokens = new Set<string>()
  /** Aborts handlerDeadline stopTimeout after a stop. */
  private stopTimer?: NodeJS.Timeout
  /** The handlers' stop signal when the worker was given none. */
  private readonly neverStopping = new AbortController().signal

  constructor(private readonly options: WorkerOptions) {
    this.log = options.logger
    this.actions = options.actions.map((action) => ({...action, key: actionKey(action.config), drained: false}))
    this.slots = new JobSlots(options.concurrency, new Map(this.actions.map((action) => [action.key, action.config.concurrency])))
    this.gates = options.gates ?? new TargetGates({once: options.once, giveUpAfterMs: options.giveUpAfterMs, log: this.log})
    this.runDeadline = Date.now() + (options.deadlineMs ?? 300_000)
    const minMs = options.pollInterval.min * 1000
    const maxMs = Math.max(options.pollInterval.max * 1000, minMs)
    const random = options.random
    this.loop = new PollLoop((signal) => this.tick(signal), {
      once: options.once,
      signal: options.signal,
      // Nothing came back: min, doubling to max (from 250 ms when min is 0: never a hot loop).
      idleBackoff: {baseMs: Math.max(minMs, 250), maxMs, random},
      // A poll failed or was throttled: at least 1 s, doubling to max.
      backoff: {baseMs: Math.max(minMs, 1000), maxMs, random},
      maxConsecutiveErrors: Number.POSITIVE_INFINITY,
      fatal: (error) => this.isFatal(error),
      log: this.log,
    })
  }

  async run(): Promise<WorkerSummary> {
    const stopping = this.options.signal
    const onStop = () => {
      this.stop()
    }
    if (stopping?.aborted) onStop()
    else stopping?.addEventListener('abort', onStop, {once: true})
    const deadlineTimer = this.options.once ? setTimeout(() => void this.reachDeadline(), Math.max(0, this.runDeadline - Date.now())) : undefined
    let stopError: unknown
    try {
      await this.loop.run()
    } catch (error) {
      stopError = error
    } finally {
      clearTimeout(deadlineTimer)
      // Whatever ended the loop, no job taken is abandoned: each reports a result first.
      while (this.inFlight.size > 0) await Promise.all([...this.inFlight])
      stopping?.removeEventListener('abort', onStop)
      clearTimeout(this.stopTimer)
    }
    if (stopError !== undefined && !this.givenUp(stopError)) throw stopError instanceof Error ? stopError : new CisternError(errorMessage(stopError))
    return this.outcome(stopError)
  }

  /** SIGINT/SIGTERM: no new polls; running handlers finish or hand back a continuation token before stopTimeout. */
  private stop(): void {
    this.summary.stopped = true
    this.summary.stoppedBy = 'signal'
    this.log.info('stopping: no new jobs; running handlers finish or hand back a continuation token', {
      running: this.slots.inUse,
      deadlineSeconds: this.options.stopTimeout,
    })
    this.stopTimer = setTimeout(() => {
      if (this.slots.inUse > 0) this.log.warn('stop deadline reached: stopping running handlers', {running: this.slots.inUse})
      this.handlerDeadline.abort(new CisternError('stop deadline'))
    }, this.options.stopTimeout * 1000)
  }

  /** One-shot: no poll after the deadline; the jobs taken finish. */
  private async reachDeadline(): Promise<void> {
    if (this.summary.stoppedBy === 'signal') return
    this.summary.stoppedBy = 'deadline'
    await this.loop.stop()
  }

  /**
   * Waits for a free slot, then polls each action type that has one. Did work: jobs came back (a
   * loop polls again at once); one-shot: some action type may still have jobs waiting.
   */
  private async tick(signal: AbortSignal): Promise<boolean> {
    // A function, not `signal.aborted` twice: it changes across every await.
    const stopped = () => signal.aborted
    const wanting = this.actions.filter((action) => !action.drained)
    await this.slots.untilFree(
      wanting.map((action) => action.key),
      signal,
    )
    let taken = 0
    let failure: CisternError | undefined
    for (const action of wanting) {
      if (stopped()) return false
      const free = this.slots.free(action.key)
      if (free < 1) continue
      let jobs: Job[]
      try {
        jobs = await this.poll(action, free, signal)
      } catch (error) {
        if (stopped()) return false
        failure ??= this.pollFailed(action, error)
        continue
      }
      const taking = jobs.slice(0, free)
      for (const job of taking) this.start(action, job)
      taken += taking.length
      if (this.options.once && (taking.length < free || taking.every((job) => this.handedBack(job)))) action.drained = true
    }
    if (failure) throw failure
    return this.options.once ? this.actions.some((action) => !action.drained) : taken > 0
  }

  private async poll(action: PolledAction, free: number, signal: AbortSignal): Promise<Job[]> {
    const {PollForJobsCommand} = await import('@aws-sdk/client-codepipeline')
    const {category, owner, provider, version, queryParam} = action.config
    const out = await this.options.client.send(
      new PollForJobsCommand({actionTypeId: {category, owner, provider, version}, maxBatchSize: free, ...(queryParam ? {queryParam} : {})}),
      {abortSignal: signal},
    )
    this.summary.polls++
    this.polledOnce = true
    this.gates.succeeded(CODEPIPELINE)
    const jobs = out.jobs ?? []
    if (jobs.length > free) {
      // Never exceed the limits: jobs not acknowledged go back to CodePipeline.
      this.log.warn('poll returned more jobs than asked for: leaving the extra ones', {actionType: action.key, asked: free, got: jobs.length})
    }
    return jobs
  }

  /**
   * What a failed poll means, as the error the loop backs off on (or stops for): an unknown action
   * type is a config error; refused credentials stop the worker before any poll succeeded and are
   * CodePipeline being down after; throttling, 5xx and no answer are CodePipeline being down.
   */
  private pollFailed(action: PolledAction, error: unknown): CisternError {
    this.summary.pollErrors++
    const kind: AwsErrorKind = classifyAwsError(error)
    if (kind === 'throttled') this.summary.throttled++
    if (kind === 'not-found') {
      this.refusal = new ConfigError(
        `action type ${action.key} does not exist in this account/region: create it (aws codepipeline create-custom-action-type --cli-input-json file://…) or fix the config`,
      )
      return this.refusal
    }
    const failure = awsError(error, {service: 'CodePipeline', action: 'PollForJobs', resource: action.key})
    const refused = kind === 'credentials' || kind === 'access-denied'
    if (refused && !this.polledOnce) {
      this.refusal = failure
      return failure
    }
    this.gates.failed(CODEPIPELINE, failure.message, {credentials: refused})
    // Refused after polls succeeded (a rotated key, a changed policy): CodePipeline is down for this worker; a loop backs off to its cap.
    return refused ? new TargetUnhealthyError(failure.message, failure.fix, error) : failure
  }

  /** Stops the loop at once: no retry fixes it, or a one-shot run has given CodePipeline up. */
  private isFatal(error: unknown): boolean {
    return error === this.refusal || this.gates.givenUp(CODEPIPELINE)
  }

  /** The loop ended because a one-shot run gave CodePipeline up: a problem of the run, not a crash. */
  private givenUp(error: unknown): boolean {
    return this.options.once === true && error !== this.refusal && this.gates.givenUp(CODEPIPELINE)
  }

  private start(action: PolledAction, job: Job): void {
    this.summary.jobs++
    const run = this.slots
      .run(action.key, () =>
        processJob(job, {
          client: this.options.client,
          handler: action.handler,
          logger: this.log.child({actionType: action.key}),
          secretKeys: action.config.secretConfiguration,
          stopping: this.options.signal ?? this.neverStopping,
          deadline: this.handlerDeadline.signal,
          deadlineGraceMs: this.options.deadlineGraceMs,
          resultDeadline: (jobDeadline) => this.resultDeadline(jobDeadline),
          onHandedBack: (token) => this.tokens.add(token),
          retryBackoff: this.options.retryBackoff,
        }),
      )
      .then(
        (kind) => {
          this.count(kind, job)
        },
        (error: unknown) => {
          // processJob reports every job-level problem itself; reaching here is a bug, still logged.
          this.count('unreported', job)
          this.log.error('job processing crashed', {jobId: job.id, error: errorMessage(error)})
        },
      )
      .finally(() => {
        this.inFlight.delete(run)
        this.loop.wake()
      })
    this.inFlight.add(run)
  }

  /**
   * A job this run handed back, offered again (its continuation token is one we sent). A one-shot
   * pass takes it once more but stops polling for it: its CI server may be down or its build long,
   * and the pass would otherwise take it again and again until its deadline.
   */
  private handedBack(job: Job): boolean {
    const token = job.data?.continuationToken
    return token !== undefined && this.tokens.has(token)
  }

  private count(kind: JobResultKind, job: Job): void {
    this.summary[kind]++
    if (kind === 'unreported' && this.summary.unreportedJobs.length < MAX_LISTED) this.summary.unreportedJobs.push(job.id ?? '?')
  }

  /**
   * Until when a job's result is retried: its own deadline; a one-shot run stops at its --deadline,
   * but gives a result that was ready only then at least giveUpAfterMs.
   */
  private resultDeadline(jobDeadline: number): number {
    if (!this.options.once) return jobDeadline
    return Math.min(jobDeadline, Math.max(this.runDeadline, Date.now() + (this.options.giveUpAfterMs ?? 30_000)))
  }

  /** The summary and how the run ends (docs/delivery.md's exit codes). */
  private outcome(stopError: unknown): WorkerSummary {
    const targetsDown = this.gates.down()
    const problems: Problem[] = []
    const {unreported, unreportedJobs} = this.summary
    if (unreported > 0) {
      problems.push({exitCode: 1, line: `${unreported} job result${unreported === 1 ? '' : 's'} not delivered to CodePipeline: ${unreportedJobs.join(', ')} (CodePipeline times those jobs out)`})
    }
    if (this.options.once && this.summary.stoppedBy !== 'signal') problems.push(...this.oneShotProblems(stopError, targetsDown))
    return {...this.summary, targetsDown, ...runOutcome(problems)}
  }

  private oneShotProblems(stopError: unknown, targetsDown: TargetDownReport[]): Problem[] {
    const problems: Problem[] = []
    if (stopError instanceof CisternError) problems.push({exitCode: stopError.exitCode === 0 ? 1 : stopError.exitCode, line: `giving up polling: ${stopError.oneLine}`})
    for (const down of targetsDown) {
      if (down.target === CODEPIPELINE && stopError !== undefined) continue
      const waiting = down.target === CODEPIPELINE ? 'jobs may be waiting' : 'its jobs were handed back to CodePipeline with a continuation token'
      problems.push({exitCode: 3, line: `${down.target} is down: ${down.reason} (${waiting})`})
    }
    const notDrained = this.actions.filter((action) => !action.drained).map((action) => action.key)
    if (this.summary.stoppedBy === 'deadline' && notDrained.length > 0) {
      problems.push({exitCode: 1, line: `stopped polling at the deadline (${seconds(this.options.deadlineMs ?? 300_000)}): more jobs of ${notDrained.join(', ')} may be waiting`})
    }
    return problems
  }
}

