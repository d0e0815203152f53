/**
 * The task document the client commands send (`hooks task create|update`): --file (or the existing
 * task), with the flags applied on top. The service validates it (tasks.ts buildTask); this only
 * assembles it and refuses what the flags get wrong.
 */
import {readFileSync} from 'node:fs'

import {parse as parseYaml} from 'yaml'

import {UsageError, errorMessage} from '../core/errors.js'
import {isSecretHeader} from './headers.js'
import type {Task} from './model.js'

export interface TaskFlagValues {
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
  'header-from-env'?: string[]
  'header-from-file'?: string[]
  timeout?: number
  queue?: string
  'queue-format'?: string
  job?: string
  'job-param'?: string[]
}

type Fields = Record<string, unknown>

/** A task document as sent: an object whose fields the service checks. */
export interface TaskDocument extends Fields {
  config: Fields & {action: Fields}
}

function isFields(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The task document to send: --file (or the existing task), with the flags applied on top. */
export function taskDocument(flags: TaskFlagValues, existing?: Task): TaskDocument {
  const document: Fields = flags.file
    ? readDocument(flags.file)
    : existing
      ? {name: existing.name, type: existing.type, stopped: existing.stopped, config: {...existing.config}}
      : {}
  const config: Fields = isFields(document.config) ? {...document.config} : {}
  if (flags.name !== undefined) document.name = flags.name
  document.type = flags.type ?? document.type ?? (flags.cron ? 'scheduler' : 'webhook')
  if (flags.method) config.method = flags.method
  if (flags.cron) config.cron = flags.cron
  if (flags.timezone) config.timezone = flags.timezone
  if (flags.payload !== undefined) config.payload = parsePayload(flags.payload)
  const action = actionOf(flags, isFields(config.action) ? {...config.action} : undefined)
  return {...document, config: {...config, action}}
}

/** The action: the document's, replaced by --http/--queue/--job, with the action flags applied. */
function actionOf(flags: TaskFlagValues, given: Fields | undefined): Fields {
  let action = given
  if (flags.http) action = {type: 'http', url: flags.http}
  if (flags.queue) action = {type: 'queue', url: flags.queue}
  if (flags.job) action = {type: 'job', name: flags.job}
  const httpFlags = [flags['http-method'], flags.timeout, flags.header?.length, flags['header-from-env']?.length, flags['header-from-file']?.length].some(Boolean)
  if (action?.type === 'http') {
    if (flags['http-method']) action.method = flags['http-method'].toUpperCase()
    if (flags.timeout) action.timeout_seconds = flags.timeout
    if (flags.header?.length) action.headers = {...fieldsOf(action.headers), ...parseHeaders(flags.header)}
    if (flags['header-from-env']?.length) action.header_from_env = {...fieldsOf(action.header_from_env), ...parsePairs(flags['header-from-env'], 'header-from-env', 'Authorization=JENKINS_AUTH')}
    if (flags['header-from-file']?.length) action.header_from_file = {...fieldsOf(action.header_from_file), ...parsePairs(flags['header-from-file'], 'header-from-file', 'Authorization=/etc/cistern/jenkins.auth')}
  } else if (httpFlags) {
    throw new UsageError('--http-method, --timeout and the --header flags apply to an http action', 'add --http <url>')
  }
  if (action?.type === 'queue' && flags['queue-format']) action.format = flags['queue-format']
  else if (flags['queue-format'] && action?.type !== 'queue') throw new UsageError('--queue-format applies to a queue action', 'add --queue <url>')
  if (action?.type === 'job' && flags['job-param']?.length) action.parameters = flags['job-param']
  else if (flags['job-param']?.length && action?.type !== 'job') throw new UsageError('--job-param applies to a job action', 'add --job <name>')
  if (!action) throw new UsageError('the task has no action', 'give one of --http <url>, --queue <url> or --job <name> (or --file)')
  return action
}

function fieldsOf(value: unknown): Fields {
  return isFields(value) ? value : {}
}

function parsePayload(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    throw new UsageError(`--payload is not JSON: ${errorMessage(error)}`, `quote it for the shell, e.g. --payload '{"job":"nightly"}'`)
  }
}

function readDocument(path: string): Fields {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    const code = error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : errorMessage(error)
    throw new UsageError(`cannot read ${path}: ${code}`, 'check --file')
  }
  // YAML is a superset of JSON: one parser for both.
  let value: unknown
  try {
    value = parseYaml(text)
  } catch (error) {
    throw new UsageError(`${path} is neither JSON nor YAML: ${errorMessage(error).split('\n')[0] ?? ''}`, 'see examples/hooks/ for task documents')
  }
  if (!isFields(value)) throw new UsageError(`${path}: expected one task object`)
  return value
}

/** --header "Name: value": a secret header's value would show in `ps` and be stored: refused with the way to give it. */
function parseHeaders(lines: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon <= 0) throw new UsageError(`bad --header "${line.slice(0, 40)}"`, 'use --header "Name: value"')
    const name = line.slice(0, colon).trim()
    if (isSecretHeader(name)) {
      throw new UsageError(
        `--header ${name}: a secret header's value is not given on the command line (ps shows it) nor stored in the task`,
        `put it in the service's environment and give --header-from-env "${name}=VARIABLE", or in a file on its host: --header-from-file "${name}=/path"`,
      )
    }
    out[name] = line.slice(colon + 1).trim()
  }
  return out
}

/** "Name=value" pairs of --header-from-env / --header-from-file. */
function parsePairs(items: string[], flag: string, example: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const item of items) {
    const equals = item.indexOf('=')
    const name = item.slice(0, equals).trim()
    const value = item.slice(equals + 1).trim()
    if (equals <= 0 || !value) throw new UsageError(`bad --${flag} "${item}"`, `use --${flag} "${example}"`)
    out[name] = value
  }
  return out
}
