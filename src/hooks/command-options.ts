import {readFileSync} from 'node:fs'

import {Flags} from '@oclif/core'
import {parse as parseYaml} from 'yaml'

import {UsageError} from '../core/errors.js'
import {DEFAULT_SERVER, HooksClient, readToken} from './client.js'
import type {Action, Execution, Task, TaskView} from './model.js'

/** How the client commands find the service. */
export const clientFlags = {
  server: Flags.string({env: 'CISTERN_HOOKS_URL', default: DEFAULT_SERVER, summary: 'Base URL of the running hooks service.'}),
  'token-file': Flags.string({summary: 'File holding the API token (else CISTERN_HOOKS_TOKEN).'}),
}

export function clientFrom(flags: {server: string; 'token-file'?: string}): HooksClient {
  return new HooksClient(flags.server, readToken(flags['token-file']))
}

/** Flags that describe a task (create, update). */
export const taskFlags = {
  file: Flags.string({char: 'f', summary: 'Task document (JSON or YAML) as POST /task takes it; other task flags are applied on top.'}),
  type: Flags.option({options: ['webhook', 'scheduler'] as const, summary: 'Task type (default: scheduler with --cron, else webhook).'})(),
  name: Flags.string({summary: 'A name to recognise the task by.'}),
  method: Flags.option({options: ['GET', 'POST', 'PUT', 'DELETE'] as const, summary: 'webhook: the method /webhook/<uuid> accepts (default POST).'})(),
  cron: Flags.string({summary: 'scheduler: cron expression, 5 fields or 6 with leading seconds ("0 9 * * 1-5").'}),
  timezone: Flags.string({summary: 'scheduler: IANA time zone of the cron (default UTC).'}),
  payload: Flags.string({summary: 'scheduler: JSON payload handed to the action.'}),
  http: Flags.string({summary: 'Action: forward the request (or payload) to this URL.', exclusive: ['queue', 'job']}),
  'http-method': Flags.string({summary: 'http action: method to use (default: the received one, POST for scheduler).'}),
  header: Flags.string({multiple: true, summary: 'http action: extra header "Name: value" (repeatable).'}),
  timeout: Flags.integer({min: 1, max: 600, summary: 'http action: seconds to wait for the target (default 10).'}),
  queue: Flags.string({summary: 'Action: send a message to this queue URL (sqlite:…#name, SQS URL, sqs://name).', exclusive: ['http', 'job']}),
  'queue-format': Flags.option({options: ['execution', 'body', 'spigot'] as const, summary: 'queue action: message shape (default execution).'})(),
  job: Flags.string({summary: 'Action: run this job of the service\'s jobs.yml.', exclusive: ['http', 'queue']}),
  'job-param': Flags.string({multiple: true, summary: 'job action: parameter appended to the job (repeatable).'}),
}

type TaskFlagValues = {
  file?: string
  type?: 'webhook' | 'scheduler'
  name?: string
  method?: string
  cron?: string
  timezone?: string
  payload?: string
  http?: string
  'http-method'?: string
  header?: string[]
  timeout?: number
  queue?: string
  'queue-format'?: string
  job?: string
  'job-param'?: string[]
}

type Document = {uuid?: string; name?: string; type?: string; stopped?: boolean; config?: Record<string, unknown>}

/** The task document to send: --file (or the existing task), with the flags applied on top. */
export function taskDocument(flags: TaskFlagValues, existing?: Task): Document {
  let document: Document = existing ? {name: existing.name, type: existing.type, stopped: existing.stopped, config: {...existing.config}} : {}
  if (flags.file) document = readDocument(flags.file)
  const config: Record<string, unknown> = {...document.config}
  if (flags.name !== undefined) document.name = flags.name
  document.type = flags.type ?? document.type ?? (flags.cron ? 'scheduler' : 'webhook')
  if (flags.method) config.method = flags.method
  if (flags.cron) config.cron = flags.cron
  if (flags.timezone) config.timezone = flags.timezone
  if (flags.payload !== undefined) {
    try {
      config.payload = JSON.parse(flags.payload)
    } catch (error) {
      throw new UsageError(`--payload is not JSON: ${(error as Error).message}`, `quote it for the shell, e.g. --payload '{"job":"nightly"}'`)
    }
  }
  let action = config.action as Partial<Action> | undefined
  if (flags.http) action = {type: 'http', url: flags.http}
  if (flags.queue) action = {type: 'queue', url: flags.queue}
  if (flags.job) action = {type: 'job', name: flags.job}
  if (action?.type === 'http') {
    const http = action as Record<string, unknown>
    if (flags['http-method']) http.method = flags['http-method'].toUpperCase()
    if (flags.timeout) http.timeout_seconds = flags.timeout
    if (flags.header?.length) http.headers = {...(http.headers as object), ...parseHeaders(flags.header)}
  } else if (flags['http-method'] || flags.timeout || flags.header?.length) {
    throw new UsageError('--http-method, --timeout and --header apply to an http action', 'add --http <url>')
  }
  if (action?.type === 'queue' && flags['queue-format']) (action as Record<string, unknown>).format = flags['queue-format']
  else if (flags['queue-format'] && action?.type !== 'queue') throw new UsageError('--queue-format applies to a queue action', 'add --queue <url>')
  if (action?.type === 'job' && flags['job-param']?.length) (action as Record<string, unknown>).parameters = flags['job-param']
  else if (flags['job-param']?.length && action?.type !== 'job') throw new UsageError('--job-param applies to a job action', 'add --job <name>')
  if (!action) throw new UsageError('the task has no action', 'give one of --http <url>, --queue <url> or --job <name> (or --file)')
  config.action = action
  document.config = config
  return document
}

function readDocument(path: string): Document {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'check --file')
  }
  return parseDocument(text, path)
}

function parseDocument(text: string, path: string): Document {
  // YAML is a superset of JSON: one parser for both.
  let value: unknown
  try {
    value = parseYaml(text)
  } catch (error) {
    throw new UsageError(`${path} is neither JSON nor YAML: ${(error as Error).message.split('\n')[0]}`, 'see examples/hooks/ for task documents')
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${path}: expected one task object`)
  return value as Document
}

function parseHeaders(lines: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon <= 0) throw new UsageError(`bad --header "${line}"`, 'use --header "Name: value"')
    out[line.slice(0, colon).trim()] = line.slice(colon + 1).trim()
  }
  return out
}

/** One line for what starts a task. */
export function triggerOf(task: Task): string {
  return task.type === 'webhook' ? `${task.config.method} /webhook/${task.uuid}` : `cron "${task.config.cron}" ${task.config.timezone}`
}

/** One line for what a task does. */
export function actionOf(task: Task): string {
  const action = task.config.action
  if (action.type === 'http') return `http ${action.method ?? ''}${action.method ? ' ' : ''}${action.url}`
  if (action.type === 'queue') return `queue ${action.url}${action.format ? ` (${action.format})` : ''}`
  return `job ${action.name}${action.parameters?.length ? ' ' + action.parameters.join(' ') : ''}`
}

export function describeTask(task: TaskView, server: string): string {
  const lines = [
    `${task.type} task ${task.uuid}${task.name ? ` (${task.name})` : ''}${task.stopped ? ' [stopped]' : ''}`,
    `  trigger:    ${triggerOf(task)}`,
    `  action:     ${actionOf(task)}`,
    `  executions: ${task.nb_executions_total} (${task.nb_executions_todo} to do)`,
  ]
  if (task.type === 'webhook') lines.push(`  intake:     ${server}/webhook/${task.uuid}`)
  return lines.join('\n')
}

export function describeExecution(execution: Execution): string {
  const when = execution.scheduled_date ?? new Date(execution.created_at).toISOString()
  const result = execution.result?.status ?? execution.result?.exit_code ?? execution.result?.message_id ?? ''
  const error = execution.last_error ? `  last error: ${execution.last_error}` : ''
  return `${execution.timestamp}  ${execution.status.padEnd(9)} ${when}  errors=${execution.nb_errors}${result === '' ? '' : `  result=${result}`}${error}`
}

/** A small aligned table for human output. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return ''
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)))
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')).join('\n')
}
