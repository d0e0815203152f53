import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {PassThrough} from 'node:stream'
import {describe, expect, it} from 'vitest'

import {ConfigError} from '../../src/core/errors.js'
import {registerSecret} from '../../src/core/secrets.js'
import {asctime, buildPythonLogging, loadPythonLogging} from '../../src/sqs-listener/logging.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-sqs-logging-')
let n = 0

function capture() {
  const stream = new PassThrough()
  let text = ''
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()))
  return {stream, text: () => text}
}

const ASCTIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}$/

describe('Python logging dict-config', () => {
  it('honours the original example: formatter, FileHandler level, logger level, propagate no', () => {
    const file = join(dir, `log-${++n}`, 'sqslistener.log')
    const config = join(dir, `logging-${n}.yml`)
    writeFileSync(
      config,
      `---
version: 1
formatters:
  default:
    format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    level: DEBUG
    formatter: default
    filename: ${file}
loggers:
  SQSListener:
    level: DEBUG
    handlers: [file]
    propagate: no
`,
    )
    const logging = loadPythonLogging(config)
    expect(logging.warnings).toEqual([])
    logging.logger.debug('polling', {queue: 'bang-queue'})
    logging.logger.warn('careful')
    logging.close()
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    expect(lines).toHaveLength(2)
    const [time, name, level, message] = (lines[0] ?? '').split(' - ')
    expect(time).toMatch(ASCTIME)
    expect([name, level, message]).toEqual(['SQSListener', 'DEBUG', 'polling queue=bang-queue'])
    expect(lines[1]?.endsWith(' - SQSListener - WARNING - careful')).toBe(true)
  })

  it('filters by logger level and by handler level separately, and propagates to root handlers', () => {
    const out = capture()
    const err = capture()
    const logging = buildPythonLogging(
      {
        version: 1,
        formatters: {short: {format: '%(levelname)-8s|%(message)s'}},
        handlers: {
          console: {class: 'logging.StreamHandler', level: 'WARNING', formatter: 'short', stream: 'ext://sys.stdout'},
          all: {class: 'logging.StreamHandler', formatter: 'short'},
        },
        loggers: {SQSListener: {level: 'INFO', handlers: ['console']}},
        root: {level: 'ERROR', handlers: ['all']},
      },
      'inline',
      {stdout: out.stream, stderr: err.stream},
    )
    expect(logging.warnings).toEqual([])
    logging.logger.debug('d')
    logging.logger.info('i')
    logging.logger.warn('w')
    logging.logger.error('e')
    expect(out.text()).toBe('WARNING |w\nERROR   |e\n')
    // root's level does not gate what propagates from SQSListener (Python semantics)
    expect(err.text()).toBe('INFO    |i\nWARNING |w\nERROR   |e\n')
    expect(logging.writesStderr).toBe(true)
    expect(logging.logger.level).toBe('info')
  })

  it.each([false, 'no', 'Off', 'FALSE', 0])('propagate: %j keeps records away from root handlers', (propagate) => {
    const out = capture()
    const err = capture()
    const logging = buildPythonLogging(
      {
        version: 1,
        handlers: {own: {class: 'logging.StreamHandler', stream: 'ext://sys.stdout'}, rooted: {class: 'logging.StreamHandler'}},
        loggers: {SQSListener: {level: 'INFO', handlers: ['own'], propagate}},
        root: {level: 'DEBUG', handlers: ['rooted']},
      },
      'inline',
      {stdout: out.stream, stderr: err.stream},
    )
    logging.logger.info('only mine')
    expect(out.text()).toBe('only mine\n')
    expect(err.text()).toBe('')
    expect(logging.writesStderr).toBe(false) // root's stderr handler is not reached
  })

  it('warns once, clearly, about everything it does not support, and keeps going', () => {
    const err = capture()
    const logging = buildPythonLogging(
      {
        version: 2,
        filters: {f: {}},
        formatters: {
          x: {format: '%(asctime)s %(lineno)d %(process)d %(message)s', datefmt: '%H:%M'},
          custom: {'()': 'my.Formatter'},
        },
        handlers: {
          rot: {class: 'logging.handlers.RotatingFileHandler', filename: '/tmp/x.log', maxBytes: 10},
          s: {class: 'logging.StreamHandler', formatter: 'x', filters: ['f'], stream: 'ext://my.stream'},
        },
        loggers: {SQSListener: {level: 'LOUD', handlers: ['s', 'rot']}, boto: {level: 'DEBUG'}},
      },
      'conf.yml',
      {stderr: err.stream},
    )
    const text = logging.warnings.join('\n')
    for (const expected of [
      'conf.yml: filters: not supported',
      'conf.yml: version: expected 1',
      'formatters.x.datefmt: not supported',
      '%(lineno), %(process) not supported',
      'formatters.custom.(): not supported',
      'handlers.rot.class: "logging.handlers.RotatingFileHandler" is not supported',
      'handlers.s.stream: "ext://my.stream" not supported',
      'handlers.s.filters: not supported',
      'loggers.SQSListener.level: unknown level "LOUD"',
      'loggers.boto: cistern logs only as "SQSListener"',
      'loggers.SQSListener.handlers: no usable handler named "rot"',
    ]) {
      expect(text).toContain(expected)
    }
    // the unsupported placeholders are written as "-"; the level fell back to NOTSET → root default WARNING
    logging.logger.info('hidden')
    logging.logger.warn('shown')
    expect(err.text()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - - shown\n$/)
  })

  it('falls back to stderr (warnings and errors) when no handler reaches the logger', () => {
    const err = capture()
    const logging = buildPythonLogging({version: 1}, 'empty.yml', {stderr: err.stream})
    expect(logging.warnings.join('\n')).toContain('no handler reaches the "SQSListener" logger')
    logging.logger.info('quiet')
    logging.logger.error('loud')
    expect(err.text()).toBe('loud\n')
  })

  it('masks registered secrets and secret-named fields', () => {
    const err = capture()
    registerSecret('hunter2-secret-value')
    const logging = buildPythonLogging(
      {version: 1, handlers: {h: {class: 'logging.StreamHandler'}}, root: {level: 'DEBUG', handlers: ['h']}},
      'x',
      {stderr: err.stream},
    )
    logging.logger.info('token is hunter2-secret-value', {api_key: 'abc', user: 'me'})
    expect(err.text()).toBe('token is [redacted] api_key=[redacted] user=me\n')
  })

  it('rejects a file that is not a mapping or cannot be read, naming it', () => {
    expect(() => buildPythonLogging(['a'], 'list.yml')).toThrow(ConfigError)
    expect(() => loadPythonLogging(join(dir, 'missing.yml'))).toThrow(/missing\.yml: cannot read the logging config/)
  })

  it('formats asctime like Python', () => {
    expect(asctime(new Date(2026, 0, 2, 3, 4, 5, 6))).toBe('2026-01-02 03:04:05,006')
  })
})
