/**
 * Responses are delivered (docs/delivery.md): each one leaves masked, in the configured encoding,
 * sized to fit the response queue, and a send the queue refuses for now (throttled, failing,
 * unreachable) is retried with back-off (core retryUntil) until it is delivered, its deadline
 * passes, the run stops, or a one-shot run gives the response queue up. The response queue is the
 * listener's one target: its gate closes while sends fail, and the consumer receives no new
 * request until it opens again.
 */
import {createHash, randomUUID} from 'node:crypto'

import type {TargetGates} from '../core/delivery.js'
import {CisternError, ExitCode, TargetUnhealthyError, errorMessage} from '../core/errors.js'
import type {JobResult} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import {type BackoffOptions, seconds} from '../core/loop.js'
import type {Queue, SendInput} from '../core/queue/types.js'
import {GaveUpError, retryUntil} from '../core/retry.js'
import {maskSecrets} from '../core/secrets.js'
import {encodeResponse, fitMessage, type Encoding, type Response} from './codec.js'
import {WorkingBatcher} from './working.js'

/** The gate key of the response queue (in "N remaining (response-queue is down: …)"). */
export const RESPONSE_QUEUE = 'response-queue'

/** How long a response is retried in-process before its request is handed back (default). */
export const RESPONSE_DEADLINE_MS = 5 * 60_000
/** Progress is best effort: a working response is retried this long while the queue is well, tried once while it is down. */
const WORKING_DEADLINE_MS = 30_000

export const STARTED_MESSAGE = 'Request has been received and the job is in progress.'

/** A response given up on: its request stays in the queue (released), the final response kept in the state database. Exit 3. */
export class ResponseNotDeliveredError extends TargetUnhealthyError {
  constructor(
    readonly response: Pick<Response, 'request_id' | 'result'>,
    cause: unknown,
  ) {
    super(
      `the ${response.result} response for request ${response.request_id} was not delivered: ${errorMessage(cause instanceof GaveUpError ? cause.lastError : cause)}`,
      'the request stays in the queue and is answered when it is received again',
      cause,
    )
    this.name = 'ResponseNotDeliveredError'
  }
}

export interface ResponderOptions {
  encoding: Encoding
  /** The run's target gates (shared with the consumer). */
  gates: TargetGates
  log: Logger
  /** In-process retries of one response end this long after its first attempt (default 5 min). */
  deadlineMs?: number
  /** Waits between attempts (default: core retryUntil's, 1 s doubling to 30 s). */
  backoff?: BackoffOptions
}

export class Responder {
  /** The largest body the response queue takes: every response is fitted to it. */
  readonly maxBytes: number
  private readonly deadlineMs: number

  constructor(
    private readonly queue: Queue,
    private readonly options: ResponderOptions,
  ) {
    this.maxBytes = queue.capabilities.maxBodyBytes
    this.deadlineMs = options.deadlineMs ?? RESPONSE_DEADLINE_MS
  }

  get encoding(): Encoding {
    return this.options.encoding
  }

  /** A response of a head sentence and as many trailing lines as fit, secrets masked before it is sized. */
  compose(base: Omit<Response, 'message'>, head: string, tail: readonly string[] = []): Response {
    const message = fitMessage(base, maskSecrets(head), tail.map((line) => maskSecrets(line)), this.options.encoding, this.maxBytes)
    return {...base, message}
  }

  /**
   * Sends until delivered. Throws ResponseNotDeliveredError when it gives up (deadline, stopping,
   * the one-shot run gave the response queue up), and a usage error (exit 2: no such queue) at once.
   */
  async send(response: Response, signal?: AbortSignal, deadlineMs = this.deadlineMs): Promise<void> {
    const {gates, log} = this.options
    const input = this.input(response)
    try {
      await retryUntil(() => this.queue.send(input), {
        deadline: Date.now() + deadlineMs,
        signal,
        backoff: this.options.backoff,
        shouldRetry: (error) => !isUsageError(error) && !gates.givenUp(RESPONSE_QUEUE),
        onRetry: ({error, delayMs}) => {
          gates.failed(RESPONSE_QUEUE, errorMessage(error))
          log.debug(`${response.result} response for request ${response.request_id} not sent yet; retrying in ${seconds(delayMs)}`, {error: errorMessage(error)})
        },
      })
    } catch (error) {
      if (isUsageError(error)) throw error
      gates.failed(RESPONSE_QUEUE, errorMessage(error instanceof GaveUpError ? error.lastError : error))
      throw new ResponseNotDeliveredError(response, error)
    }
    gates.succeeded(RESPONSE_QUEUE)
  }

  /** A working response: retried for a while when the queue is well, tried once while it is down. */
  sendWorking(response: Response, signal?: AbortSignal): Promise<void> {
    return this.send(response, signal, this.options.gates.isDown(RESPONSE_QUEUE) ? 0 : WORKING_DEADLINE_MS)
  }

  /** The batcher that turns a job's output lines into working responses. */
  working(base: Omit<Response, 'message' | 'result'>, batching: {lines: number; intervalMs: number}, signal: AbortSignal, log: Logger): WorkingBatcher {
    const send = (response: Response) => this.sendWorking(response, signal)
    return new WorkingBatcher({...base, result: 'working'}, this.options.encoding, this.maxBytes, batching.lines, batching.intervalMs, send, log)
  }

  /**
   * The body, masked field by field before it is encoded (masking YAML text afterwards could turn a
   * value into `[redacted]`, a YAML list). On a FIFO queue each request's responses share a group
   * (in order), and one id per response makes a retried send idempotent.
   */
  private input(response: Response): SendInput {
    const masked: Response = {
      job_name: maskSecrets(response.job_name),
      request_id: maskSecrets(response.request_id),
      result: response.result,
      message: maskSecrets(response.message),
    }
    const body = encodeResponse(masked, this.options.encoding)
    if (!this.queue.capabilities.fifo) return {body}
    return {body, groupId: groupIdOf(masked.request_id), deduplicationId: randomUUID()}
  }
}

/** SQS takes 1–128 printable ASCII characters as a group id: the request_id when it is one, else its hash. */
function groupIdOf(requestId: string): string {
  return /^[\x21-\x7e]{1,128}$/.test(requestId) ? requestId : createHash('sha256').update(requestId).digest('hex')
}

function isUsageError(error: unknown): error is CisternError {
  return error instanceof CisternError && error.exitCode === ExitCode.usage
}

// --- the responses ---------------------------------------------------------------------------------

/** What happened to the job, in one sentence, then its last lines. */
export function finalResponse(jobName: string, requestId: string, result: JobResult, encoding: Encoding, maxBytes: number): Response {
  const seconds = `${(result.durationMs / 1000).toFixed(1)} s`
  let head: string
  let ok = false
  if (result.startError) head = `Job ${jobName} failed: could not start: ${result.startError}`
  else if (result.timedOut) head = `Job ${jobName} failed: timed out after ${seconds} and was killed${result.signal ? ` (${result.signal})` : ''}.`
  else if (result.exitCode === 0) {
    ok = true
    head = `Job ${jobName} succeeded (exit code 0) in ${seconds}.`
  } else if (result.exitCode === null) head = `Job ${jobName} failed: killed by signal ${result.signal ?? 'unknown'} after ${seconds}.`
  else head = `Job ${jobName} failed with exit code ${result.exitCode} after ${seconds}.`
  const tail = result.lastLines.length > 0 ? ['Last output lines:', ...result.lastLines] : []
  const base = {job_name: jobName, request_id: requestId, result: ok ? ('success' as const) : ('failure' as const)}
  return {...base, message: fitMessage(base, head, tail, encoding, maxBytes)}
}
