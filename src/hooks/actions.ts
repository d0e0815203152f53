import {randomUUID} from 'node:crypto'
import {rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {JobsConfig} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import {displayUrl, silentLogger} from '../core/log.js'
import type {Queue} from '../core/queue/types.js'
import {encodeMessage, webhookMessage} from '../core/webhook-message.js'
import type {Action, ActionResult, Execution, Task} from './model.js'

/** An attempt that failed: the execution is retried (or DONE with last_error after the last one). */
export class ActionError extends Error {
  constructor(
    message: string,
    readonly result?: ActionResult,
  ) {
    super(message)
    this.name = 'ActionError'
  }
}

export interface ActionRunnerOptions {
  log?: Logger
  /** The jobs of jobs.yml (job actions); loaded lazily by the service. */
  jobs?: () => Promise<JobsConfig>
  /** Default timeout of http actions (seconds, default 10). */
  httpTimeoutSeconds?: number
}

// Not forwarded: hop-by-hop headers and those fetch computes itself.
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

/** What the executions do: forward over HTTP, put on a queue, or run a job. */
export class ActionRunner {
  private readonly queues = new Map<string, Promise<Queue>>()
  private readonly log: Logger

  constructor(private readonly options: ActionRunnerOptions = {}) {
    this.log = options.log ?? silentLogger
  }

  async run(task: Task, execution: Execution, signal: AbortSignal): Promise<ActionResult> {
    const action = task.config.action
    switch (action.type) {
      case 'http':
        return this.http(action, task, execution, signal)
      case 'queue':
        return this.queue(action, task, execution)
      case 'job':
        return this.job(action, task, execution, signal)
    }
  }

  private async http(action: Extract<Action, {type: 'http'}>, task: Task, execution: Execution, signal: AbortSignal): Promise<ActionResult> {
    const started = Date.now()
    const headers: Record<string, string> = {}
    let body: Buffer | undefined
    let url = action.url
    let method: string = action.method ?? 'POST'
    if (execution.request) {
      const request = execution.request
      method = action.method ?? request.method
      for (const [name, value] of Object.entries(request.headers)) if (!DROPPED_HEADERS.has(name.toLowerCase())) headers[name] = value
      body = Buffer.from(request.raw_body, 'base64')
      url = withQuery(action.url, request.query)
    } else if (execution.payload !== undefined) {
      headers['content-type'] = 'application/json'
      body = Buffer.from(JSON.stringify(execution.payload))
    }
    Object.assign(headers, action.headers)
    headers['x-cistern-hooks-task'] = task.uuid
    headers['x-cistern-hooks-execution'] = String(execution.timestamp)
    const timeout = (action.timeout_seconds ?? this.options.httpTimeoutSeconds ?? 10) * 1000
    let response: Response
    try {
      response = await fetch(url, {
        method,
        headers,
        body: method === 'GET' || method === 'HEAD' || !body || body.length === 0 ? undefined : body,
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
        redirect: 'manual',
      })
    } catch (error) {
      const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${timeout / 1000} s` : causeOf(error)
      throw new ActionError(`${method} ${displayUrl(url, url)}: ${reason}`, {duration_ms: Date.now() - started})
    }
    const text = await response.text().catch(() => '')
    const result: ActionResult = {status: response.status, output: text.slice(0, OUTPUT_BYTES), duration_ms: Date.now() - started}
    if (response.status < 200 || response.status >= 300) throw new ActionError(`${method} ${displayUrl(url, url)}: HTTP ${response.status}`, result)
    return result
  }

  private async queue(action: Extract<Action, {type: 'queue'}>, task: Task, execution: Execution): Promise<ActionResult> {
    const started = Date.now()
    let opening = this.queues.get(action.url)
    if (!opening) {
      const {openQueue} = await import('../core/queue/index.js')
      opening = openQueue(action.url, {log: this.log})
      this.queues.set(action.url, opening)
      opening.catch(() => this.queues.delete(action.url))
    }
    try {
      const queue = await opening
      const sent = await queue.send({
        body: queueBody(action.format ?? 'execution', task, execution),
        groupId: action.group_id ?? (queue.capabilities.fifo ? task.uuid : undefined),
        deduplicationId: queue.capabilities.fifo ? `${task.uuid}-${execution.timestamp}` : undefined,
      })
      return {message_id: sent.id, duration_ms: Date.now() - started}
    } catch (error) {
      throw new ActionError(`send to ${action.url.replace(/\?.*$/, '')}: ${(error as Error).message}`, {duration_ms: Date.now() - started})
    }
  }

  private async job(action: Extract<Action, {type: 'job'}>, task: Task, execution: Execution, signal: AbortSignal): Promise<ActionResult> {
    const started = Date.now()
    if (!this.options.jobs) throw new ActionError(`job "${action.name}": no jobs file configured (hooks serve --jobs <jobs.yml>)`)
    const jobs = await this.options.jobs()
    const spec = jobs.get(action.name)
    if (!spec) throw new ActionError(`job "${action.name}" is not in the jobs file (have: ${[...jobs.keys()].join(', ') || 'none'})`)
    const {runJob} = await import('../core/jobs.js')
    // The body goes through a file: it may be large or binary, which the environment cannot carry.
    const bodyFile = join(tmpdir(), `cistern-hooks-${randomUUID()}`)
    const bytes = execution.request
      ? Buffer.from(execution.request.raw_body, 'base64')
      : Buffer.from(execution.payload === undefined ? '' : JSON.stringify(execution.payload))
    await writeFile(bodyFile, bytes, {mode: 0o600})
    try {
      const result = await runJob(spec, {
        parameters: action.parameters,
        signal,
        env: {
          CISTERN_HOOKS_TASK: task.uuid,
          CISTERN_HOOKS_EXECUTION: String(execution.timestamp),
          CISTERN_HOOKS_BODY_FILE: bodyFile,
          ...(execution.request ? {CISTERN_HOOKS_METHOD: execution.request.method} : {}),
          ...(execution.scheduled_date ? {CISTERN_HOOKS_SCHEDULED_DATE: execution.scheduled_date} : {}),
        },
      })
      const out: ActionResult = {exit_code: result.exitCode, output: result.lastLines.join('\n').slice(-OUTPUT_BYTES), duration_ms: Date.now() - started}
      if (result.startError) throw new ActionError(`job "${action.name}" could not start: ${result.startError}`, out)
      if (result.timedOut) throw new ActionError(`job "${action.name}" timed out`, out)
      if (result.aborted) throw new ActionError(`job "${action.name}" was stopped`, out)
      if (result.exitCode !== 0) throw new ActionError(`job "${action.name}" exited with ${result.exitCode ?? result.signal}`, out)
      return out
    } finally {
      await rm(bodyFile, {force: true})
    }
  }

  async close(): Promise<void> {
    for (const opening of this.queues.values()) await (await opening.catch(() => undefined))?.close()
    this.queues.clear()
  }
}

/** The message a queue action sends. */
export function queueBody(format: 'execution' | 'body' | 'spigot', task: Task, execution: Execution): string {
  const raw = execution.request ? Buffer.from(execution.request.raw_body, 'base64') : undefined
  if (format === 'body') return raw ? raw.toString('utf8') : JSON.stringify(execution.payload ?? null)
  if (format === 'spigot') {
    const bytes = raw ?? Buffer.from(JSON.stringify(execution.payload ?? null))
    return encodeMessage(webhookMessage(bytes, execution.request?.headers ?? {}, new Date(execution.created_at)))
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

function causeOf(error: unknown): string {
  const cause = (error as {cause?: {code?: string; message?: string}}).cause
  return cause?.code ?? cause?.message ?? (error as Error).message
}
