import type {z} from 'zod'

import {type TargetAnswer, TargetGates, TargetJudge} from '../../core/delivery.js'
import {TargetUnhealthyError} from '../../core/errors.js'
import {HttpClient, type HttpMethod, TransportError} from '../../core/http-client.js'
import {displayUrl} from '../../core/log.js'
import {sleep} from '../../core/loop.js'
import {type HandlerOutcome, JobFailure} from '../job.js'

/**
 * The CI servers the jenkins and travis handlers drive, judged by the delivery contract
 * (docs/delivery.md): no answer, a 5xx, 408/429 or refused credentials mean the *server* is down,
 * not that the job failed. Its gate closes for a back-off; the job waits for it within its run, is
 * handed back to CodePipeline with a continuation token when the run's time is up, and fails
 * (SystemUnavailable, or PermissionError for refused credentials) only once the server has been down
 * for the handler's failAfterSeconds. Any other 4xx is this job's own fault (a wrong job name,
 * refused parameters): the handler maps it to a failure at once.
 */

/** What the CI handlers of one worker share: one keep-alive HTTP client, the servers' gates, the judge. */
export class CiTargets {
  readonly http: HttpClient
  readonly gates: TargetGates
  readonly judge: TargetJudge

  constructor(options: {http?: HttpClient; gates?: TargetGates} = {}) {
    this.http = options.http ?? new HttpClient()
    this.gates = options.gates ?? new TargetGates()
    this.judge = new TargetJudge(this.gates)
  }

  /** Closes idle keep-alive connections (the worker's shutdown). */
  close(): Promise<void> {
    return this.http.close()
  }
}

/** The CI server is down for now: the job waits for it, it has not failed. */
export class TargetDownError extends TargetUnhealthyError {
  constructor(
    readonly target: string,
    reason: string,
    readonly credentials: boolean,
  ) {
    super(reason, credentials ? 'check the user and API token the handler reads from the environment' : 'check that the CI server is up and its URL is right')
    this.name = 'TargetDownError'
  }
}

export interface CiAnswer {
  status: number
  /** Lower-case names; a header may be absent. */
  headers: Partial<Record<string, string>>
  text: string
}

export interface CiRequest {
  /** The CodePipeline job the request is for (the judge tells jobs apart by it). */
  jobId: string
  method?: HttpMethod
  headers?: Record<string, string>
  body?: string
  /** Aborts the request (the worker's stop deadline). */
  signal?: AbortSignal
}

// 4xx answers that say something about the server rather than the job (docs/delivery.md's table).
const SERVER_STATUSES = new Set([401, 403, 407, 408, 429])

/** A redirect, or a 4xx about this job's own URL (not the credentials, not "slow down"): the handler's to judge. */
function isJobsOwn(status: number): boolean {
  return status >= 300 && status < 500 && !SERVER_STATUSES.has(status)
}

/** JSON text as a value, or undefined when it is not JSON (the schema that reads it then says no). */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

/** One CI server (`jenkins:<host>`): requests through the shared client, answers judged, its gate kept. */
export class CiServer {
  readonly key: string
  /** Why this server was last found down (its gate keeps the time; this keeps whether it was the credentials). */
  private lastDown?: TargetDownError

  constructor(
    readonly what: 'Jenkins' | 'Travis',
    base: string,
    private readonly targets: CiTargets,
    private readonly timeoutMs: number,
  ) {
    this.key = `${what.toLowerCase()}:${new URL(base).host}`
  }

  /**
   * Sends one request. Resolves with the answer when the server answered for this job (2xx, a
   * redirect, a 4xx that is the job's own); throws TargetDownError when the server is down, without
   * sending anything while its gate is closed.
   */
  async request(url: string, request: CiRequest): Promise<CiAnswer> {
    if (!this.targets.gates.isOpen(this.key)) throw this.stillDown()
    const what = `${request.method ?? 'GET'} ${displayUrl(url)}`
    let response: CiAnswer
    try {
      const got = await this.targets.http.request({
        method: request.method ?? 'GET',
        url,
        headers: {'user-agent': 'cistern-codepipeline-worker', ...request.headers},
        body: request.body,
        timeoutMs: this.timeoutMs,
        signal: request.signal,
      })
      response = {status: got.status, headers: got.headers, text: got.body.toString('utf8')}
    } catch (error) {
      // No answer is always the server being down.
      if (error instanceof TransportError) throw this.judged(request.jobId, {error: error.failure.kind, detail: what}) ?? this.down('no answer')
      if (error instanceof TargetUnhealthyError) throw this.down(error.message)
      throw error
    }
    if (isJobsOwn(response.status)) {
      // A redirect or a 4xx for this job's own URL: the server answered; the handler says what it means.
      if (response.status < 400) this.succeeded()
      return response
    }
    const down = this.judged(request.jobId, {status: response.status, detail: what, retryAfterSeconds: retryAfter(response.headers['retry-after'])})
    if (down) throw down
    return response
  }

  /** The judge's verdict on an answer: a TargetDownError (its gate closed) when the server is down, else undefined (delivered). */
  private judged(jobId: string, answer: TargetAnswer): TargetDownError | undefined {
    const verdict = this.targets.judge.verdict(this.key, jobId, answer)
    if (verdict.kind !== 'target-down') {
      this.lastDown = undefined
      return undefined
    }
    this.targets.gates.failedWith(verdict)
    this.lastDown = new TargetDownError(this.key, `${this.what} ${verdict.credentials ? 'refused the credentials' : 'is down'}: ${verdict.reason}`, verdict.credentials)
    return this.lastDown
  }

  /** The answer's body as the schema says it must be; anything else means the server is not itself (a proxy's page): down. */
  json<T>(answer: CiAnswer, schema: z.ZodType<T>): T {
    const parsed = schema.safeParse(parseJson(answer.text))
    if (parsed.success) return parsed.data
    throw this.down(`answered ${answer.status} with a body that is not what ${this.what} answers`)
  }

  /** A failure for an answer that is this job's fault: 404 names the configuration, anything else fails the job. */
  refused(answer: CiAnswer, url: string): JobFailure {
    if (answer.status === 404) return new JobFailure('ConfigurationError', `${this.what} answered 404 for ${displayUrl(url)}: check the job/repository name`)
    return new JobFailure('JobFailed', `${this.what} answered ${answer.status} on ${displayUrl(url)}`)
  }

  /** One-shot runs give a server up (down too long, or refusing the credentials): its jobs are handed back at once. */
  get givenUp(): boolean {
    return this.targets.gates.givenUp(this.key)
  }

  /** Milliseconds until the gate lets a request through again. */
  get retryInMs(): number {
    return this.targets.gates.retryInMs(this.key)
  }

  private succeeded(): void {
    this.targets.gates.succeeded(this.key)
    this.lastDown = undefined
  }

  private down(reason: string): TargetDownError {
    const what = `${this.key} ${reason}`
    this.targets.gates.failed(this.key, what)
    this.lastDown = new TargetDownError(this.key, `${this.what} is down: ${what}`, false)
    return this.lastDown
  }

  /** Its gate is closed: the job waits without a request (another job found it down). */
  private stillDown(): TargetDownError {
    if (this.lastDown) return this.lastDown
    return new TargetDownError(this.key, `${this.what} is down: ${this.targets.gates.reasonOf(this.key) ?? 'unknown'}`, false)
  }
}

function retryAfter(header: string | undefined): number | undefined {
  if (header === undefined) return undefined
  const value = Number(header)
  return Number.isFinite(value) && value >= 0 ? value : undefined
}

// --- following a build -------------------------------------------------------------------------

/** One status check of a build: its final outcome, or the state to keep with progress. */
export type Step<S> = {done: true; outcome: HandlerOutcome} | {done: false; state: S; summary: string; percentComplete?: number; externalExecutionId?: string}

/** A build on a CI server, as a handler drives it. */
export interface CiBuild<S> {
  /** Starts the build; resolves with the state to follow. */
  trigger(): Promise<S>
  check(state: S): Promise<Step<S>>
}

/** What a continuation token carries: the build's state (none: not started yet) and since when its server has been down. */
export interface Progress<S> {
  state?: S
  /** Epoch ms of the first failure with no success since, across the job's runs. */
  downSince?: number
}

export interface FollowOptions<S> {
  /** How long one run waits for the build before handing back a continuation token. */
  waitMs: number
  intervalMs: number
  /** A job whose server stays down this long fails (SystemUnavailable, or PermissionError for refused credentials). */
  failAfterMs: number
  stopping: AbortSignal
  token(progress: Progress<S>): string
}

/** FollowOptions from an action's settings (seconds), with the token a build's state and downtime make. */
export function followOptions<S>(
  settings: {waitSeconds: number; checkIntervalSeconds: number; failAfterSeconds: number},
  stopping: AbortSignal,
): FollowOptions<S> {
  return {
    waitMs: settings.waitSeconds * 1000,
    intervalMs: settings.checkIntervalSeconds * 1000,
    failAfterMs: settings.failAfterSeconds * 1000,
    stopping,
    token: ({state, downSince}) => JSON.stringify({...state, downSince}),
  }
}

/**
 * Starts the build if it has not started, then checks it until it is final, `waitMs` has passed,
 * or the worker is stopping; then hands back a continuation token so CodePipeline (and any worker)
 * can resume it. While the server is down, the job waits (checking when its gate opens) and is
 * handed back with `heldFor`, until it has been down for failAfterMs.
 */
export async function follow<S>(server: CiServer, build: CiBuild<S>, start: Progress<S>, options: FollowOptions<S>): Promise<HandlerOutcome> {
  const started = Date.now()
  let {state, downSince} = start
  let last: {summary: string; percentComplete?: number; externalExecutionId?: string} = {summary: `waiting for ${server.what}`}
  let down: TargetDownError | undefined
  for (;;) {
    try {
      state ??= await build.trigger()
      const step = await build.check(state)
      if (step.done) return step.outcome
      ;({state} = step)
      last = step
      down = undefined
      downSince = undefined
    } catch (error) {
      if (!(error instanceof TargetDownError)) throw error
      down = error
      downSince ??= Date.now()
      const downForMs = Date.now() - downSince
      if (downForMs >= options.failAfterMs) {
        const type = error.credentials ? 'PermissionError' : 'SystemUnavailable'
        throw new JobFailure(type, `${error.message} (down for ${Math.round(downForMs / 1000)} s)`, last.externalExecutionId)
      }
      last = {...last, summary: `${error.message}; ${state === undefined ? 'the build starts once it is back' : 'checking again once it is back'}`}
      if (server.givenUp) break
    }
    const left = options.waitMs - (Date.now() - started)
    if (options.stopping.aborted || left <= 0) break
    await sleep(Math.min(down ? server.retryInMs : options.intervalMs, left), options.stopping)
  }
  return {
    status: 'inProgress',
    continuationToken: options.token({state, downSince}),
    summary: last.summary,
    ...(last.percentComplete !== undefined ? {percentComplete: last.percentComplete} : {}),
    ...(last.externalExecutionId ? {externalExecutionId: last.externalExecutionId} : {}),
    ...(down ? {heldFor: server.key} : {}),
  }
}
