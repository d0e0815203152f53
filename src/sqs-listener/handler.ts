/**
 * One request, from its message to its outcome (docs/delivery.md): read it, find its job, claim
 * its request_id, run the job while answering started → working… → success/failure, and tell the
 * consumer what to do with the message:
 * - a job that ran is a delivered request, whatever its exit code (a failing job is answered
 *   `failure`, as Bang! did; it is not retried);
 * - a bad request (not YAML, an unknown job…) is answered `failure` and goes dead, loudly, labelled
 *   with its request_id;
 * - a job killed by the shutdown is released (never counted as an attempt);
 * - a response the response queue does not take in time leaves the request in the queue (target
 *   down); a final response is kept in the state database first, so the request is then answered
 *   again, not run again.
 */
import type {HandlerContext} from '../core/consume.js'
import {type Outcome, dead, delivered, released, stop, targetDown} from '../core/delivery.js'
import {CisternError, ExitCode, errorMessage} from '../core/errors.js'
import {runJob, type JobResult, type JobSpec, type JobsConfig} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import type {QueueMessage} from '../core/queue/types.js'
import {maskSecrets} from '../core/secrets.js'
import {parseRequest, type BadRequestKind, type JobRequest, type Response} from './codec.js'
import {LISTENER_ID_ENV, stopOrphans} from './orphans.js'
import {RESPONSE_QUEUE, ResponseNotDeliveredError, STARTED_MESSAGE, finalResponse, type Responder} from './responder.js'
import {localOwnerPid, type RequestStore} from './store.js'

/** How long a job gets after SIGTERM before SIGKILL, when it has to be killed. */
export const KILL_GRACE_MS = 5_000

/** At most this many failed request ids are named in a run's result. */
const MAX_LISTED = 100

export interface HandlerSettings {
  visibilityTimeout: number
  jobTimeoutSeconds?: number
  stopTimeoutSeconds: number
  workingLines: number
  workingIntervalMs: number
  /** Named in "unknown job" failures. */
  jobsPath: string
}

/** What the handler saw, for the run's result. */
export interface RequestTally {
  succeeded: number
  failed: number
  /** The request ids of jobs answered `failure` (the first 100). */
  failedRequests: string[]
  badRequests: number
  answeredAgain: number
  /** Copies of a request that was running at the time (deleted: the running copy answers). */
  duplicates: number
  /** Responses given up on (the request stayed queued, or a working response was skipped). */
  responsesNotDelivered: number
}

export function emptyTally(): RequestTally {
  return {succeeded: 0, failed: 0, failedRequests: [], badRequests: 0, answeredAgain: 0, duplicates: 0, responsesNotDelivered: 0}
}

interface BadRequest {
  kind: BadRequestKind
  reason: string
  jobName: string
  requestId: string
}

export class RequestHandler {
  readonly tally = emptyTally()
  private readonly leaseMs: number

  constructor(
    private readonly jobs: JobsConfig,
    private readonly store: RequestStore,
    private readonly responder: Responder,
    private readonly settings: HandlerSettings,
  ) {
    this.leaseMs = settings.visibilityTimeout * 1000
  }

  /** The consumer's handler. */
  readonly handle = async (message: QueueMessage, context: HandlerContext): Promise<Outcome> => {
    const parsed = parseRequest(message.body)
    if (!parsed.ok) return this.answering(context, () => this.refuse(parsed, context))
    const {jobName, requestId} = parsed.request
    context.setLabel(label(requestId, jobName))
    const job = this.jobs.get(jobName)
    if (!job) {
      const reason = `no job named "${jobName}" in ${this.settings.jobsPath}`
      return this.answering(context, () => this.refuse({kind: 'unknown-job', reason, jobName, requestId}, context))
    }
    return this.answering(context, () => this.claimAndRun(job, parsed.request, context))
  }

  /** A response that could not be delivered is the response queue's fault, not the request's. */
  private async answering(context: HandlerContext, work: () => Promise<Outcome>): Promise<Outcome> {
    try {
      return await work()
    } catch (error) {
      if (error instanceof ResponseNotDeliveredError) {
        this.tally.responsesNotDelivered++
        context.log.warn(error.oneLine)
        return targetDown(RESPONSE_QUEUE, error.message)
      }
      // No such response queue, credentials refused: nothing can be answered.
      if (error instanceof CisternError && error.exitCode === ExitCode.usage) return stop(error)
      throw error
    }
  }

  /** Answered `failure` ("Invalid request: …"), then dead. */
  private async refuse(bad: BadRequest, context: HandlerContext): Promise<Outcome> {
    const base = {job_name: bad.jobName, request_id: bad.requestId, result: 'failure' as const}
    await this.responder.send(this.responder.compose(base, `Invalid request: ${bad.reason}`), context.signal)
    this.tally.badRequests++
    // The reason may quote the request: it goes to the dead-letter queue's attributes as it is.
    return {...dead(maskSecrets(`${bad.kind}: ${bad.reason}`)), label: label(bad.requestId, bad.jobName)}
  }

  private async claimAndRun(job: JobSpec, request: JobRequest, context: HandlerContext): Promise<Outcome> {
    const {requestId, jobName} = request
    const log = context.log.child({job: jobName, requestId})
    const claim = this.store.claim(requestId, jobName, this.leaseMs)
    if (claim.kind === 'completed') {
      log.info(`request ${requestId} already completed at ${claim.completedAt.toISOString()}: answering again, not running it again`)
      await this.responder.send(claim.response, context.signal)
      this.tally.answeredAgain++
      return delivered()
    }
    if (claim.kind === 'running') {
      // The running copy's message is still in the queue (deleted only after its final response,
      // released if its listener stops or dies), so it answers for both: drop this copy.
      this.tally.duplicates++
      log.info(`request ${requestId} is already running (${claim.owner}): this copy is deleted, the running one answers`)
      return delivered()
    }
    // Taking over from a listener on this host that died (kill -9) or passed its stop deadline:
    // its job may still be running (or dying). Stop it first so the two runs never overlap.
    if (claim.takenOverFrom && localOwnerPid(claim.takenOverFrom) !== undefined) {
      await stopOrphans(claim.takenOverFrom, requestId, log, KILL_GRACE_MS)
    }
    const base = {job_name: jobName, request_id: requestId}
    try {
      await this.responder.send({...base, result: 'started', message: STARTED_MESSAGE}, context.signal)
    } catch (error) {
      this.store.release(requestId)
      throw error
    }
    const result = await this.run(job, request, context.signal, log)
    if (result.aborted || (context.signal.aborted && result.exitCode !== 0)) return this.stopped(base, result, context.signal, log)
    return this.finish(base, result, context.signal, log)
  }

  /** The job, its output lines sent as working responses, its claim renewed while it runs. */
  private async run(job: JobSpec, request: JobRequest, signal: AbortSignal, log: Logger): Promise<JobResult> {
    const {requestId, jobName, parameters} = request
    log.info(`job ${jobName} started`, {parameters: parameters.length})
    const claim = new ClaimLease(this.store, requestId, this.leaseMs, signal, log)
    const working = this.responder.working({job_name: jobName, request_id: requestId}, {lines: this.settings.workingLines, intervalMs: this.settings.workingIntervalMs}, signal, log)
    let result: JobResult
    try {
      result = await runJob(job, {
        parameters,
        env: {CISTERN_REQUEST_ID: requestId, CISTERN_JOB_NAME: jobName, [LISTENER_ID_ENV]: this.store.owner},
        timeoutSeconds: job.timeoutSeconds ?? this.settings.jobTimeoutSeconds,
        signal,
        killGraceMs: KILL_GRACE_MS,
        onLine: (line) => {
          log.debug(line)
          working.push(line)
        },
      })
    } catch (error) {
      result = {exitCode: null, timedOut: false, aborted: false, lastLines: [], durationMs: 0, startError: errorMessage(error)}
    } finally {
      claim.end()
    }
    await working.close()
    return result
  }

  /** The job ended: its final response is remembered before it is sent (a crash between the two answers again, never reruns). */
  private async finish(base: Omit<Response, 'message' | 'result'>, result: JobResult, signal: AbortSignal, log: Logger): Promise<Outcome> {
    const final = finalResponse(base.job_name, base.request_id, result, this.responder.encoding, this.responder.maxBytes)
    if (final.result === 'success') this.tally.succeeded++
    else {
      this.tally.failed++
      if (this.tally.failedRequests.length < MAX_LISTED) this.tally.failedRequests.push(base.request_id)
    }
    log.info(`job ${base.job_name} ${final.result}`, {exitCode: result.exitCode, durationMs: result.durationMs})
    this.store.complete(base.request_id, final)
    await this.responder.send(final, signal)
    return delivered()
  }

  /** Killed at the stop deadline: answered `failure` "listener stopped", the claim given up, the request released. */
  private async stopped(base: Omit<Response, 'message' | 'result'>, result: JobResult, signal: AbortSignal, log: Logger): Promise<Outcome> {
    const head = `Job ${base.job_name} failed: listener stopped — the job was killed after the ${this.settings.stopTimeoutSeconds} s stop deadline; the request is released for another listener to run again.`
    log.warn(head)
    try {
      // One attempt (the signal is aborted): the listener is on its way out.
      await this.responder.send(this.responder.compose({...base, result: 'failure'}, head, result.lastLines), signal)
    } catch (error) {
      this.tally.responsesNotDelivered++
      log.warn(`could not send the "listener stopped" response: ${errorMessage(error)}`)
    } finally {
      this.store.release(base.request_id)
    }
    return released('listener stopped')
  }
}

/** "request r-1 (job deploy)": how the consumer's lines (a dead letter's included) name a request. */
function label(requestId: string, jobName: string): string {
  return `request ${requestId} (job ${jobName})`
}

/**
 * The claim on a running request, renewed at a third of its lease while the job runs. At the stop
 * deadline the consumer releases the message before the job is dead and answered: the claim is let
 * lapse at once (synchronously), so a listener receiving the message takes the request over (stopping
 * what is left of the job first) instead of dropping it as a copy of a running request.
 */
class ClaimLease {
  private readonly renewal: NodeJS.Timeout
  private readonly onStop = () => {
    clearInterval(this.renewal)
    this.store.expire(this.requestId)
  }

  constructor(
    private readonly store: RequestStore,
    private readonly requestId: string,
    leaseMs: number,
    private readonly signal: AbortSignal,
    log: Logger,
  ) {
    this.renewal = setInterval(() => {
      try {
        store.renew(requestId, leaseMs)
      } catch (error) {
        log.warn(`could not renew the claim on ${requestId}: ${errorMessage(error)}`)
      }
    }, Math.max(1000, leaseMs / 3))
    signal.addEventListener('abort', this.onStop, {once: true})
  }

  end(): void {
    clearInterval(this.renewal)
    this.signal.removeEventListener('abort', this.onStop)
  }
}
