import {describe, expect, it} from 'vitest'

import {
  type Outcome,
  type TargetAnswer,
  TargetGates,
  TargetJudge,
  dead,
  delivered,
  isOutcome,
  released,
  retry,
  stop,
  targetDown,
  transportErrorKind,
} from '../../src/core/delivery.js'
import {CisternError, ExitCode, UsageError, mostSpecificExitCode, runOutcome} from '../../src/core/errors.js'
import {type LogFields, type Logger, createLogger} from '../../src/core/log.js'

/** A clock the test moves. */
function clock(start = Date.parse('2030-01-01T12:00:00Z')) {
  let now = start
  return {now: () => now, advance: (ms: number) => (now += ms)}
}

function memoryLog(): Logger & {lines: Array<{level: string; msg: string; fields: LogFields}>} {
  const lines: Array<{level: string; msg: string; fields: LogFields}> = []
  const stream = {write: (text: string) => (lines.push(JSON.parse(text)), true)} as unknown as NodeJS.WritableStream
  return Object.assign(createLogger({stream, format: 'json', level: 'debug'}), {lines})
}

/** The highest jitter: back-offs are exactly base, 2·base, 4·base… */
const high = () => 0.99999

function judged(options: {once?: boolean} = {}) {
  const time = clock()
  const gates = new TargetGates({once: options.once, now: time.now, backoff: {random: high}})
  return {gates, judge: new TargetJudge(gates), time}
}

describe('outcomes', () => {
  it('are plain data, made by their constructors', () => {
    const error = new CisternError('token refused')
    const all: Outcome[] = [delivered(), retry('503', 5), dead('malformed'), released('stopping', 2, 'jenkins:ci'), targetDown('github:acme', '401', {credentials: true}), stop(error)]
    expect(all.map((o) => o.kind)).toEqual(['delivered', 'retry', 'dead', 'released', 'target-down', 'stop'])
    expect(all.every(isOutcome)).toBe(true)
    expect(retry('503')).toEqual({kind: 'retry', reason: '503'})
    expect(targetDown('jenkins:ci', 'refused')).toEqual({kind: 'target-down', target: 'jenkins:ci', reason: 'refused', credentials: false})
    expect(released('x', 3, 'jobs')).toEqual({kind: 'released', reason: 'x', delaySeconds: 3, target: 'jobs'})
    for (const value of [undefined, null, 'delivered', {kind: 'done'}, {}]) expect(isOutcome(value)).toBe(false)
  })
})

describe('TargetJudge: the verdict table of docs/delivery.md', () => {
  const target = 'jenkins:ci'

  it('2xx → delivered, and the target counts a success', () => {
    for (const status of [200, 201, 202, 204, 299]) {
      const {judge, gates} = judged()
      expect(judge.verdict(target, 'm1', {status})).toEqual(delivered())
      expect(gates.successes(target)).toBe(1)
    }
  })

  it('connection refused/reset, DNS failure, timeout → target down (transient)', () => {
    const {judge} = judged()
    const texts = {refused: 'connection refused', reset: 'connection reset', dns: 'host not found', timeout: 'timed out'} as const
    for (const [error, text] of Object.entries(texts)) {
      const answer = {error, detail: 'after 30 s'} as TargetAnswer
      expect(judge.verdict(target, 'm1', answer)).toEqual(targetDown(target, `jenkins:ci: ${text}: after 30 s`))
    }
  })

  it('5xx, 408, 429 → target down (transient); a Retry-After travels with it', () => {
    const {judge} = judged()
    for (const status of [500, 502, 503, 504, 599, 408, 429]) {
      const outcome = judge.verdict(target, `m${status}`, {status})
      expect(outcome).toMatchObject({kind: 'target-down', target, credentials: false, reason: `jenkins:ci answered ${status}`})
    }
    expect(judge.verdict(target, 'm', {status: 429, retryAfterSeconds: 42, detail: 'slow down'})).toMatchObject({
      kind: 'target-down',
      retryAfterSeconds: 42,
      reason: 'jenkins:ci answered 429: slow down',
    })
  })

  it('401, 403, 407 → target down (credentials)', () => {
    const {judge} = judged()
    for (const status of [401, 403, 407]) {
      expect(judge.verdict(target, `m${status}`, {status})).toMatchObject({kind: 'target-down', credentials: true})
    }
  })

  it('another 4xx, the first time for this message → retry soon (a suspect); so is a redirect nobody follows', () => {
    for (const status of [400, 404, 409, 410, 413, 422, 451, 302]) {
      const {judge} = judged()
      const outcome = judge.verdict(target, 'm1', {status})
      expect(outcome.kind).toBe('retry')
      expect(outcome).toMatchObject({reason: expect.stringContaining(`jenkins:ci answered ${status}`)})
      expect((outcome as {delaySeconds?: number}).delaySeconds).toBeUndefined()
    }
  })

  it('a message refused again after the target accepted others since → dead (this payload is refused)', () => {
    const {judge} = judged()
    expect(judge.verdict(target, 'poison', {status: 400, detail: 'bad payload'}).kind).toBe('retry')
    expect(judge.verdict(target, 'good', {status: 200}).kind).toBe('delivered')
    expect(judge.verdict(target, 'poison', {status: 400, detail: 'bad payload'})).toEqual(dead('jenkins:ci answered 400: bad payload again, while it accepted other messages'))
  })

  it('refused again with no success between → still only a suspect (nothing says it is the message)', () => {
    const {judge} = judged()
    expect(judge.verdict(target, 'lonely', {status: 422}).kind).toBe('retry')
    expect(judge.verdict(target, 'lonely', {status: 422}).kind).toBe('retry')
    expect(judge.verdict(target, 'lonely', {status: 422}).kind).toBe('retry')
  })

  it('N = 3 different messages in a row with the same 4xx and no success between → target down, nothing dead', () => {
    const {judge} = judged()
    expect(judge.verdict(target, 'a', {status: 404}).kind).toBe('retry')
    // the same message twice is one message of the streak
    expect(judge.verdict(target, 'a', {status: 404}).kind).toBe('retry')
    expect(judge.verdict(target, 'b', {status: 404}).kind).toBe('retry')
    expect(judge.verdict(target, 'c', {status: 404})).toMatchObject({kind: 'target-down', credentials: false, reason: 'jenkins:ci answered 404 (3 different messages in a row)'})
    // the streak goes on while nothing succeeds: every later 404 is the target's
    expect(judge.verdict(target, 'd', {status: 404}).kind).toBe('target-down')
    expect(judge.verdict(target, 'a', {status: 404}).kind).toBe('target-down')
  })

  it('after such a streak its messages are no suspects: once the target is fixed, a 404 for one of them is a first refusal', () => {
    const {judge} = judged()
    for (const id of ['a', 'b', 'c']) judge.verdict(target, id, {status: 404})
    expect(judge.verdict(target, 'x', {status: 200}).kind).toBe('delivered')
    expect(judge.verdict(target, 'a', {status: 404}).kind).toBe('retry')
  })

  it('the streak counts one kind of 4xx, and a success in between starts it again', () => {
    const {judge} = judged()
    expect(judge.verdict(target, 'a', {status: 400}).kind).toBe('retry')
    expect(judge.verdict(target, 'b', {status: 404}).kind).toBe('retry')
    expect(judge.verdict(target, 'c', {status: 400}).kind).toBe('retry')
    const {judge: other} = judged()
    other.verdict(target, 'a', {status: 404})
    other.verdict(target, 'b', {status: 404})
    other.verdict(target, 'ok', {status: 201})
    expect(other.verdict(target, 'c', {status: 404}).kind).toBe('retry')
  })

  it('targets are judged apart: one target\'s refusals do not count against another', () => {
    const {judge} = judged()
    judge.verdict('jenkins:a', 'm1', {status: 404})
    judge.verdict('jenkins:a', 'm2', {status: 404})
    expect(judge.verdict('jenkins:b', 'm3', {status: 404}).kind).toBe('retry')
    // a success on b does not make m1 dead on a
    judge.verdict('jenkins:b', 'm4', {status: 200})
    expect(judge.verdict('jenkins:a', 'm1', {status: 404}).kind).toBe('retry')
  })

  it('a success reported to the gates by the consumer counts too', () => {
    const {judge, gates} = judged()
    judge.verdict(target, 'poison', {status: 400})
    gates.succeeded(target)
    expect(judge.verdict(target, 'poison', {status: 400}).kind).toBe('dead')
  })

  it('suspectsInARow is adjustable', () => {
    const gates = new TargetGates()
    const judge = new TargetJudge(gates, {suspectsInARow: 2})
    expect(judge.verdict(target, 'a', {status: 404}).kind).toBe('retry')
    expect(judge.verdict(target, 'b', {status: 404}).kind).toBe('target-down')
  })
})

describe('transportErrorKind', () => {
  it('reads node, undici and fetch errors, through their causes', () => {
    const coded = (code: string) => Object.assign(new Error(code), {code})
    expect(transportErrorKind(coded('ECONNREFUSED'))).toBe('refused')
    expect(transportErrorKind(coded('ECONNRESET'))).toBe('reset')
    expect(transportErrorKind(coded('UND_ERR_SOCKET'))).toBe('reset')
    expect(transportErrorKind(coded('ENOTFOUND'))).toBe('dns')
    expect(transportErrorKind(coded('EAI_AGAIN'))).toBe('dns')
    expect(transportErrorKind(coded('UND_ERR_HEADERS_TIMEOUT'))).toBe('timeout')
    expect(transportErrorKind(new TypeError('fetch failed', {cause: coded('ECONNREFUSED')}))).toBe('refused')
    expect(transportErrorKind(Object.assign(new Error('The operation was aborted due to timeout'), {name: 'TimeoutError'}))).toBe('timeout')
    expect(transportErrorKind(new Error('boom'))).toBeUndefined()
    expect(transportErrorKind(undefined)).toBeUndefined()
  })
})

describe('TargetGates', () => {
  it('a failure closes the gate for 1 s, doubling per closure to a 60 s cap; a success opens it', () => {
    const time = clock()
    const gates = new TargetGates({now: time.now, backoff: {random: high}})
    expect(gates.isOpen('jenkins:ci')).toBe(true)
    const closedFor: number[] = []
    for (let i = 0; i < 8; i++) {
      gates.failed('jenkins:ci', '503')
      closedFor.push(gates.retryInMs('jenkins:ci'))
      expect(gates.isOpen('jenkins:ci')).toBe(false)
      time.advance(gates.retryInMs('jenkins:ci'))
      expect(gates.isOpen('jenkins:ci')).toBe(true)
      expect(gates.isDown('jenkins:ci')).toBe(true)
    }
    expect(closedFor).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000])
    gates.succeeded('jenkins:ci')
    expect(gates.isDown('jenkins:ci')).toBe(false)
    gates.failed('jenkins:ci', '503')
    expect(gates.retryInMs('jenkins:ci')).toBe(1000)
  })

  it('has jitter: half the wait is random', () => {
    const gates = new TargetGates({backoff: {random: () => 0}})
    gates.failed('t', 'down')
    expect(gates.retryInMs('t')).toBeGreaterThanOrEqual(490)
    expect(gates.retryInMs('t')).toBeLessThanOrEqual(500)
  })

  it('failures while the gate is closed (requests in flight together) do not lengthen it', () => {
    const time = clock()
    const gates = new TargetGates({now: time.now, backoff: {random: high}})
    gates.failed('t', 'refused')
    gates.failed('t', 'refused')
    gates.failed('t', 'refused')
    expect(gates.retryInMs('t')).toBe(1000)
  })

  it('a Retry-After longer than the back-off keeps the gate closed that long', () => {
    const gates = new TargetGates({backoff: {random: high}})
    gates.failed('github:acme', '429', {retryAfterMs: 42_000})
    expect(gates.retryInMs('github:acme')).toBeGreaterThan(41_000)
  })

  it('logs each change of a target\'s health once, not per message', () => {
    const time = clock()
    const log = memoryLog()
    const gates = new TargetGates({now: time.now, log, backoff: {random: high}})
    for (let i = 0; i < 5; i++) {
      gates.failed('jenkins:ci', 'connection refused')
      time.advance(5000)
    }
    gates.succeeded('jenkins:ci')
    gates.succeeded('jenkins:ci')
    const lines = log.lines.filter((line) => line.level !== 'debug').map((line) => `${line.level} ${line.msg}`)
    expect(lines).toEqual(['warn jenkins:ci is down: connection refused; its messages wait (next try in 1s)', 'info jenkins:ci is back after 25s'])
  })

  it('one-shot: gives a target up after giveUpAfterMs down with no success, and logs it once', () => {
    const time = clock()
    const log = memoryLog()
    const gates = new TargetGates({once: true, giveUpAfterMs: 30_000, now: time.now, log, backoff: {random: high}})
    gates.failed('jenkins:ci', '503')
    expect(gates.givenUp('jenkins:ci')).toBe(false)
    // until then the gate changes when it opens, or when the target is given up, whichever comes first
    expect(gates.changesInMs('jenkins:ci')).toBe(1000)
    time.advance(29_999)
    expect(gates.givenUp('jenkins:ci')).toBe(false)
    expect(gates.changesInMs('jenkins:ci')).toBe(0)
    time.advance(1)
    expect(gates.givenUp('jenkins:ci')).toBe(true)
    expect(gates.givenUp('jenkins:ci')).toBe(true)
    expect(gates.changesInMs('jenkins:ci')).toBeUndefined()
    // given up: closed for the rest of the run (a message for it is released for a back-off cap at least)
    expect(gates.isOpen('jenkins:ci')).toBe(false)
    expect(gates.heldBack('jenkins:ci')).toEqual(released('jenkins:ci is down: 503', 60, 'jenkins:ci'))
    expect(log.lines.filter((line) => line.msg.startsWith('giving up')).map((line) => line.msg)).toEqual([
      'giving up on jenkins:ci for this run: down for 30s with no success (503)',
    ])
    expect(gates.down()).toEqual([{target: 'jenkins:ci', reason: '503', since: '2030-01-01T12:00:00.000Z', givenUp: true}])
  })

  it('one-shot: refused credentials give the target up at once', () => {
    const gates = new TargetGates({once: true})
    gates.failed('github:acme', '401 Bad credentials', {credentials: true})
    expect(gates.givenUp('github:acme')).toBe(true)
  })

  it('a loop never gives up; refused credentials back off straight to the cap', () => {
    const time = clock()
    const gates = new TargetGates({now: time.now, backoff: {random: high}})
    gates.failed('github:acme', '401 Bad credentials', {credentials: true})
    expect(gates.retryInMs('github:acme')).toBe(60_000)
    time.advance(3_600_000)
    gates.failed('jenkins:ci', '503')
    time.advance(3_600_000)
    expect(gates.givenUp('github:acme')).toBe(false)
    expect(gates.givenUp('jenkins:ci')).toBe(false)
    expect(gates.isOpen('jenkins:ci')).toBe(true)
  })

  it('heldBack: a released outcome for the gate\'s remaining time', () => {
    const time = clock()
    const gates = new TargetGates({now: time.now, backoff: {random: high}})
    gates.failed('jenkins:ci', 'connection refused')
    gates.failed('jenkins:ci', 'connection refused')
    time.advance(300)
    expect(gates.heldBack('jenkins:ci')).toEqual({kind: 'released', reason: 'jenkins:ci is down: connection refused', delaySeconds: 1, target: 'jenkins:ci'})
    expect(gates.reasonOf('jenkins:ci')).toBe('connection refused')
    expect(gates.reasonOf('jenkins:other')).toBeUndefined()
  })
})

describe('a run\'s exit code', () => {
  it('the most specific wins: 2, then 3, then 1, then 0', () => {
    expect(mostSpecificExitCode([])).toBe(0)
    expect(mostSpecificExitCode([1, 0])).toBe(1)
    expect(mostSpecificExitCode([1, 3])).toBe(3)
    expect(mostSpecificExitCode([3, 2, 1])).toBe(2)
    expect(mostSpecificExitCode([ExitCode.ok])).toBe(0)
  })

  it('runOutcome lists the problem that decided the code first', () => {
    expect(runOutcome([])).toEqual({exitCode: 0, problems: []})
    expect(
      runOutcome([
        {exitCode: 1, line: '2 dead letters'},
        {exitCode: 3, line: '5 remaining (jenkins:ci is down: 503)'},
      ]),
    ).toEqual({exitCode: 3, problems: ['5 remaining (jenkins:ci is down: 503)', '2 dead letters']})
    const usage = new UsageError('no dead-letter queue', 'add a redrive policy')
    expect(runOutcome([{exitCode: 3, line: 'down'}, {exitCode: 2, line: usage.oneLine}]).exitCode).toBe(2)
  })
})
