/**
 * The listener: the one consumer (core consume, docs/delivery.md) over the request queue, each
 * request handled by a RequestHandler, the response queue as its one target. A request is deleted
 * only after its final response is sent; while its job runs the consumer keeps it invisible
 * (heartbeat). `--once` finishes what it can do now and ends as the contract says.
 */
import {consume, type ConsumeResult, type Handler} from '../core/consume.js'
import {type TargetDownReport, TargetGates} from '../core/delivery.js'
import {type Problem, type RunOutcome, mostSpecificExitCode} from '../core/errors.js'
import type {JobsConfig} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import {type BackoffOptions, sleep} from '../core/loop.js'
import type {Queue} from '../core/queue/types.js'
import type {Encoding} from './codec.js'
import {type HandlerSettings, KILL_GRACE_MS, RequestHandler, type RequestTally} from './handler.js'
import {RESPONSE_QUEUE, Responder} from './responder.js'
import type {RequestStore} from './store.js'

export interface ListenerSettings extends HandlerSettings {
  maxConcurrentJobs: number
  pollingIntervalSeconds: number
  responseEncoding: Encoding
  /** In-process retries of one response (default 5 min) and their back-off (tests shorten them). */
  responseDeadlineMs?: number
  responseBackoff?: BackoffOptions
}

export interface Listener {
  requests: Queue
  responses: Queue
  jobs: JobsConfig
  store: RequestStore
  settings: ListenerSettings
  log: Logger
}

export interface ListenOptions {
  once?: boolean
  signal?: AbortSignal
  /** One-shot: stop receiving this long after the start (default 5 minutes). */
  deadlineMs?: number
  /** One-shot: give the response queue up after it failed this long with no success (default 30 s). */
  giveUpAfterMs?: number
}

/** What a run did, and how it ended (docs/delivery.md's exit codes, and failed jobs for --once). */
export interface ListenResult extends RequestTally, RunOutcome {
  /** Requests handed to the handler. */
  received: number
  /** Handed back never attempted: jobs killed by a shutdown, requests whose responses could not go out. */
  released: number
  /** Dead letters (bad requests, and requests whose attempts ran out). */
  dead: number
  deadLetters: ConsumeResult['deadLetters']
  /** Requests left in the queue after the run; -1 when the queue cannot tell. */
  remaining: number
  heldUntil?: string
  targetsDown: TargetDownReport[]
  stoppedBy: ConsumeResult['stoppedBy']
}

export async function listen(listener: Listener, options: ListenOptions = {}): Promise<ListenResult> {
  const {settings, log} = listener
  const once = options.once ?? false
  const gates = new TargetGates({once, giveUpAfterMs: options.giveUpAfterMs, log})
  const responder = new Responder(listener.responses, {
    encoding: settings.responseEncoding,
    gates,
    log,
    deadlineMs: settings.responseDeadlineMs,
    backoff: settings.responseBackoff,
  })
  const handler = new RequestHandler(listener.jobs, listener.store, responder, settings)
  const handlers = new RunningHandlers(handler.handle)
  log.info('listening for job requests', {
    queue: listener.requests.url,
    responses: listener.responses.url,
    jobs: [...listener.jobs.keys()],
    concurrency: settings.maxConcurrentJobs,
  })
  const result = await consume(listener.requests, handlers.handle, {
    once,
    // --once after a listener was killed: its leases lapse within the run, so the run handles them.
    awaitLapsingLeases: true,
    deadlineMs: options.deadlineMs,
    signal: options.signal,
    concurrency: settings.maxConcurrentJobs,
    batchSize: Math.min(10, settings.maxConcurrentJobs),
    // Jobs run for minutes: a listener with free slots should get the waiting requests, not one that holds them.
    prefetch: false,
    // polling_interval: the long poll waits up to it (a request is picked up at once) and an empty
    // queue is asked once per interval (idleMs waits out the rest, also past SQS's 20 s limit).
    waitSeconds: Math.min(20, Math.max(1, Math.round(settings.pollingIntervalSeconds))),
    idleMs: settings.pollingIntervalSeconds * 1000,
    visibilityTimeout: settings.visibilityTimeout,
    stopDeadlineMs: settings.stopTimeoutSeconds * 1000,
    maxAttempts: await listener.requests.maxAttempts?.(),
    gates,
    target: RESPONSE_QUEUE,
    log,
  })
  await handlers.settle(KILL_GRACE_MS + 10_000)
  const outcome = listenResult(handler.tally, result, once)
  const {received, succeeded, failed, badRequests, answeredAgain, released, duplicates, dead, stoppedBy} = outcome
  log.info('listener stopped', {received, succeeded, failed, badRequests, answeredAgain, released, duplicates, dead, stoppedBy})
  return outcome
}

/**
 * The consumer's counts, the handler's tally, and the run's outcome: the consumer's (dead letters,
 * what remains and why) plus, for --once, jobs that failed (exit 1: the requests were answered
 * `failure` and are done, but the operator who ran it wants to know).
 */
function listenResult(tally: RequestTally, result: ConsumeResult, once: boolean): ListenResult {
  const problems: Problem[] = []
  if (once && result.stoppedBy !== 'signal' && tally.failed > 0) {
    const ids = tally.failedRequests.slice(0, 10).join(', ')
    const more = tally.failed > 10 ? ', …' : ''
    problems.push({exitCode: 1, line: `${tally.failed} job${tally.failed === 1 ? '' : 's'} answered failure (request ${ids}${more})`})
  }
  return {
    ...tally,
    received: result.received,
    released: result.released,
    dead: result.dead,
    deadLetters: result.deadLetters,
    remaining: result.remaining,
    ...(result.heldUntil ? {heldUntil: result.heldUntil} : {}),
    targetsDown: result.targetsDown,
    stoppedBy: result.stoppedBy,
    ...withProblems(result, problems),
  }
}

/** The consumer's outcome with the listener's own problems: the most specific code wins, its line first. */
function withProblems(outcome: RunOutcome, problems: Problem[]): RunOutcome {
  if (problems.length === 0) return {exitCode: outcome.exitCode, problems: outcome.problems}
  const exitCode = mostSpecificExitCode([outcome.exitCode, ...problems.map((problem) => problem.exitCode)])
  const ours = problems.map((problem) => problem.line)
  return {exitCode, problems: outcome.exitCode === exitCode ? [...outcome.problems, ...ours] : [...ours, ...outcome.problems]}
}

/**
 * At the stop deadline consume() releases the messages still in a handler and returns without
 * waiting for them; each handler still has to kill its job and send "listener stopped": the
 * listener waits for them (bounded) before it closes its queues.
 */
class RunningHandlers {
  private readonly running = new Set<Promise<unknown>>()

  constructor(private readonly inner: Handler) {}

  readonly handle: Handler = (message, context) => {
    const promise = this.inner(message, context)
    this.running.add(promise)
    const forget = () => this.running.delete(promise)
    promise.then(forget, forget)
    return promise
  }

  async settle(maxMs: number): Promise<void> {
    if (this.running.size === 0) return
    const timer = new AbortController()
    await Promise.race([Promise.allSettled([...this.running]), sleep(maxMs, timer.signal)])
    timer.abort()
  }
}
