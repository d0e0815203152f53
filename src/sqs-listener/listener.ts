/**
 * The listener: each request message becomes `started` → `working`… → `success`/`failure` on the
 * response queue. The request is deleted only after its final response is sent; while the job
 * runs the shared consumer keeps it invisible (heartbeat). A request_id completed within the
 * window is answered again instead of run again. Bad requests get a `failure` response and go to
 * the dead-letter queue (deleted when the queue has none).
 */
import {consume, type ConsumeResult, type Handler} from '../core/consume.js'
import {dead, delivered, retry, type Outcome} from '../core/delivery.js'
import {errorMessage} from '../core/errors.js'
import {runJob, type JobResult, type JobsConfig} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import type {Queue, QueueMessage} from '../core/queue/types.js'
import {NoDeadLetterQueueError} from '../core/queue/errors.js'
import {encodeResponse, fitMessage, packLines, parseRequest, type BadRequestKind, type Encoding, type Response} from './codec.js'
import {LISTENER_ID_ENV, stopOrphans} from './orphans.js'
import {localOwnerPid, type RequestStore} from './store.js'

export interface ListenerSettings {
  maxConcurrentJobs: number
  visibilityTimeout: number
  pollingIntervalSeconds: number
  jobTimeoutSeconds?: number
  responseEncoding: Encoding
  stopTimeoutSeconds: number
  workingLines: number
  workingIntervalMs: number
  /** Named in "unknown job" failures. */
  jobsPath: string
}

export interface Listener {
  requests: Queue
  responses: Queue
  jobs: JobsConfig
  store: RequestStore
  settings: ListenerSettings
  log: Logger
}

export interface ListenSummary {
  received: number
  succeeded: number
  failed: number
  badRequests: number
  answeredAgain: number
  /** Requests released unfinished at shutdown (another listener runs them). */
  released: number
  /** Copies of a request that was running at the time (deleted: the running copy answers). */
  duplicates: number
  /** Why listen() returned. */
  stoppedBy: ConsumeResult['stoppedBy']
}

export interface ListenOptions {
  once?: boolean
  signal?: AbortSignal
}

/** How long the job gets after SIGTERM before SIGKILL, when it has to be killed. */
const KILL_GRACE_MS = 5_000

export async function listen(listener: Listener, options: ListenOptions = {}): Promise<ListenSummary> {
  const {settings, log} = listener
  const summary: Omit<ListenSummary, 'stoppedBy'> = {received: 0, succeeded: 0, failed: 0, badRequests: 0, answeredAgain: 0, released: 0, duplicates: 0}
  const inner = createHandler(listener, summary)
  // At the stop deadline consume() releases the message and returns without waiting for the
  // handler; the handler still has to kill the job and send "listener stopped": wait for it.
  const running = new Set<Promise<unknown>>()
  const handler: Handler = (message, context) => {
    const promise = inner(message, context)
    running.add(promise)
    const forget = () => running.delete(promise)
    promise.then(forget, forget)
    return promise
  }
  // polling_interval: the long poll waits up to it (a request is picked up at once) and an empty
  // queue is asked once per interval (idleMs waits out the rest, also past SQS's 20 s limit).
  const waitSeconds = Math.min(20, Math.max(1, Math.round(settings.pollingIntervalSeconds)))
  const requests = deadLetterOrDelete(listener.requests, log)
  log.info('listening for job requests', {
    queue: listener.requests.url,
    responses: listener.responses.url,
    jobs: [...listener.jobs.keys()],
    concurrency: settings.maxConcurrentJobs,
  })
  const result = await consume(requests, handler, {
    once: options.once,
    concurrency: settings.maxConcurrentJobs,
    batchSize: Math.min(10, settings.maxConcurrentJobs),
    waitSeconds,
    visibilityTimeout: settings.visibilityTimeout,
    signal: options.signal,
    stopDeadlineMs: settings.stopTimeoutSeconds * 1000,
    idleMs: settings.pollingIntervalSeconds * 1000,
    log,
    // As before the delivery contract (one pass, no deadline) until the listener adopts it.
    onePass: true,
  })
  if (running.size > 0) {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.allSettled([...running]), new Promise((resolve) => (timer = setTimeout(resolve, KILL_GRACE_MS + 10_000)))])
    clearTimeout(timer)
  }
  log.info('listener stopped', {...summary, stoppedBy: result.stoppedBy})
  return {...summary, stoppedBy: result.stoppedBy}
}

export function createHandler(listener: Listener, summary: Omit<ListenSummary, 'stoppedBy'>): Handler {
  const {responses, jobs, store, settings} = listener
  const encoding = settings.responseEncoding
  const maxBytes = responses.capabilities.maxBodyBytes
  const leaseMs = settings.visibilityTimeout * 1000

  const send = (response: Response) => sendBody(responses, encodeResponse(response, encoding))

  const badRequest = async (message: QueueMessage, kind: BadRequestKind, reason: string, jobName: string, requestId: string, log: Logger): Promise<Outcome> => {
    summary.badRequests++
    log.warn(`bad request: ${reason}`, {kind, messageId: message.id, jobName, requestId})
    const base = {job_name: jobName, request_id: requestId, result: 'failure' as const}
    await send({...base, message: fitMessage(base, `Invalid request: ${reason}`, [], encoding, maxBytes)})
    // To the dead-letter queue; deleted when the queue has none (see deadLetterOrDelete).
    return dead(`${kind}: ${reason}`)
  }

  return async (message, context) => {
    summary.received++
    const parsed = parseRequest(message.body)
    const log = context.log
    if (!parsed.ok) return badRequest(message, parsed.kind, parsed.reason, parsed.jobName, parsed.requestId, log)

    const {jobName, requestId, parameters} = parsed.request
    const job = jobs.get(jobName)
    if (!job) return badRequest(message, 'unknown-job', `no job named "${jobName}" in ${settings.jobsPath}`, jobName, requestId, log.child({requestId}))
    const jlog = log.child({job: jobName, requestId})

    const claim = store.claim(requestId, jobName, leaseMs)
    if (claim.kind === 'completed') {
      summary.answeredAgain++
      jlog.info(`request ${requestId} already completed at ${claim.completedAt.toISOString()}: answering again, not running it again`)
      await send(claim.response)
      return delivered()
    }
    if (claim.kind === 'running') {
      // The running copy's message is still in the queue (deleted only after its final response,
      // released if its listener stops or dies), so it answers for both: drop this copy.
      summary.duplicates++
      jlog.info(`request ${requestId} is already running (${claim.owner}): this copy is deleted, the running one answers`)
      return delivered()
    }

    // Taking over from a listener on this host that died (kill -9) or passed its stop deadline:
    // its job may still be running (or dying). Stop it first so the two runs never overlap.
    if (claim.takenOverFrom && localOwnerPid(claim.takenOverFrom) !== undefined) {
      await stopOrphans(claim.takenOverFrom, requestId, jlog, KILL_GRACE_MS)
    }

    const base = {job_name: jobName, request_id: requestId}
    try {
      await send({...base, result: 'started', message: 'Request has been received and the job is in progress.'})
    } catch (error) {
      store.release(requestId)
      throw error
    }
    jlog.info(`job ${jobName} started`, {parameters: parameters.length})
    const renewal = setInterval(() => {
      try {
        store.renew(requestId, leaseMs)
      } catch (error) {
        jlog.warn(`could not renew the claim on ${requestId}: ${errorMessage(error)}`)
      }
    }, Math.max(1000, leaseMs / 3))
    // consume() aborts this at the stop deadline and releases the message right after, before the
    // job is dead and "listener stopped" sent: give the claim up now (synchronously), so a listener
    // receiving the message takes it over instead of dropping it as a duplicate of a running request.
    const onStop = () => {
      clearInterval(renewal)
      store.expire(requestId)
    }
    context.signal.addEventListener('abort', onStop, {once: true})
    const working = new WorkingBatcher({...base, result: 'working'}, encoding, maxBytes, settings.workingLines, settings.workingIntervalMs, send, jlog)

    let result: JobResult
    try {
      result = await runJob(job, {
        parameters,
        env: {CISTERN_REQUEST_ID: requestId, CISTERN_JOB_NAME: jobName, [LISTENER_ID_ENV]: store.owner},
        timeoutSeconds: job.timeoutSeconds ?? settings.jobTimeoutSeconds,
        signal: context.signal,
        killGraceMs: KILL_GRACE_MS,
        onLine: (line) => {
          jlog.debug(line)
          working.push(line)
        },
      })
    } catch (error) {
      result = {exitCode: null, timedOut: false, aborted: false, lastLines: [], durationMs: 0, startError: errorMessage(error)}
    } finally {
      clearInterval(renewal)
      context.signal.removeEventListener('abort', onStop)
    }
    await working.close()

    if (result.aborted || (context.signal.aborted && result.exitCode !== 0)) {
      summary.released++
      const head = `Job ${jobName} failed: listener stopped — the job was killed after the ${settings.stopTimeoutSeconds} s stop deadline; the request is released for another listener to run again.`
      jlog.warn(head)
      try {
        await send({...base, result: 'failure', message: fitMessage({...base, result: 'failure'}, head, result.lastLines, encoding, maxBytes)})
      } finally {
        store.release(requestId)
      }
      return retry('listener stopped', 0)
    }

    const final = finalResponse(jobName, requestId, result, encoding, maxBytes)
    if (final.result === 'success') summary.succeeded++
    else summary.failed++
    jlog.info(`job ${jobName} ${final.result}`, {exitCode: result.exitCode, durationMs: result.durationMs})
    // Remember the answer before sending it: a crash between the two answers again, never reruns.
    store.complete(requestId, final)
    await send(final)
    return delivered()
  }
}

/** What happened, in one sentence, then the job's last lines. */
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

/**
 * Job output → `working` responses: a batch goes out every `intervalMs` or at `maxLines` lines,
 * split so each message fits the response queue; one sender sends them in order. When the job
 * writes faster than the queue takes messages, waiting batches are merged into as few full-size
 * messages as fit, and past `maxBacklogBytes` the oldest waiting lines are skipped (said so in
 * the output): progress is best effort, the final response still carries the last lines.
 */
export class WorkingBatcher {
  private pending: string[] = []
  private timer?: NodeJS.Timeout
  private readonly waiting: string[][] = []
  private waitingBytes = 0
  private skipped = 0
  private sender?: Promise<void>

  constructor(
    private readonly base: Omit<Response, 'message'>,
    private readonly encoding: Encoding,
    private readonly maxBytes: number,
    private readonly maxLines: number,
    private readonly intervalMs: number,
    private readonly send: (response: Response) => Promise<void>,
    private readonly log: Logger,
    private readonly maxBacklogBytes = 8 * 1024 * 1024,
  ) {}

  push(line: string): void {
    this.pending.push(line)
    if (this.pending.length >= this.maxLines) this.flush()
    else this.timer ??= setTimeout(() => this.flush(), this.intervalMs)
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (this.pending.length === 0) return
    const batch = this.pending.splice(0)
    this.waiting.push(batch)
    this.waitingBytes += batch.reduce((sum, line) => sum + line.length, 0)
    while (this.waitingBytes > this.maxBacklogBytes && this.waiting.length > 0) {
      const oldest = this.waiting[0]
      const line = oldest.shift() as string
      this.waitingBytes -= line.length
      this.skipped++
      if (oldest.length === 0) this.waiting.shift()
    }
    this.kick()
  }

  private kick(): void {
    if (this.sender) return
    this.sender = this.drain().finally(() => {
      this.sender = undefined
      if (this.waiting.length > 0) this.kick()
    })
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      // Normally one batch at a time (messages of maxLines lines); a backlog is merged.
      const batches = this.waiting.length >= 10 ? this.waiting.splice(0) : this.waiting.splice(0, 1)
      const lines = batches.flat()
      this.waitingBytes -= lines.reduce((sum, line) => sum + line.length, 0)
      if (this.skipped > 0) {
        lines.unshift(`[… ${this.skipped} output line(s) skipped: the job wrote faster than the response queue took them]`)
        this.log.warn(`${this.skipped} output line(s) not sent as working responses (backlog)`)
        this.skipped = 0
      }
      for (const message of packLines(this.base, lines, this.encoding, this.maxBytes)) {
        try {
          await this.send({...this.base, message})
        } catch (error) {
          // Progress is best effort: the final response still says how the job ended.
          this.log.warn(`could not send a working response: ${errorMessage(error)}`)
        }
      }
    }
  }

  async close(): Promise<void> {
    this.flush()
    while (this.sender) await this.sender
  }
}

/** Send with a few quick retries: a response lost to a blip would leave the requester waiting. */
async function sendBody(queue: Queue, body: string, attempts = 3): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await queue.send({body})
      return
    } catch (error) {
      if (attempt >= attempts) throw error
      await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt))
    }
  }
}

/**
 * A bad request left in a queue without a dead-letter queue would come back after every
 * visibility timeout and be answered again forever: delete it instead (logged with its body).
 */
function deadLetterOrDelete(queue: Queue, log: Logger): Queue {
  return new Proxy(queue, {
    get(target, property) {
      if (property === 'deadLetter') {
        return async (message: QueueMessage, reason: string) => {
          // No dead-letter queue: the queue layer refuses (NoDeadLetterQueueError); this piece deletes.
          const where = await target.deadLetter(message, reason).catch((error: unknown) => {
            if (error instanceof NoDeadLetterQueueError) return 'redrive-policy' as const
            throw error
          })
          if (where === 'redrive-policy') {
            log.warn('the request queue has no dead-letter queue: the bad request is deleted', {messageId: message.id, body: message.body.slice(0, 2000)})
            await target.delete(message.receiptHandle)
          }
          return where
        }
      }
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}
