/**
 * The subset of Python's logging dict-config (logging.config.dictConfig) that Bang!'s
 * logging-conf.yml used, turned into a cistern Logger: `version`, formatters' `format` with
 * %(asctime)s %(name)s %(levelname)s %(message)s, logging.FileHandler (filename, level, mode),
 * logging.StreamHandler (stream ext://sys.stderr|stdout), handler and logger levels, propagation
 * to `root`. Anything else is reported once as a warning and otherwise ignored.
 */
import {closeSync, mkdirSync, openSync, readFileSync, writeSync} from 'node:fs'
import {dirname} from 'node:path'
import {parse} from 'yaml'

import {ConfigError, errorMessage} from '../core/errors.js'
import type {LogFields, LogLevel, Logger} from '../core/log.js'
import {redact} from '../core/secrets.js'
import {resolvePath} from './config.js'

/** The logger name the original used (logging.getLogger("SQSListener")): its entry in `loggers` applies. */
export const LOGGER_NAME = 'SQSListener'

const LEVELS: Partial<Record<string, number>> = {NOTSET: 0, DEBUG: 10, INFO: 20, WARN: 30, WARNING: 30, ERROR: 40, CRITICAL: 50, FATAL: 50}
const RECORD_LEVEL: Record<LogLevel, {no: number; name: string}> = {
  debug: {no: 10, name: 'DEBUG'},
  info: {no: 20, name: 'INFO'},
  warn: {no: 30, name: 'WARNING'},
  error: {no: 40, name: 'ERROR'},
}

interface Sink {
  level: number
  /** Writes to stderr. */
  stderr?: boolean
  format: (record: LogRecord) => string
  write: (line: string) => void
  close?: () => void
}

interface LogRecord {
  time: Date
  levelname: string
  name: string
  message: string
}

export interface PythonLogging {
  logger: Logger
  /** One line per unsupported thing found in the file. */
  warnings: string[]
  /** True when some handler writes to stderr (so warnings need not be repeated there). */
  writesStderr: boolean
  close(): void
}

/** Read and build; a missing or unparsable file is a ConfigError. */
export function loadPythonLogging(path: string, streams: {stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream} = {}): PythonLogging {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigError(`${path}: cannot read the logging config (${codeOf(error)}) — fix logging_config_path or remove it to log to stderr`, path)
  }
  let doc: unknown
  try {
    doc = parse(text)
  } catch (error) {
    throw new ConfigError(`${path}: not YAML: ${errorMessage(error).split('\n').at(0) ?? ''}`, path)
  }
  return buildPythonLogging(doc, path, streams)
}

export function buildPythonLogging(
  doc: unknown,
  source: string,
  streams: {stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream} = {},
): PythonLogging {
  const warnings: string[] = []
  const warn = (key: string, what: string) => warnings.push(`${source}: ${key}: ${what}`)
  if (!isObject(doc)) throw new ConfigError(`${source}: the logging config must be a mapping (Python logging dict-config)`, source)

  const stderr = streams.stderr ?? process.stderr
  const stdout = streams.stdout ?? process.stdout

  for (const key of Object.keys(doc)) {
    if (['version', 'formatters', 'handlers', 'loggers', 'root', 'disable_existing_loggers'].includes(key)) continue
    warn(key, 'not supported by cistern, ignored')
  }
  if (doc.version !== 1) warn('version', `expected 1 (the only dict-config version), got ${JSON.stringify(doc.version)}; read as version 1`)

  // formatters
  const formatters = new Map<string, (record: LogRecord) => string>()
  for (const [name, spec] of Object.entries(asObject(doc.formatters, 'formatters', warn))) {
    if (!isObject(spec)) {
      warn(`formatters.${name}`, 'expected a mapping, ignored')
      continue
    }
    for (const key of Object.keys(spec)) {
      if (key === 'format' || key === 'fmt') continue
      if (key === 'style' && spec.style === '%') continue
      warn(`formatters.${name}.${key}`, key === 'datefmt' ? 'not supported, %(asctime)s keeps Python\'s default "YYYY-MM-DD HH:MM:SS,mmm"' : 'not supported, ignored')
    }
    const format = typeof spec.format === 'string' ? spec.format : typeof spec.fmt === 'string' ? spec.fmt : '%(message)s'
    formatters.set(name, compileFormat(format, `formatters.${name}.format`, warn))
  }

  // handlers
  const opened: Array<() => void> = []
  const handlers = new Map<string, Sink>()
  for (const [name, spec] of Object.entries(asObject(doc.handlers, 'handlers', warn))) {
    const where = `handlers.${name}`
    if (!isObject(spec)) {
      warn(where, 'expected a mapping, ignored')
      continue
    }
    const level = parseLevel(spec.level, `${where}.level`, warn) ?? 0
    let format = compileFormat('%(message)s', where, warn)
    if (spec.formatter !== undefined) {
      const found = formatters.get(text(spec.formatter))
      if (found) format = found
      else warn(`${where}.formatter`, `no formatter named "${text(spec.formatter)}", using %(message)s`)
    }
    const known = new Set(['class', 'level', 'formatter'])
    if (spec.class === 'logging.FileHandler') {
      if (typeof spec.filename !== 'string' || spec.filename === '') {
        warn(where, 'logging.FileHandler without a filename, ignored')
        continue
      }
      const mode = spec.mode === undefined ? 'a' : text(spec.mode)
      if (mode !== 'a' && mode !== 'w') warn(`${where}.mode`, `"${mode}" not supported, appending`)
      if (spec.encoding !== undefined && !/^utf-?8$/i.test(text(spec.encoding))) warn(`${where}.encoding`, 'only UTF-8 is written')
      for (const key of ['filename', 'mode', 'encoding', 'delay']) known.add(key)
      const file = resolvePath(spec.filename, process.cwd())
      let fd: number
      try {
        mkdirSync(dirname(file), {recursive: true})
        fd = openSync(file, mode === 'w' ? 'w' : 'a')
      } catch (error) {
        throw new ConfigError(`${source}: ${where}.filename: cannot open ${file} (${codeOf(error)})`, source, undefined, `${where}.filename`)
      }
      opened.push(() => closeSync(fd))
      handlers.set(name, {level, format, write: (line) => writeSync(fd, line + '\n')})
    } else if (spec.class === 'logging.StreamHandler') {
      known.add('stream')
      const stream = spec.stream === undefined ? 'ext://sys.stderr' : text(spec.stream)
      if (stream !== 'ext://sys.stderr' && stream !== 'ext://sys.stdout') warn(`${where}.stream`, `"${stream}" not supported, writing to stderr`)
      const target = stream === 'ext://sys.stdout' ? stdout : stderr
      handlers.set(name, {level, format, stderr: target === stderr, write: (line) => target.write(line + '\n')})
    } else {
      warn(`${where}.class`, `${JSON.stringify(spec.class)} is not supported (only logging.FileHandler and logging.StreamHandler); this handler is ignored`)
      continue
    }
    for (const key of Object.keys(spec)) if (!known.has(key)) warn(`${where}.${key}`, 'not supported, ignored')
  }

  // loggers: the original logged as "SQSListener"; root receives what propagates.
  const pick = (names: unknown, where: string): Sink[] => {
    if (names === undefined) return []
    if (!Array.isArray(names)) {
      warn(where, 'expected a list of handler names, ignored')
      return []
    }
    return names.flatMap((handlerName) => {
      const found = handlers.get(text(handlerName))
      if (!found) warn(where, `no usable handler named "${text(handlerName)}"`)
      return found ? [found] : []
    })
  }
  const loggers = asObject(doc.loggers, 'loggers', warn)
  for (const name of Object.keys(loggers)) {
    if (name !== LOGGER_NAME) warn(`loggers.${name}`, `cistern logs only as "${LOGGER_NAME}"; this logger is ignored`)
  }
  const own = isObject(loggers[LOGGER_NAME]) ? loggers[LOGGER_NAME] : undefined
  const root = isObject(doc.root) ? doc.root : undefined
  if (doc.root !== undefined && !root) warn('root', 'expected a mapping, ignored')
  for (const [spec, where] of [
    [own, `loggers.${LOGGER_NAME}`],
    [root, 'root'],
  ] as const) {
    if (!spec) continue
    for (const key of Object.keys(spec)) {
      if (['level', 'handlers', 'propagate'].includes(key)) continue
      warn(`${where}.${key}`, 'not supported, ignored')
    }
  }

  const ownLevel = own ? parseLevel(own.level, `loggers.${LOGGER_NAME}.level`, warn) : undefined
  const rootLevel = root ? parseLevel(root.level, 'root.level', warn) : undefined
  // Python: a NOTSET logger takes its level from root (default WARNING).
  const threshold = ownLevel !== undefined && ownLevel > 0 ? ownLevel : (rootLevel ?? 30)
  // YAML 1.1 (PyYAML) booleans: no/off/false in any case are false.
  const propagate = own ? !(own.propagate === false || own.propagate === 0 || /^(no|off|false|n)$/i.test(text(own.propagate))) : true
  let sinks = [...(own ? pick(own.handlers, `loggers.${LOGGER_NAME}.handlers`) : []), ...(propagate && root ? pick(root.handlers, 'root.handlers') : [])]
  if (sinks.length === 0) {
    // Python's "last resort": WARNING and above, bare message, to stderr.
    warnings.push(`${source}: no handler reaches the "${LOGGER_NAME}" logger; warnings and errors go to stderr`)
    sinks = [{level: 30, stderr: true, format: (record) => record.message, write: (line) => stderr.write(line + '\n')}]
  }
  // Would a warning reach stderr through this config? (Then start-up warnings are not repeated there.)
  const writesStderr = threshold <= 30 && sinks.some((sink) => sink.stderr && sink.level <= 30)

  const logger = makeLogger(sinks, threshold, {})
  return {
    logger,
    warnings,
    writesStderr,
    close: () => {
      for (const close of opened.splice(0)) close()
    },
  }
}

function makeLogger(sinks: Sink[], threshold: number, fields: LogFields): Logger {
  const emit = (at: LogLevel, message: string, extra?: LogFields) => {
    const level = RECORD_LEVEL[at]
    if (level.no < threshold) return
    const merged = redact({...fields, ...extra}) as LogFields
    const suffix = Object.entries(merged)
      .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
      .join(' ')
    const text = (redact(message) as string) + (suffix ? ` ${suffix}` : '')
    const record: LogRecord = {time: new Date(), levelname: level.name, name: LOGGER_NAME, message: text}
    for (const sink of sinks) {
      if (level.no >= sink.level) sink.write(sink.format(record))
    }
  }
  const levelName: LogLevel = threshold <= 10 ? 'debug' : threshold <= 20 ? 'info' : threshold <= 30 ? 'warn' : 'error'
  return {
    level: levelName,
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (more) => makeLogger(sinks, threshold, {...fields, ...more}),
  }
}

/** %-style format → function; %(name)[flags][width]s for the four supported fields. */
function compileFormat(format: string, where: string, warn: (key: string, what: string) => void): (record: LogRecord) => string {
  const pattern = /%%|%\((\w+)\)(-?)(\d*)(?:\.\d+)?([sdfrx])/g
  const unsupported = new Set<string>()
  for (const [whole, field = ''] of format.matchAll(pattern)) {
    if (whole !== '%%' && !['asctime', 'name', 'levelname', 'message'].includes(field)) unsupported.add(field)
  }
  if (unsupported.size > 0) {
    warn(where, `${[...unsupported].map((name) => `%(${name})`).join(', ')} not supported (only asctime, name, levelname, message); written as "-"`)
  }
  return (record) =>
    format.replace(pattern, (whole, field: string | undefined, left: string, width: string) => {
      if (whole === '%%') return '%'
      let value: string
      switch (field) {
        case 'asctime':
          value = asctime(record.time)
          break
        case 'name':
          value = record.name
          break
        case 'levelname':
          value = record.levelname
          break
        case 'message':
          value = record.message
          break
        default:
          value = '-'
      }
      const n = Number(width || 0)
      return left ? value.padEnd(n) : value.padStart(n)
    })
}

/** Python's default asctime: local time "2026-11-26 06:42:10,123". */
export function asctime(time: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0')
  return `${time.getFullYear()}-${p(time.getMonth() + 1)}-${p(time.getDate())} ${p(time.getHours())}:${p(time.getMinutes())}:${p(time.getSeconds())},${p(time.getMilliseconds(), 3)}`
}

function parseLevel(value: unknown, where: string, warn: (key: string, what: string) => void): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value
  const level = LEVELS[text(value).toUpperCase()]
  if (level !== undefined) return level
  warn(where, `unknown level ${JSON.stringify(value)}, using NOTSET`)
  return undefined
}

/** ENOENT, EACCES…: what a failed file operation says; else its message. */
function codeOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' ? code : errorMessage(error)
}

/** A YAML value as text: a scalar as written (what Python's str() gives), anything else as JSON. */
function text(value: unknown): string {
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  return value === undefined ? 'undefined' : JSON.stringify(value)
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function asObject(value: unknown, where: string, warn: (key: string, what: string) => void): Record<string, unknown> {
  if (value === undefined || value === null) return {}
  if (isObject(value)) return value
  warn(where, 'expected a mapping, ignored')
  return {}
}
