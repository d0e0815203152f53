import {describe, expect, it} from 'vitest'

import {colorLevel, createLogger, displayUrl, silentLogger} from '../../src/core/log.js'
import {redact, registerSecret} from '../../src/core/secrets.js'

/** A stream that keeps what is written; isTTY as asked. */
function sink(isTTY = false) {
  const chunks: string[] = []
  const stream = {isTTY, write: (text: string) => (chunks.push(text), true)} as unknown as NodeJS.WritableStream & {isTTY?: boolean}
  return {stream, text: () => chunks.join(''), lines: () => chunks.join('').split('\n').filter(Boolean)}
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001B\[/

describe('createLogger formats', () => {
  it('writes JSON lines when the stream is not a TTY', () => {
    const out = sink(false)
    const log = createLogger({stream: out.stream})
    log.info('drain started', {queue: 'sqlite:/tmp/x.db#webhooks', batch: 10})
    const [line] = out.lines().map((l) => JSON.parse(l))
    expect(line).toMatchObject({level: 'info', msg: 'drain started', queue: 'sqlite:/tmp/x.db#webhooks', batch: 10})
    expect(new Date(line.time).getTime()).not.toBeNaN()
    expect(out.text()).not.toMatch(ANSI)
  })

  it('writes human lines on a TTY, coloured unless NO_COLOR', () => {
    const out = sink(true)
    createLogger({stream: out.stream, color: true}).warn('Jenkins is quieting down', {url: 'http://ci/'})
    expect(out.text()).toMatch(ANSI)
    // eslint-disable-next-line no-control-regex
    expect(out.text().replace(/\u001B\[[0-9;]*m/g, '')).toBe('warn  Jenkins is quieting down url=http://ci/\n')

    const plain = sink(true)
    createLogger({stream: plain.stream, color: false}).warn('Jenkins is quieting down', {url: 'http://ci/'})
    expect(plain.text()).toBe('warn  Jenkins is quieting down url=http://ci/\n')
  })

  it('--log-format wins over the TTY guess', () => {
    const tty = sink(true)
    createLogger({stream: tty.stream, format: 'json'}).info('x')
    expect(JSON.parse(tty.lines()[0]!).msg).toBe('x')
    const pipe = sink(false)
    createLogger({stream: pipe.stream, format: 'human'}).info('x', {n: 1})
    expect(pipe.text()).toBe('info  x n=1\n')
  })

  it('decides colour from NO_COLOR, FORCE_COLOR and the TTY', () => {
    expect(colorLevel({isTTY: true}, {NO_COLOR: '1'})).toBe(0)
    expect(colorLevel({isTTY: true}, {NO_COLOR: '1', FORCE_COLOR: '3'})).toBe(0)
    expect(colorLevel({isTTY: false}, {})).toBe(0)
    expect(colorLevel({isTTY: true}, {TERM: 'dumb'})).toBe(0)
    expect(colorLevel({isTTY: true}, {})).toBeGreaterThan(0)
    expect(colorLevel({isTTY: false}, {FORCE_COLOR: '2'})).toBe(2)
    expect(colorLevel({isTTY: true}, {FORCE_COLOR: '0'})).toBe(0)
    // NO_COLOR set but empty does not count (no-color.org)
    expect(colorLevel({isTTY: true}, {NO_COLOR: ''})).toBeGreaterThan(0)
  })

  it('filters by level and carries child fields; fields cannot overwrite level/msg', () => {
    const out = sink()
    const log = createLogger({stream: out.stream, level: 'warn', fields: {component: 'drain'}})
    log.debug('no')
    log.info('no')
    log.warn('yes', {level: 'spoofed', msg: 'spoofed'})
    log.child({messageId: 'm1'}).error('child line')
    const lines = out.lines().map((l) => JSON.parse(l))
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatchObject({level: 'warn', msg: 'yes', component: 'drain', field_level: 'spoofed', field_msg: 'spoofed'})
    expect(lines[1]).toMatchObject({level: 'error', msg: 'child line', component: 'drain', messageId: 'm1'})
    expect(log.child({}).level).toBe('warn')
  })

  it('silentLogger writes nothing', () => {
    expect(() => silentLogger.child({a: 1}).error('x')).not.toThrow()
  })
})

describe('secrets never reach a log line', () => {
  const secret = 'ghp_abcdefghijklmnop123456'
  registerSecret(secret)
  registerSecret('abc') // too short to mask safely: ignored

  it('drops secret-named keys at any depth', () => {
    const out = sink()
    createLogger({stream: out.stream}).info('request', {
      token: 'plain-token-value',
      headers: {Authorization: 'Bearer xyz-123456', 'x-api-key': 'k-123456789', accept: 'json'},
      jobData: {artifactCredentials: {secretAccessKey: 'AKIA-SECRET-1', sessionToken: 'sess-1'}},
      password: 'hunter22',
    })
    const text = out.text()
    for (const value of ['plain-token-value', 'xyz-123456', 'k-123456789', 'AKIA-SECRET-1', 'sess-1', 'hunter22']) expect(text).not.toContain(value)
    expect(JSON.parse(text).headers.accept).toBe('json')
    expect(JSON.parse(text).token).toBe('[redacted]')
  })

  it('masks registered secret values in messages, fields and errors, in both formats', () => {
    for (const format of ['json', 'human'] as const) {
      const out = sink()
      const log = createLogger({stream: out.stream, format})
      log.error(`GitHub refused ${secret}`, {note: `header was token ${secret}`, list: [secret], other: 'abc stays', error: new Error(`bad credentials ${secret}`)})
      expect(out.text()).not.toContain(secret)
      expect(out.text()).toContain('[redacted]')
      expect(out.text()).toContain('abc stays')
    }
  })

  it('masks per-logger secrets and credentials inside URLs', () => {
    const out = sink()
    const log = createLogger({stream: out.stream, secrets: ['per-logger-secret']})
    log.info('forwarding to https://admin:s3cr3tpass@jenkins.example.com/github-webhook/?token=trigger-tok-99&job=x', {
      note: 'per-logger-secret here',
    })
    const text = out.text()
    expect(text).not.toContain('s3cr3tpass')
    expect(text).not.toContain('trigger-tok-99')
    expect(text).not.toContain('per-logger-secret')
    expect(text).toContain('https://admin:[redacted]@jenkins.example.com/github-webhook/?token=[redacted]&job=x')
  })

  it('redact() is a deep copy that leaves the input alone', () => {
    const input = {a: {password: 'p4ssword'}, b: [secret]}
    const copy = redact(input) as {a: {password: string}; b: string[]}
    expect(copy).toEqual({a: {password: '[redacted]'}, b: ['[redacted]']})
    expect(input.a.password).toBe('p4ssword')
  })
})

describe('displayUrl', () => {
  it('drops user, password and query, and says when the URL does not parse', () => {
    expect(displayUrl('https://bot:s3cret@jenkins.example.com/job/x/?token=abc#top')).toBe('https://jenkins.example.com/job/x/#top')
    expect(displayUrl('not a url')).toBe('<invalid url>')
    expect(displayUrl('not a url', 'not a url')).toBe('not a url')
  })
})
