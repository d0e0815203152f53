import type {CodePipelineClient, Job} from '@aws-sdk/client-codepipeline'

import {awsErrorName, isTransientAwsError} from '../core/aws.js'
import {errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {type BackoffOptions, seconds} from '../core/loop.js'
import {GaveUpError, retryUntil} from '../core/retry.js'
import {type ActionHandler, type HandlerOutcome, type JobContext, type RunContextOptions, jobContext} from './job.js'
import {type ResultRequest, failureFromError, resultRequest} from './result.js'

/**
 * One job's lifecycle: acknowledge → run the handler (only when InProgress) → deliver exactly one
 * result (docs/delivery.md, "Results are delivered": a result CodePipeline throttles or fails is
 * retried with back-off until it is delivered or the job's deadline passes).
 */

/**
 * How long CodePipeline waits for a custom action before it times the action out (its quotas page:
 * "custom actions: 24 hours"). A result is worth retrying until then; after it, CodePipeline
 * answers InvalidJobStateException, which is not retried.
 */
export const JOB_TIMEOUT_MS = 24 * 60 * 60 * 1000
/** A transient acknowledge failure is retried this long; then the job is left for CodePipeline to offer again. */
export const ACKNOWLEDGE_RETRY_MS = 30_000

/**
 * What became of a job: a result delivered (succeeded, continued, held: handed back with a
 * continuation token because its CI server is down, failed), not ours (skipped), or a result that
 * could not be delivered (unreported).
 */
export type JobResultKind = 'succeeded' | 'continued' | 'held' | 'failed' | 'skipped' | 'unreported'

export interface ProcessJobOptions extends RunContextOptions {
  client: Pick<CodePipelineClient, 'send'>
  handler: ActionHandler
  /** After the deadline, how long a handler may take to wind down before "worker stopped" is reported. */
  deadlineGraceMs?: number
  /** When to stop retrying the result, given the job's own deadline (a one-shot run may cut it shorter). Default: the job's deadline. */
  resultDeadline?: (jobDeadline: number) => number
  /** Told each continuation token CodePipeline took (the job will be offered again with it). */
  onHandedBack?: (token: string) => void
  /** Waits between result attempts (default 1 s doubling to 30 s, with jitter). */
  retryBackoff?: BackoffOptions
}

/** Acknowledge, run, report one job; resolves with what happened and never throws for a job-level problem. */
export function processJob(job: Job, options: ProcessJobOptions): Promise<JobResultKind> {
  return new JobRun(job, options).process()
}

type Sdk = typeof import('@aws-sdk/client-codepipeline')

class JobRun {
  private readonly log: Logger

  constructor(
    private readonly job: Job,
    private readonly options: ProcessJobOptions,
  ) {
    this.log = options.logger.child({jobId: job.id})
  }

  async process(): Promise<JobResultKind> {
    const {id, nonce} = this.job
    if (!id || !nonce) {
      this.log.warn('poll returned a job without id or nonce: skipped')
      return 'skipped'
    }
    const sdk = await import('@aws-sdk/client-codepipeline')
    const context = jobContext({...this.job, id}, {...this.options, logger: this.log})
    const acknowledgedAt = Date.now()
    if (!(await this.acknowledge(sdk, id, nonce, context.logger))) return 'skipped'

    context.logger.info(context.continuationToken ? 'continuing job' : 'running job', {pipeline: context.pipelineName, stage: context.stageName, action: context.actionName})
    const outcome = await this.runHandler(context)
    const request = this.request(id, outcome, context.secrets)
    if (!(await this.deliver(sdk, request, acknowledgedAt + JOB_TIMEOUT_MS, context.logger))) return 'unreported'
    return this.delivered(request, outcome, context.logger)
  }

  /** True when the job is ours to run: acknowledged and InProgress. */
  private async acknowledge(sdk: Sdk, jobId: string, nonce: string, log: Logger): Promise<boolean> {
    try {
      const ack = await retryUntil(() => this.options.client.send(new sdk.AcknowledgeJobCommand({jobId, nonce})), {
        deadline: Date.now() + ACKNOWLEDGE_RETRY_MS,
        signal: this.options.stopping,
        shouldRetry: isTransientAwsError,
        backoff: this.options.retryBackoff,
        onRetry: ({error, delayMs}) => {
          log.debug(`acknowledge failed; retrying in ${seconds(delayMs)}`, {error: errorMessage(error)})
        },
      })
      if (ack.status === 'InProgress') return true
      log.debug('job not in progress after acknowledge: skipped', {status: ack.status})
    } catch (error) {
      if (awsErrorName(error) === 'InvalidNonceException') log.debug('job taken by another worker (invalid nonce): skipped')
      else log.warn('acknowledge failed: skipped (CodePipeline will offer the job again)', {error: errorMessage(error)})
    }
    return false
  }

  /** The handler's outcome; an exception is a failure, and a handler ignoring the stop deadline is cut off. */
  private async runHandler(context: JobContext): Promise<HandlerOutcome> {
    const graceMs = this.options.deadlineGraceMs ?? 5000
    let timer: NodeJS.Timeout | undefined
    let onDeadline: (() => void) | undefined
    const cutOff = new Promise<HandlerOutcome>((resolve) => {
      onDeadline = () => {
        timer = setTimeout(() => {
          resolve({status: 'failed', type: 'JobFailed', message: 'worker stopped before the action finished'})
        }, graceMs)
      }
      if (context.deadline.aborted) onDeadline()
      else context.deadline.addEventListener('abort', onDeadline, {once: true})
    })
    try {
      return await Promise.race([this.options.handler.run(context).catch((error: unknown) => failureFromError(error, context.secrets)), cutOff])
    } finally {
      if (timer) clearTimeout(timer)
      if (onDeadline) context.deadline.removeEventListener('abort', onDeadline)
    }
  }

  /** The request for the outcome; an outcome that breaks the rules (a token too long) becomes a failure. */
  private request(jobId: string, outcome: HandlerOutcome, secrets: readonly string[]): ResultRequest {
    try {
      return resultRequest(jobId, outcome, secrets)
    } catch (error) {
      return resultRequest(jobId, failureFromError(error, secrets), secrets)
    }
  }

  /**
   * Sends the result until CodePipeline takes it. Throttling, a 5xx or no answer is retried with
   * back-off until the job's deadline (or the worker's stop deadline); giving up is a warn line and
   * an unreported job. A refusal (the job timed out, is unknown) is not retried: an error line.
   */
  private async deliver(sdk: Sdk, request: ResultRequest, jobDeadline: number, log: Logger): Promise<boolean> {
    const send = () =>
      request.kind === 'success'
        ? this.options.client.send(new sdk.PutJobSuccessResultCommand(request.input))
        : this.options.client.send(new sdk.PutJobFailureResultCommand(request.input))
    const deadline = this.options.resultDeadline?.(jobDeadline) ?? jobDeadline
    try {
      await retryUntil(send, {
        deadline,
        signal: this.options.deadline,
        shouldRetry: isTransientAwsError,
        backoff: this.options.retryBackoff,
        onRetry: ({error, attempt, delayMs}) => {
          log.warn(`job result not delivered yet; retrying in ${seconds(delayMs)}`, {result: request.kind, attempt, error: errorMessage(error)})
        },
      })
      return true
    } catch (error) {
      if (error instanceof GaveUpError) {
        log.warn(`job result not delivered: giving up ${error.why === 'deadline' ? 'at its deadline' : 'as the worker stops'}`, {
          result: request.kind,
          attempts: error.attempts,
          error: errorMessage(error.lastError),
        })
      } else {
        log.error('reporting the job result failed', {error: errorMessage(error), result: request.kind})
      }
      return false
    }
  }

  private delivered(request: ResultRequest, outcome: HandlerOutcome, log: Logger): JobResultKind {
    if (request.kind === 'failure') {
      log.warn('job failed', {type: request.input.failureDetails?.type, message: request.input.failureDetails?.message})
      return 'failed'
    }
    if (request.input.continuationToken) {
      this.options.onHandedBack?.(request.input.continuationToken)
      const heldFor = outcome.status === 'inProgress' ? outcome.heldFor : undefined
      const percentComplete = request.input.executionDetails?.percentComplete
      log.info(heldFor ? `job handed back: ${heldFor} is down` : 'job continues', percentComplete === undefined ? {} : {percentComplete})
      return heldFor ? 'held' : 'continued'
    }
    log.info('job succeeded', {summary: request.input.executionDetails?.summary})
    return 'succeeded'
  }
}
