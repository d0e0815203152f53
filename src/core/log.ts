import {Chalk, supportsColorStderr} from 'chalk'

import * as masking from './secrets.js'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFormat = 'human' | 'json'
export type LogFields = Record<string, unknown>

export interface Logger {
  debug(message: string, fields?: LogFields): void
  info(message: string, fields?: LogFields): void
  warn(message: string, fields?: LogFields): void
  error(message: string, fields?: LogFields): void
  /** A logger that adds these fields to every line (e.g. {component: 'drain'}). */
  child(fields: LogFields): Logger
  readonly level: LogLevel
}

export interface LoggerOptions {
  level?: LogLevel
  /** human on a TTY, json otherwise, unless set. */
  format?: LogFormat
  stream?: NodeJS.WritableStream & {isTTY?: boolean}
  fields?: LogFields
  /** Extra secret values (tokens read from env or files) to mask wherever they appear. */
  secrets?: string[]
  /** Colour human lines (default: the stream is a TTY and neither NO_COLOR nor FORCE_COLOR=0 is set). */
  color?: boolean
}

/**
 * Whether to colour lines written to `stream`. NO_COLOR (any non-empty value, see no-color.org)
 * wins; FORCE_COLOR forces; otherwise only a TTY gets colour.
 */
export function colorLevel(stream: {isTTY?: boolean}, env: NodeJS.ProcessEnv = process.env): 0 | 1 | 2 | 3 {
  if (env.NO_COLOR) return 0
  if (env.FORCE_COLOR !== undefined) {
    if (env.FORCE_COLOR === '0' || env.FORCE_COLOR === 'false') return 0
    const forced = Number.parseInt(env.FORCE_COLOR, 10)
    return (Number.isNaN(forced) ? 1 : Math.min(3, Math.max(1, forced))) as 1 | 2 | 3
  }
  if (!stream.isTTY || env.TERM === 'dumb') return 0
  return (supportsColorStderr ? supportsColorStderr.level : 1) || 1
}

const ORDER: Record<LogLevel, number> = {debug: 10, info: 20, warn: 30, error: 40}
export const LOG_LEVELS = Object.keys(ORDER) as LogLevel[]

// Kept for the pieces until they import from core/secrets.js, where masking moved.
/** @deprecated import registerSecret from core/secrets.js */
export const registerSecret = masking.registerSecret
/** @deprecated import redact from core/secrets.js */
export const redact = masking.redact

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr
  const level = options.level ?? 'info'
  const format = options.format ?? (stream.isTTY ? 'human' : 'json')
  const base = options.fields ?? {}
  const extraSecrets = options.secrets ?? []

  const chalk = new Chalk({level: options.color === undefined ? colorLevel(stream) : options.color ? colorLevel({isTTY: true}, {}) || 1 : 0})
  const colour: Record<LogLevel, (s: string) => string> = {
    debug: chalk.gray,
    info: chalk.cyan,
    warn: chalk.yellow,
    error: chalk.red,
  }

  function write(at: LogLevel, message: string, fields?: LogFields) {
    if (ORDER[at] < ORDER[level]) return
    const merged = masking.redact({...base, ...fields}, extraSecrets) as LogFields
    const msg = masking.maskSecrets(message, extraSecrets)
    if (format === 'json') {
      const line: LogFields = {time: new Date().toISOString(), level: at, msg}
      // A field may not overwrite the line's own time/level/msg.
      for (const [key, item] of Object.entries(merged)) line[key in line ? `field_${key}` : key] = item
      stream.write(JSON.stringify(line) + '\n')
      return
    }
    const extras = Object.entries(merged)
      .map(([key, item]) => `${key}=${typeof item === 'string' ? item : JSON.stringify(item)}`)
      .join(' ')
    stream.write(`${colour[at](at.padEnd(5))} ${msg}${extras ? ' ' + chalk.gray(extras) : ''}\n`)
  }

  return {
    level,
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (fields) => createLogger({...options, level, format, stream, fields: {...base, ...fields}}),
  }
}

function nothing(): void {
  // dropped
}

/** A logger that drops everything: the default for library calls made without one. */
export const silentLogger: Logger = {
  level: 'error',
  debug: nothing,
  info: nothing,
  warn: nothing,
  error: nothing,
  child() {
    return silentLogger
  },
}

/**
 * A URL fit for messages and log fields: no user, password or query (where tokens live).
 * `invalid` is returned when it does not parse.
 */
export function displayUrl(url: string, invalid = '<invalid url>'): string {
  try {
    const parsed = new URL(url)
    parsed.username = ''
    parsed.password = ''
    parsed.search = ''
    return parsed.toString()
  } catch {
    return invalid
  }
}
