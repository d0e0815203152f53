/**
 * The delivery contract (docs/delivery.md) as the consumer keeps it, on the in-memory queue and on
 * the real embedded queue, against loopback HTTP targets that fail the ways real ones do.
 */
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'

import {type ConsumeOptions, type Handler, consume} from '../../src/core/consume.js'
import {clockTime, endOfRun} from '../../src/core/consume/report.js'
import {TargetGates, dead, delivered, released, retry, transportErrorKind} from '../../src/core/delivery.js'
import {TargetUnhealthyError, UsageError} from '../../src/core/errors.js'
import {type LogFields, type Logger, createLogger} from '../../src/core/log.js'
import {sleep} from '../../src/core/loop.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue, QueueMessage, SendInput} from '../../src/core/queue/types.js'
import {type StandIn, standIn} from '../helpers/http.js'
import {MemoryQueue} from '../helpers/memory-queue.js'
import {tempDir} from '../helpers/tmp.js'

function memoryLog(): Logger & {lines: Array<{level: string; msg: string; fields: LogFields}>} {
  const lines: Array<{level: string; msg: string; fields: LogFields}> = []
  const stream = {write: (text: string) => (lines.push(JSON.parse(text)), true)} as unknown as NodeJS.WritableStream
  return Object.assign(createLogger({stream, format: 'json', level: 'debug'}), {lines})
}

/** Deterministic "random" in [0, 1) (mulberry32), so a flaky target flakes the same way every run. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** Fast gates for tests: 100 ms doubling to 400 ms. */
function fastGates(options: {once?: boolean; giveUpAfterMs?: number; log?: Logger} = {}): TargetGates {
  return new TargetGates({backoff: {baseMs: 100, maxMs: 400}, ...options})
}

interface QueueOptions {
  fifo?: boolean
  maxReceiveCount?: number
}

const dir = tempDir()
let n = 0
const backends: Array<{name: string; open: (options?: QueueOptions) => Promise<Queue>}> = [
  {name: 'memory queue', open: async (options = {}) => new MemoryQueue(options)},
  {
    name: 'embedded queue',
    open: async (options = {}) =>
      openQueue(`sqlite:${join(dir, 'contract.db')}#c${++n}${options.fifo ? '?fifo=true' : ''}`, {maxReceiveCount: options.maxReceiveCount ?? 0}),
  },
]

const targets: StandIn[] = []
const queues: Queue[] = []
afterEach(async () => {
  for (const target of targets.splice(0)) await target.close()
  for (const queue of queues.splice(0)) await queue.close()
})

/** A loopback target answering each POST with `status(body)` (a number, or 'hang' never to answer). */
async function target(status: (body: string) => number): Promise<StandIn> {
  const stand = await standIn((req, res) => {
    res.writeHead(status(req.body.toString())).end()
  })
  targets.push(stand)
  return stand
}

/**
 * A handler as a piece writes one: POST the body to the message's target, let the judge turn the
 * answer into the outcome, and leave a closed target's messages alone (heldBack).
 */
function poster(route: (body: string) => {key: string; url: string}, seen: string[] = []): Handler {
  return async (message, context) => {
    const {key, url} = route(message.body)
    context.setLabel(`body ${message.body}`)
    if (!context.gates.isOpen(key)) return context.gates.heldBack(key)
    seen.push(message.body)
    try {
      const response = await fetch(url, {method: 'POST', body: message.body, signal: AbortSignal.timeout(5000)})
      await response.arrayBuffer()
      return context.judge.verdict(key, message.id, {status: response.status})
    } catch (error) {
      const kind = transportErrorKind(error)
      if (!kind) throw error
      return context.judge.verdict(key, message.id, {error: kind})
    }
  }
}

async function fill(queue: Queue, bodies: string[], extra: Omit<SendInput, 'body'> = {}): Promise<void> {
  for (let i = 0; i < bodies.length; i += 10) await queue.sendBatch(bodies.slice(i, i + 10).map((body) => ({body, ...extra})))
}

/**
 * Whether the backend counts attempts apart from receives (QueueMessage.attempts): the memory queue
 * does; the embedded queue does once the queue layer lands release() without an attempt. Until
 * then the assertions that need it are skipped on it, with this note.
 */
const NOT_YET = 'the embedded queue counts every receive as an attempt until the queue layer lands release() without one'
const probes = new Map<string, Promise<boolean>>()
function countsAttempts(backend: (typeof backends)[number]): Promise<boolean> {
  let probe = probes.get(backend.name)
  if (!probe) {
    probe = (async () => {
      const queue = await backend.open()
      await queue.send({body: 'probe'})
      const [message] = await queue.receive()
      await queue.close()
      return message?.attempts !== undefined
    })()
    probes.set(backend.name, probe)
  }
  return probe
}

/** Receives everything visible now (bounded). */
async function receiveAll(queue: Queue): Promise<QueueMessage[]> {
  const out: QueueMessage[] = []
  for (let round = 0; round < 20; round++) {
    const got = await queue.receive({maxMessages: 10})
    if (got.length === 0) break
    out.push(...got)
  }
  return out
}

describe.each(backends)('the delivery contract on the $name', (backend) => {
  async function open(options?: QueueOptions): Promise<Queue> {
    const queue = await backend.open(options)
    queues.push(queue)
    return queue
  }

  async function run(queue: Queue, handler: Handler, options: ConsumeOptions = {}) {
    return consume(queue, handler, {once: true, concurrency: 4, ...options})
  }

  it('delivered: deleted; a one-shot run that emptied the queue exits 0', async () => {
    const queue = await open()
    await fill(queue, ['a', 'b', 'c'])
    const result = await run(queue, async () => delivered())
    expect(result).toMatchObject({delivered: 3, stoppedBy: 'empty', exitCode: 0, problems: [], remaining: 0, deadLetters: [], targetsDown: []})
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, delayed: 0, dead: 0})
  })

  it('retry: hidden for its delay, counts as an attempt, and a one-shot run waits for it and delivers it', async () => {
    const queue = await open()
    await fill(queue, ['flaky'])
    const attempts: Array<{attempt: number; at: number}> = []
    const result = await run(queue, async (_message, context) => {
      attempts.push({attempt: context.attempt, at: Date.now()})
      return context.attempt === 1 ? retry('the target said 503', 1) : delivered()
    })
    expect(result).toMatchObject({retried: 1, delivered: 1, stoppedBy: 'empty', exitCode: 0, remaining: 0})
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2])
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(900)
  })

  it('dead: moved to the dead letters with the reason, a warn line naming id and label, listed, and exit 1', async () => {
    const queue = await open()
    await fill(queue, ['good', 'malformed'])
    const log = memoryLog()
    const result = await run(
      queue,
      async (message, context) => {
        context.setLabel(`request ${message.body}`)
        return message.body === 'malformed' ? dead('not YAML') : delivered()
      },
      {log},
    )
    const id = result.deadLetters[0]?.id
    expect(result).toMatchObject({delivered: 1, dead: 1, exitCode: 1, deadLetters: [{id: expect.any(String), label: 'request malformed', reason: 'not YAML'}]})
    expect(result.problems).toEqual([`1 dead letter — see them with \`cistern queue peek --dead ${queue.url}\`, put them back with \`cistern queue redrive ${queue.url}\``])
    const warn = log.lines.filter((line) => line.level === 'warn')
    expect(warn.map((line) => line.msg)).toEqual([`dead letter ${id} request malformed — not YAML (to dead-letter-queue)`])
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 1})
  })

  it('released: handed back untouched, visible after its delay, never an attempt; a one-shot run waits for it', async (context) => {
    const queue = await open()
    await fill(queue, ['later'])
    const seen: number[] = []
    const result = await run(queue, async (message) => {
      seen.push(message.attempts ?? -1)
      return seen.length === 1 ? released('not now', 1) : delivered()
    })
    expect(result).toMatchObject({released: 1, delivered: 1, retried: 0, exitCode: 0, stoppedBy: 'empty'})
    if (!(await countsAttempts(backend))) context.skip(NOT_YET)
    expect(seen).toEqual([1, 1])
  })

  it('a retry at the attempt limit goes dead from the consumer, loudly, with the last reason', async () => {
    const queue = await open()
    await fill(queue, ['never'])
    const log = memoryLog()
    const result = await run(queue, async () => retry('the target said 503', 0), {maxAttempts: 3, log})
    expect(result).toMatchObject({retried: 2, dead: 1, exitCode: 1, deadLetters: [{reason: 'gave up after 3 attempts: the target said 503'}]})
    expect(log.lines.filter((line) => line.level === 'warn').map((line) => line.msg)).toEqual([
      expect.stringMatching(/^dead letter \S+ — gave up after 3 attempts: the target said 503 \(to dead-letter-queue\)$/),
    ])
  })

  it('a message whose attempts never finished goes dead at its next receive, counted and warned about', async (context) => {
    if (!(await countsAttempts(backend))) context.skip(`${NOT_YET} (and calls onDead)`)
    const queue = await open({maxReceiveCount: 2})
    await fill(queue, ['killed twice'])
    // Two workers killed while handling it: received twice, never settled (its lease lapses).
    for (let i = 0; i < 2; i++) {
      for (const message of await receiveAll(queue)) await queue.changeVisibility(message.receiptHandle, 0)
    }
    await fill(queue, ['fine'])
    const log = memoryLog()
    const result = await run(queue, async () => delivered(), {log})
    expect(result).toMatchObject({delivered: 1, dead: 1, exitCode: 1, deadLetters: [{reason: expect.stringMatching(/never settled/)}]})
    expect(log.lines.some((line) => line.level === 'warn' && /^dead letter \S+ — .*never settled.*by the queue at receive/.test(line.msg))).toBe(true)
  })

  it('one target down (single-target consumer): nothing is received while its gate is closed, nothing goes dead, all delivered once it is back', async () => {
    // Releases never count: even a limit of 2 is not reached by the many probes (once the embedded queue counts attempts).
    const queue = await open({maxReceiveCount: (await countsAttempts(backend)) ? 2 : 0})
    await fill(queue, Array.from({length: 8}, (_, i) => `s${i}`))
    let down = true
    const github = await target(() => (down ? 503 : 201))
    const gates = fastGates()
    const receives: Array<{open: boolean; down: boolean; max?: number}> = []
    const receive = queue.receive.bind(queue)
    queue.receive = async (options) => {
      receives.push({open: gates.isOpen('github:acme'), down: gates.isDown('github:acme'), max: options?.maxMessages})
      return receive(options)
    }
    const controller = new AbortController()
    const handler = poster(() => ({key: 'github:acme', url: github.url}))
    let delivered = 0
    const running = consume(
      queue,
      async (message, context) => {
        const outcome = await handler(message, context)
        if (outcome.kind === 'delivered' && ++delivered === 8) controller.abort()
        return outcome
      },
      {target: 'github:acme', gates, concurrency: 4, waitSeconds: 0, idleMs: 20, signal: AbortSignal.any([controller.signal, AbortSignal.timeout(20_000)])},
    )
    await sleep(1500)
    const postsWhileDown = github.requests.length
    down = false
    const result = await running
    // Never a receive while the gate is closed; while the target is down, a gate that opens again
    // lets one message through (a receive of one) to probe it.
    expect(receives.every((r) => r.open)).toBe(true)
    expect(receives.filter((r) => r.down).every((r) => r.max === 1)).toBe(true)
    // The first 4 found it down, then one probe per opening of the gate (100, 200, 400, 400… ms).
    expect(postsWhileDown).toBeGreaterThanOrEqual(5)
    expect(postsWhileDown).toBeLessThanOrEqual(4 + 8)
    expect(result).toMatchObject({delivered: 8, dead: 0, stoppedBy: 'signal', exitCode: 0})
    expect(new Set(github.requests.map((r) => r.body.toString())).size).toBe(8)
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 0})
  })

  it('several targets: one down does not stop the others; a one-shot run gives it up and exits 3, nothing dead', async () => {
    const queue = await open({maxReceiveCount: (await countsAttempts(backend)) ? 2 : 0})
    const bodies = Array.from({length: 12}, (_, i) => `${i % 2 === 0 ? 'a' : 'b'}${i}`)
    await fill(queue, bodies)
    const a = await target(() => 503)
    const b = await target(() => 200)
    const log = memoryLog()
    const result = await run(queue, poster((body) => (body.startsWith('a') ? {key: 'jenkins:a', url: a.url} : {key: 'jenkins:b', url: b.url})), {
      gates: fastGates({once: true, giveUpAfterMs: 1000, log}),
      log,
    })
    expect(result).toMatchObject({delivered: 6, dead: 0, stoppedBy: 'target-down', exitCode: 3, remaining: 6})
    expect(result.problems).toEqual(['6 remaining (jenkins:a is down: jenkins:a answered 503)'])
    expect(result.targetsDown).toEqual([{target: 'jenkins:a', reason: 'jenkins:a answered 503', since: expect.any(String), givenUp: true}])
    expect(b.requests.map((r) => r.body.toString()).sort()).toEqual(bodies.filter((body) => body.startsWith('b')).sort())
    // Its health changes are logged once, not per message.
    expect(log.lines.filter((line) => line.msg.startsWith('jenkins:a is down')).length).toBe(1)
    expect(log.lines.filter((line) => line.msg.startsWith('giving up on jenkins:a')).length).toBe(1)
    // Released, never attempted.
    if (queue instanceof MemoryQueue) expect(queue.messages.map((m) => m.attempts)).toEqual([0, 0, 0, 0, 0, 0])
  })

  it('credentials refused: a one-shot run stops at once with exit 3, everything left queued', async () => {
    const queue = await open()
    await fill(queue, Array.from({length: 10}, (_, i) => `c${i}`))
    const github = await target(() => 401)
    const result = await run(queue, poster(() => ({key: 'github:acme', url: github.url})), {target: 'github:acme', concurrency: 1})
    expect(result).toMatchObject({stoppedBy: 'target-down', exitCode: 3, dead: 0, delivered: 0, received: 1, released: 1, remaining: 10})
    expect(result.problems).toEqual(['10 remaining (github:acme is down: github:acme answered 401)'])
    expect(github.requests).toHaveLength(1)
  })

  it('a 400 poison among good messages: only it goes dead', async () => {
    const queue = await open()
    // Early in the queue: the target accepts the good ones after refusing it the first time.
    const bodies = ['good0', 'poison', ...Array.from({length: 8}, (_, i) => `good${i + 1}`)]
    await fill(queue, bodies)
    const jenkins = await target((body) => (body === 'poison' ? 400 : 200))
    const result = await run(queue, poster(() => ({key: 'jenkins:ci', url: jenkins.url})), {concurrency: 2})
    expect(result).toMatchObject({delivered: 9, dead: 1, exitCode: 1, stoppedBy: 'empty', remaining: 0})
    expect(result.deadLetters).toEqual([{id: expect.any(String), label: 'body poison', reason: 'jenkins:ci answered 400 again, while it accepted other messages'}])
    expect(await queue.stats()).toMatchObject({dead: 1})
  })

  it('404 for everything (the plugin is missing): nothing dead, the target is given up, exit 3', async () => {
    const queue = await open({maxReceiveCount: (await countsAttempts(backend)) ? 5 : 0})
    await fill(queue, Array.from({length: 6}, (_, i) => `p${i}`))
    const jenkins = await target(() => 404)
    const result = await run(queue, poster(() => ({key: 'jenkins:ci', url: jenkins.url})), {
      gates: fastGates({once: true, giveUpAfterMs: 1500}),
      maxAttempts: 5,
      concurrency: 2,
    })
    expect(result).toMatchObject({dead: 0, delivered: 0, exitCode: 3, stoppedBy: 'target-down', remaining: 6})
    expect(result.problems).toEqual([expect.stringMatching(/^6 remaining \(jenkins:ci is down: jenkins:ci answered 404 \(\d+ different messages in a row\)\)$/)])
    expect(await queue.stats()).toMatchObject({dead: 0})
  })

  it('one-shot with a 30 %-flaky target retries in-process until the queue is empty', async () => {
    const queue = await open()
    await fill(queue, Array.from({length: 40}, (_, i) => `f${i}`))
    const random = seeded(7)
    const jenkins = await target(() => (random() < 0.3 ? 503 : 200))
    // Each 503 closes the gate for a moment (the target's fault, not the message's): fast gates.
    const result = await run(queue, poster(() => ({key: 'jenkins:ci', url: jenkins.url})), {gates: fastGates({once: true})})
    expect(result).toMatchObject({delivered: 40, dead: 0, stoppedBy: 'empty', exitCode: 0, remaining: 0, problems: []})
    expect(jenkins.requests.length).toBeGreaterThan(40)
    // the same, with a handler that retries the message itself (a transient failure of this message)
    const again = await open()
    await fill(again, Array.from({length: 40}, (_, i) => `r${i}`))
    const flaky = seeded(11)
    const retried = await run(again, async () => (flaky() < 0.3 ? retry('flaky', 1) : delivered()))
    expect(retried).toMatchObject({delivered: 40, dead: 0, stoppedBy: 'empty', exitCode: 0, remaining: 0})
    expect(retried.retried).toBeGreaterThan(5)
  })

  it('the deadline ends a one-shot run: a retry due after it is reported, exit 1', async () => {
    const queue = await open()
    await fill(queue, ['stubborn', 'fine'])
    const result = await run(queue, async (message) => (message.body === 'stubborn' ? retry('still 503', 1) : delivered()), {deadlineMs: 2500})
    expect(result).toMatchObject({delivered: 1, stoppedBy: 'deadline', exitCode: 1, remaining: 1, problems: ['1 remaining (retry due after the deadline)']})
    expect(result.retried).toBeGreaterThanOrEqual(2)
  })

  it('FIFO: a failing head blocks only its group, and only for its back-off', async () => {
    const queue = await open({fifo: true})
    for (let i = 0; i < 3; i++) await queue.sendBatch(['a', 'b', 'c'].map((group) => ({body: `${group}${i}`, groupId: group, deduplicationId: `${group}${i}`})))
    const events: Array<{body: string; attempt: number; at: number}> = []
    const result = await run(
      queue,
      async (message, context) => {
        events.push({body: message.body, attempt: context.attempt, at: Date.now()})
        await sleep(5)
        return message.body === 'a0' && context.attempt === 1 ? retry('hiccup', 1) : delivered()
      },
      {concurrency: 3},
    )
    expect(result).toMatchObject({delivered: 9, retried: 1, exitCode: 0, stoppedBy: 'empty'})
    for (const group of ['a', 'b', 'c']) {
      expect(events.filter((e) => e.body.startsWith(group) && !(e.body === 'a0' && e.attempt === 1)).map((e) => e.body)).toEqual([0, 1, 2].map((i) => `${group}${i}`))
    }
    const firstA0 = events.find((e) => e.body === 'a0')!
    const secondA0 = events.find((e) => e.body === 'a0' && e.attempt === 2)!
    // b and c did not wait for a0's back-off
    for (const e of events.filter((e) => !e.body.startsWith('a'))) expect(e.at).toBeLessThan(secondA0.at)
    // a0 came back after its back-off (1 s), not after a visibility timeout (30 s); a1 after it
    expect(secondA0.at - firstA0.at).toBeGreaterThanOrEqual(900)
    expect(secondA0.at - firstA0.at).toBeLessThan(10_000)
    expect(events.find((e) => e.body === 'a1')!.at).toBeGreaterThanOrEqual(secondA0.at)
  })

  it('held by another consumer\'s lease: reported as remaining, exit 1', async () => {
    const queue = await open()
    await fill(queue, ['held', 'x', 'y'])
    const [held] = await queue.receive({maxMessages: 1, visibilityTimeout: 30})
    const until = Date.now() + 30_000
    const result = await run(queue, async () => delivered())
    expect(held!.body).toBe('held')
    expect(result).toMatchObject({delivered: 2, stoppedBy: 'empty', exitCode: 1, remaining: 1})
    expect(result.problems).toHaveLength(1)
    expect(result.problems[0]).toMatch(/^1 remaining \(held by another consumer( until \d\d:\d\d:\d\d)?\)$/)
    if (result.heldUntil) {
      expect(Math.abs(Date.parse(result.heldUntil) - until)).toBeLessThan(2000)
      expect(result.problems[0]).toBe(`1 remaining (held by another consumer until ${clockTime(new Date(result.heldUntil))})`)
    }
  })

  it('a stop signal: in-flight work is released at the stop deadline, prefetched given back, none counted as an attempt, exit 0', async (context) => {
    const queue = await open()
    await fill(queue, Array.from({length: 5}, (_, i) => `s${i}`))
    const controller = new AbortController()
    const started: string[] = []
    const running = consume(
      queue,
      async (message, handlerContext) => {
        started.push(message.body)
        await sleep(10_000, handlerContext.signal)
        return retry('interrupted')
      },
      {concurrency: 1, waitSeconds: 0, signal: controller.signal, stopDeadlineMs: 50},
    )
    await sleep(150)
    controller.abort()
    const result = await running
    expect(started).toHaveLength(1)
    expect(result).toMatchObject({stoppedBy: 'signal', exitCode: 0, problems: [], received: 1, released: 1, retried: 0, delivered: 0})
    expect(await queue.stats()).toMatchObject({visible: 5, inFlight: 0})
    const again = await receiveAll(queue)
    expect(again).toHaveLength(5)
    if (!(await countsAttempts(backend))) context.skip(NOT_YET)
    expect(again.map((m) => m.attempts)).toEqual([1, 1, 1, 1, 1])
  })
})

describe('the end of a one-shot run', () => {
  const none = {onTarget: new Map<string, number>(), afterDeadline: 0, beforeDeadline: 0, hidden: 0}
  const stats = (visible: number, inFlight: number, delayed = 0) => ({visible, inFlight, delayed, dead: 0})

  it('a stop signal ends any run with 0, whatever remains', () => {
    const end = endOfRun({once: true, stoppedBy: 'signal', dead: 3, queueUrl: 'q', stats: stats(5, 0), handedBack: none, gates: new TargetGates()})
    expect(end).toMatchObject({exitCode: 0, problems: [], remaining: 5})
  })

  it('a queue that cannot count (the facade): remaining -1, and only what the run knows decides', () => {
    expect(endOfRun({once: true, stoppedBy: 'empty', dead: 0, queueUrl: 'q', handedBack: none, gates: new TargetGates()})).toMatchObject({exitCode: 0, problems: [], remaining: -1})
    const ours = {...none, afterDeadline: 2, hidden: 2}
    expect(endOfRun({once: true, stoppedBy: 'deadline', dead: 0, queueUrl: 'q', handedBack: ours, gates: new TargetGates()})).toMatchObject({
      exitCode: 1,
      problems: ['2 remaining (retry due after the deadline)'],
    })
  })

  it('"held until" only when none of the hidden messages is the run\'s own', () => {
    const next = new Date(Date.now() + 60_000)
    const mixed = endOfRun({once: true, stoppedBy: 'deadline', dead: 0, queueUrl: 'q', stats: {...stats(0, 3), nextVisibleAt: next}, handedBack: {...none, afterDeadline: 1, hidden: 1}, gates: new TargetGates()})
    expect(mixed.problems).toEqual(['1 remaining (retry due after the deadline)', '2 remaining (held by another consumer)'])
    expect(mixed.heldUntil).toBeUndefined()
    const theirs = endOfRun({once: true, stoppedBy: 'empty', dead: 0, queueUrl: 'q', stats: {...stats(0, 2), nextVisibleAt: next}, handedBack: none, gates: new TargetGates()})
    expect(theirs).toMatchObject({exitCode: 1, heldUntil: next.toISOString(), problems: [`2 remaining (held by another consumer until ${clockTime(next)})`]})
  })

  it('a stop outcome\'s code wins over dead letters (1), its line first', () => {
    const error = new UsageError('the queue has no dead-letter queue', 'add a redrive policy')
    const end = endOfRun({once: true, stoppedBy: 'stop', stopError: error, dead: 1, queueUrl: 'q', stats: stats(0, 0), handedBack: none, gates: new TargetGates()})
    expect(end.exitCode).toBe(2)
    expect(end.problems[0]).toBe('the queue has no dead-letter queue — add a redrive policy')
    expect(end.problems[1]).toMatch(/^1 dead letter — see them with `cistern queue peek --dead q`/)
  })

  it('a loop reports no problems but a stop outcome\'s', () => {
    expect(endOfRun({once: false, stoppedBy: 'stop', stopError: new TargetUnhealthyError('Jenkins is down'), dead: 4, queueUrl: 'q', stats: stats(9, 0), handedBack: none, gates: new TargetGates()})).toMatchObject({
      exitCode: 3,
      problems: ['Jenkins is down'],
    })
  })

  it('consume on a queue that cannot count ends a clean one-shot run with 0', async () => {
    const queue = new MemoryQueue()
    queue.stats = async () => ({visible: -1, inFlight: -1, delayed: -1, dead: -1})
    await queue.send({body: 'x'})
    expect(await consume(queue, async () => delivered(), {once: true})).toMatchObject({delivered: 1, remaining: -1, exitCode: 0, problems: []})
  })
})

describe('a paused one-shot run', () => {
  it('ends at its deadline, having touched nothing', async () => {
    const queue = new MemoryQueue()
    await queue.send({body: 'x'})
    const result = await consume(queue, async () => delivered(), {once: true, paused: () => true, pausePollMs: 20, deadlineMs: 300})
    expect(result).toMatchObject({stoppedBy: 'deadline', received: 0, exitCode: 1, problems: ['1 remaining (not reached before the deadline)']})
    expect(queue.count('receive')).toBe(0)
  })
})
