import {randomUUID} from 'node:crypto'
import {rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {isTransientAwsError} from '../core/aws.js'
import {type Outcome, type TargetAnswer, type TargetJudge, dead, retry, targetDown, transportErrorKind} from '../core/delivery.js'
import {CisternError, TargetUnhealthyError, errorMessage} from '../core/errors.js'
import {HttpClient, type HttpMethod} from '../core/http-client.js'
import type {JobsConfig} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import {displayUrl, silentLogger} from '../core/log.js'
import {localOwnerPid, stopProcesses} from '../core/orphans.js'
import type {Queue} from '../core/queue/types.js'
import {maskSecrets, readSecretFile, registerSecret} from '../core/secrets.js'
import {encodeMessage, webhookMessage} from '../core/webhook-message.js'
import {ActionError} from './errors.js'
import {isRedacted} from './headers.js'
import type {Action, ActionResult, Execution, HttpAction, JobAction, QueueAction, Task} from './model.js'

export {ActionError} from './errors.js'

/** What one attempt of an action ended in (docs/delivery.md's outcomes), and what to record of it. */
export interface ActionAttempt {
  outcome: Outcome
  result?: ActionResult
}

export interface ActionContext {
  /** Aborts the attempt: the operator stopped it, its lease was lost, or the service is stopping. */
  signal: AbortSignal
  /** Turns a target's answer into the outcome (one per worker: it remembers suspects and streaks). */
  judge: TargetJudge
  /** This instance's id: its jobs carry it, so a later instance can find them if it dies. */
  owner?: string
}

/** What runs an execution's action (tests put their own in). */
export interface ActionPort {
  run(task: Task, execution: Execution, context: ActionContext): Promise<ActionAttempt>
}

/** The gate an action's target has (docs/delivery.md: one per target, so one unhealthy URL does not hold the others back). */
export function actionTarget(action: Action): string {
  switch (action.type) {
    case 'http':
      return URL.canParse(action.url) ? new URL(action.url).origin : action.url
    case 'queue':
      return `queue:${action.url.replace(/[?#].*$/, '')}`
    case 'job':
      return `job:${action.name}`
  }
}

/** The variable a job gets with this instance's id (orphans of a dead instance are found by it). */
export const INSTANCE_ENV = 'CISTERN_HOOKS_INSTANCE'

export interface ActionRunnerOptions {
  log?: Logger
  /** The jobs of jobs.yml (job actions), read and validated when the service started. */
  jobs?: JobsConfig
  /** Default timeout of http actions (seconds, default 10). */
  httpTimeoutSeconds?: number
  /** How long a stopped job gets between SIGTERM and SIGKILL (default 5 s). */
  killGraceMs?: number
}

// Not forwarded: hop-by-hop headers and those the client computes itself.
const DROPPED_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'expect',
  'te',
  'trailer',
  'proxy-authorization',
  'proxy-connection',
])

const OUTPUT_BYTES = 1024
const HTTP_METHODS: readonly string[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] satisfies HttpMethod[]

function isHttpMethod(method: string): method is HttpMethod {
  return HTTP_METHODS.includes(method)
}

/** What the executions do: forward over HTTP, put on a queue, or run a job. */
export class ActionRunner implements ActionPort {
  private readonly queues = new Map<string, Promise<Queue>>()
  private readonly log: Logger
  private readonly http = new HttpClient({maxResponseBytes: 16 * 1024 * 1024})

  constructor(private readonly options: ActionRunnerOptions = {}) {
    this.log = options.log ?? silentLogger
  }

  async run(task: Task, execution: Execution, context: ActionContext): Promise<ActionAttempt> {
    const action = task.config.action
    switch (action.type) {
      case 'http':
        return this.forward(action, task, execution, context)
      case 'queue':
        return this.send(action, task, execution)
      case 'job':
        return this.runJob(action, task, execution, context)
    }
  }

  /** Finish requests in flight and close keep-alive connections and queues (shutdown). */
  async close(): Promise<void> {
    for (const opening of this.queues.values()) await (await opening.catch(() => undefined))?.close()
    this.queues.clear()
    await this.http.close()
  }

  // --- http ----------------------------------------------------------------------------------

  private async forward(action: HttpAction, task: Task, execution: Execution, context: ActionContext): Promise<ActionAttempt> {
    const started = Date.now()
    const target = actionTarget(action)
    const {url, method, headers, body} = httpRequestOf(action, task, execution)
    const secret = secretHeaders(action, task)
    if ('missing' in secret) return {outcome: targetDown(target, secret.missing, {credentials: true})}
    Object.assign(headers, secret.headers)
    const timeoutMs = (action.timeout_seconds ?? this.options.httpTimeoutSeconds ?? 10) * 1000
    const what = `${method} ${URL.canParse(url) ? new URL(url).pathname : displayUrl(url, url)}`
    let answer: TargetAnswer
    let result: ActionResult
    try {
      const response = await this.http.request({method, url, headers, body, timeoutMs, signal: context.signal})
      const output = maskSecrets(response.body.subarray(0, OUTPUT_BYTES * 4).toString('utf8')).slice(0, OUTPUT_BYTES)
      result = {status: response.status, output, duration_ms: Date.now() - started}
      answer = {status: response.status, detail: what, retryAfterSeconds: retryAfterSeconds(response.headers['retry-after'])}
    } catch (error) {
      if (context.signal.aborted) throw error
      result = {duration_ms: Date.now() - started}
      const kind = transportErrorKind(error)
      if (!kind) return {outcome: targetDown(target, `${what}: ${errorMessage(error)}`), result}
      answer = {error: kind, detail: kind === 'timeout' ? `${what}: no answer within ${timeoutMs / 1000} s` : what}
    }
    return {outcome: context.judge.verdict(target, executionKey(execution), answer), result}
  }

  // --- queue ---------------------------------------------------------------------------------

  private async send(action: QueueAction, task: Task, execution: Execution): Promise<ActionAttempt> {
    const started = Date.now()
    const where = action.url.replace(/\?.*$/, '')
    try {
      const queue = await this.queue(action.url)
      const sent = await queue.send({
        body: queueBody(action.format ?? 'execution', task, execution),
        groupId: action.group_id ?? (queue.capabilities.fifo ? task.uuid : undefined),
        deduplicationId: queue.capabilities.fifo ? `${task.uuid}-${execution.timestamp}` : undefined,
      })
      return {outcome: {kind: 'delivered'}, result: {message_id: sent.id, duration_ms: Date.now() - started}}
    } catch (error) {
      const result = {duration_ms: Date.now() - started}
      const reason = `send to ${where}: ${errorMessage(error)}`
      // The queue service is unwell (unreachable, throttling, 5xx): not this execution's fault.
      if (transportErrorKind(error) || isTransientAwsError(error) || error instanceof TargetUnhealthyError) return {outcome: targetDown(actionTarget(action), reason), result}
      return {outcome: retry(reason), result}
    }
  }

  private queue(url: string): Promise<Queue> {
    let opening = this.queues.get(url)
    if (!opening) {
      opening = import('../core/queue/index.js').then(({openQueue}) => openQueue(url, {log: this.log}))
      this.queues.set(url, opening)
      opening.catch(() => this.queues.delete(url))
    }
    return opening
  }

  // --- job -----------------------------------------------------------------------------------

  private async runJob(action: JobAction, task: Task, execution: Execution, context: ActionContext): Promise<ActionAttempt> {
    const started = Date.now()
    const jobs = this.options.jobs
    if (!jobs) return {outcome: dead(`job "${action.name}": no jobs file configured (hooks serve --jobs <jobs.yml>)`)}
    const spec = jobs.get(action.name)
    if (!spec) return {outcome: dead(`job "${action.name}" is not in the jobs file (have: ${[...jobs.keys()].join(', ') || 'none'})`)}
    await this.stopOrphans(execution, context)
    const {runJob} = await import('../core/jobs.js')
    // The body goes through a file: it may be large or binary, which the environment cannot carry.
    const bodyFile = join(tmpdir(), `cistern-hooks-${randomUUID()}`)
    const bytes = execution.request ? Buffer.from(execution.request.raw_body, 'base64') : Buffer.from(execution.payload === undefined ? '' : JSON.stringify(execution.payload))
    await writeFile(bodyFile, bytes, {mode: 0o600})
    try {
      const job = await runJob(spec, {
        parameters: action.parameters,
        signal: context.signal,
        killGraceMs: this.options.killGraceMs,
        env: {
          CISTERN_HOOKS_TASK: task.uuid,
          CISTERN_HOOKS_EXECUTION: String(execution.timestamp),
          CISTERN_HOOKS_BODY_FILE: bodyFile,
          ...(context.owner ? {[INSTANCE_ENV]: context.owner} : {}),
          ...(execution.request ? {CISTERN_HOOKS_METHOD: execution.request.method} : {}),
          ...(execution.scheduled_date ? {CISTERN_HOOKS_SCHEDULED_DATE: execution.scheduled_date} : {}),
        },
      })
      const result: ActionResult = {exit_code: job.exitCode, output: job.lastLines.join('\n').slice(-OUTPUT_BYTES), duration_ms: Date.now() - started}
      if (job.aborted && context.signal.aborted) throw context.signal.reason instanceof Error ? context.signal.reason : new ActionError(`job "${action.name}" was stopped`)
      // A job that cannot start (command not found, a missing cwd) is the host's problem, not this execution's.
      if (job.startError) return {outcome: targetDown(actionTarget(action), `job "${action.name}" could not start: ${job.startError}`), result}
      if (job.timedOut) return {outcome: retry(`job "${action.name}" timed out`), result}
      if (job.exitCode !== 0) return {outcome: retry(`job "${action.name}" exited with ${job.exitCode ?? job.signal ?? 'no code'}`), result}
      return {outcome: {kind: 'delivered'}, result}
    } finally {
      await rm(bodyFile, {force: true})
    }
  }

  /**
   * The instance that had this execution before died (kill -9) or lost its lease: its job may still
   * run. On this host it is found by its markers and stopped before the execution runs again here.
   */
  private async stopOrphans(execution: Execution, context: ActionContext): Promise<void> {
    const previous = execution.previous_owner
    if (!previous || previous === context.owner || localOwnerPid(previous) === undefined) return
    await stopProcesses(
      {[INSTANCE_ENV]: previous, CISTERN_HOOKS_TASK: execution.task_uuid, CISTERN_HOOKS_EXECUTION: String(execution.timestamp)},
      {log: this.log, what: `execution ${execution.timestamp} of task ${execution.task_uuid}`, graceMs: this.options.killGraceMs},
    )
  }
}

/** The judge's message id: an execution is one message. */
function executionKey(execution: Execution): string {
  return `${execution.task_uuid}:${execution.timestamp}`
}

/** The request an http action sends: the captured one (secret headers left out: they were never stored), or the payload. */
function httpRequestOf(action: HttpAction, task: Task, execution: Execution): {url: string; method: HttpMethod; headers: Record<string, string>; body?: Buffer} {
  const headers: Record<string, string> = {}
  let body: Buffer | undefined
  let url = action.url
  let method: string = action.method ?? 'POST'
  if (execution.request) {
    const request = execution.request
    method = action.method ?? request.method
    for (const [name, value] of Object.entries(request.headers)) if (!DROPPED_HEADERS.has(name.toLowerCase()) && !isRedacted(value)) headers[name] = value
    body = Buffer.from(request.raw_body, 'base64')
    url = withQuery(action.url, request.query)
  } else if (execution.payload !== undefined) {
    headers['content-type'] = 'application/json'
    body = Buffer.from(JSON.stringify(execution.payload))
  }
  Object.assign(headers, action.headers)
  headers['x-cistern-hooks-task'] = task.uuid
  headers['x-cistern-hooks-execution'] = String(execution.timestamp)
  const verb = isHttpMethod(method) ? method : 'POST'
  const sendsBody = verb !== 'GET' && verb !== 'HEAD' && body !== undefined && body.length > 0
  return {url, method: verb, headers, ...(sendsBody ? {body} : {})}
}

/** An http action's secret headers, from the service's environment or files; registered for masking. */
function secretHeaders(action: HttpAction, task: Task): {headers: Record<string, string>} | {missing: string} {
  const headers: Record<string, string> = {}
  for (const [name, variable] of Object.entries(action.header_from_env ?? {})) {
    const value = process.env[variable]
    if (value === undefined) return {missing: `the ${name} header of task ${task.uuid} comes from $${variable}, which hooks serve's environment does not set`}
    registerSecret(value)
    headers[name] = value
  }
  for (const [name, path] of Object.entries(action.header_from_file ?? {})) {
    try {
      headers[name] = readSecretFile(path, {what: `${name} header`, source: `header_from_file of task ${task.uuid}`})
    } catch (error) {
      return {missing: error instanceof CisternError ? error.oneLine : errorMessage(error)}
    }
  }
  return {headers}
}

/** Retry-After: seconds, or an HTTP date. */
function retryAfterSeconds(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim())
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000))
}

/** The message a queue action sends. */
export function queueBody(format: 'execution' | 'body' | 'spigot', task: Task, execution: Execution): string {
  const raw = execution.request ? Buffer.from(execution.request.raw_body, 'base64') : undefined
  if (format === 'body') return raw ? raw.toString('utf8') : JSON.stringify(execution.payload ?? null)
  if (format === 'spigot') {
    const bytes = raw ?? Buffer.from(JSON.stringify(execution.payload ?? null))
    const headers = Object.fromEntries(Object.entries(execution.request?.headers ?? {}).filter(([, value]) => !isRedacted(value)))
    return encodeMessage(webhookMessage(bytes, headers, new Date(execution.created_at)))
  }
  return JSON.stringify({
    task_uuid: task.uuid,
    task_name: task.name,
    type: execution.type,
    timestamp: execution.timestamp,
    ...(execution.request ? {request: execution.request} : {}),
    ...(execution.scheduled_date ? {scheduled_date: execution.scheduled_date, payload: execution.payload} : {}),
  })
}

function withQuery(url: string, query: Record<string, string | string[]>): string {
  const entries = Object.entries(query)
  if (entries.length === 0) return url
  const target = new URL(url)
  for (const [key, value] of entries) for (const item of Array.isArray(value) ? value : [value]) target.searchParams.append(key, item)
  return target.toString()
}
