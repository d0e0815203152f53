import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {silentLogger} from '../../src/core/log.js'
import {coalescingSender} from '../../src/core/queue/batching.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue, QueueStats, SendInput} from '../../src/core/queue/types.js'
import {decodeMessage, replayBytes} from '../../src/core/webhook-message.js'
import {DEFAULT_ROUTES} from '../../src/spigot/config.js'
import {type IntakeOptions, createIntake} from '../../src/spigot/intake.js'
import {ArrivalOrder, QueuedAhead} from '../../src/spigot/order.js'
import {encodeQueuedWebhook, groupFor} from '../../src/spigot/queued-message.js'
import {parsePayload, payloadFacts, type Webhook} from '../../src/spigot/webhook.js'
import {type JenkinsStandIn, githubDelivery, githubExample, jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-spigot-intake-')
let n = 0
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close()
})

async function setup(state: IntakeOptions['state'], mode: Parameters<typeof jenkinsStandIn>[0] = 'accept', config: Partial<IntakeOptions['config']> = {}) {
  const jenkins = await jenkinsStandIn(mode)
  const queue = await openQueue(`sqlite:${join(dir, `intake-${++n}.db`)}#spigot`, {fifo: true})
  const intake = createIntake({
    config: {targets: [{name: 'default', url: jenkins.url}], routes: {...DEFAULT_ROUTES}, unrouted: 'accept', forwardTimeoutMs: 500, ...config},
    queue,
    state,
    log: silentLogger,
  })
  cleanup.push(
    () => intake.close(),
    () => queue.close(),
    () => jenkins.close(),
  )
  return {queue, jenkins, intake}
}

const post = (intake: ReturnType<typeof createIntake>, hook: {body: Buffer; headers: Record<string, string>}) => intake.handle({rawBody: hook.body, headers: hook.headers})

/** A push for repository `repo`, delivery `delivery`. */
function pushFor(repo: string, delivery: string) {
  const payload = githubExample('push')
  payload.repository = {...(payload.repository as object), full_name: repo}
  return githubDelivery('push', payload, {delivery})
}

describe('createIntake', () => {
  it('a state that cannot be read → queued (never forwarded blind, never lost)', async () => {
    const {queue, jenkins, intake} = await setup(async () => {
      throw new Error('database is locked')
    })
    const hook = githubDelivery('push', githubExample('push'))
    const result = await intake.handle({rawBody: hook.body, headers: hook.headers})
    expect(result).toMatchObject({status: 202, outcome: 'queued', reason: 'state-unknown'})
    expect(jenkins.requests).toHaveLength(0)
    const [message] = await queue.peek(1)
    expect(decodeMessage(message!.body).spigot_state).toBe('OFF')
  })

  it('without X-GitHub-Delivery, dedup falls back to a hash of the bytes', async () => {
    const {queue, intake} = await setup(async () => 'OFF')
    const hook = githubDelivery('push', githubExample('push'))
    delete hook.headers['X-GitHub-Delivery']
    expect((await intake.handle({rawBody: hook.body, headers: hook.headers})).reason).toBe('spigot-off')
    expect((await intake.handle({rawBody: hook.body, headers: hook.headers})).reason).toBe('duplicate')
    const other = githubDelivery('push', githubExample('push', {index: 1}))
    delete other.headers['X-GitHub-Delivery']
    expect((await intake.handle({rawBody: other.body, headers: other.headers})).reason).toBe('spigot-off')
    const messages = await queue.peek(10)
    expect(messages).toHaveLength(2)
    expect(messages[0]!.deduplicationId).toMatch(/^sha256-[0-9a-f]{48}:default$/)
  })

  it('Jenkins answering 4xx while ON: queued (the drain dead-letters it with the reason), logged as a warning', async () => {
    const {queue, intake} = await setup(async () => 'ON', {kind: 'status', status: 404})
    const hook = githubDelivery('pull_request', githubExample('pull_request'))
    const result = await intake.handle({rawBody: hook.body, headers: hook.headers})
    expect(result).toMatchObject({status: 202, outcome: 'queued', reason: 'jenkins-client-error'})
    expect(result.deliveries).toMatchObject([{target: 'default', kind: 'client-error', status: 404}])
    expect(await queue.peek(10)).toHaveLength(1)
  })

  it('header names in any case (API Gateway, proxies)', async () => {
    const {jenkins, intake} = await setup(async () => 'ON')
    const hook = githubDelivery('push', githubExample('push'))
    const lower = Object.fromEntries(Object.entries(hook.headers).map(([k, v]) => [k.toLowerCase(), v]))
    expect((await intake.handle({rawBody: hook.body, headers: lower})).status).toBe(200)
    expect(jenkins.webhooks[0]!.headers['x-github-delivery']).toBe(hook.delivery)
  })

  it('raw_body is kept unless JSON.stringify(body) gives back the exact bytes; either way the replay is byte-identical', async () => {
    const {queue, intake} = await setup(async () => 'OFF')
    const payload = githubExample('push')
    const variants = [
      {name: 'compact', text: JSON.stringify(payload), raw: false},
      {name: 'pretty', text: JSON.stringify(payload, null, 2), raw: true},
      {name: 'raw UTF-8', text: JSON.stringify({...payload, note: 'café ✓'}), raw: false},
      {name: 'escaped unicode', text: JSON.stringify({...payload, note: 'café'}).replace('café', 'caf\\u00e9'), raw: true},
      {name: 'escaped slash', text: JSON.stringify(payload).replace('"Codertocat/Hello-World"', '"Codertocat\\/Hello-World"'), raw: true},
      {name: 'integer-like key order', text: '{"repository":{"full_name":"o/r"},"b":1,"1":2}', raw: true},
      // Decodes to U+FFFD, which JSON.stringify writes back as a valid 3-byte sequence: not the bytes sent.
      {name: 'invalid UTF-8', text: Buffer.concat([Buffer.from('{"repository":{"full_name":"o/r"},"note":"'), Buffer.from([0xff]), Buffer.from('"}')]), raw: true},
    ]
    for (const [i, variant] of variants.entries()) {
      const hook = githubDelivery('push', {}, {delivery: `variant-${i}`})
      const body = Buffer.from(variant.text)
      expect((await intake.handle({rawBody: body, headers: hook.headers})).status).toBe(202)
      const [message] = (await queue.peek(10)).filter((m) => m.deduplicationId === `variant-${i}:default`)
      const decoded = decodeMessage(message!.body)
      expect([variant.name, decoded.raw_body !== undefined]).toEqual([variant.name, variant.raw])
      expect(replayBytes(decoded).equals(body)).toBe(true)
      // The body is the payload as received, parsed by whoever reads the message (the original send_from_queue).
      expect(decoded.body).toEqual(JSON.parse(body.toString('utf8')))
    }
  })

  it('issue 14: an event without a rule follows the "*" rule with unrouted: forward (github-webhook/, where Jenkins got it before)', async () => {
    const {jenkins, intake} = await setup(async () => 'ON', 'accept', {unrouted: 'forward'})
    const create = githubDelivery('create', githubExample('create'))
    expect(await post(intake, create)).toMatchObject({status: 200, outcome: 'forwarded'})
    expect(jenkins.webhooks.map((r) => r.url)).toEqual(['/github-webhook/'])
    expect(jenkins.webhooks[0]!.body.equals(create.body)).toBe(true)
  })
})

describe('message encoding', () => {
  it('the message is the original Lambda shape plus cistern fields, with the payload text spliced in as it came', () => {
    const webhookOf = (raw: Buffer): Webhook => {
      const parsed = parsePayload(raw, 'application/json')
      if (!parsed.ok) throw new Error(parsed.reason)
      return {event: 'push', delivery: 'd-1', raw, text: parsed.text, form: false, body: parsed.body, facts: payloadFacts(parsed.body), headers: {'X-GitHub-Event': 'push', 'User-Agent': 'a "quoted" \\ agent'}}
    }
    const fields = {state: 'OFF', fromQueue: 'x","body":0,"y', receivedAt: '2026-01-01T00:00:00.000Z', target: 'legacy'}
    const pretty = webhookOf(Buffer.from(JSON.stringify(githubExample('push'), null, 1)))
    const text = encodeQueuedWebhook(pretty, fields)
    const message = JSON.parse(text) as Record<string, unknown>
    expect(Object.keys(message)).toEqual(['spigot_state', 'from_queue', 'body', 'headers', 'received_at', 'raw_body', 'target'])
    expect(message).toEqual({
      spigot_state: 'OFF',
      from_queue: 'x","body":0,"y',
      body: pretty.body,
      headers: pretty.headers,
      received_at: '2026-01-01T00:00:00.000Z',
      raw_body: pretty.raw.toString('base64'),
      target: 'legacy',
    })
    expect(text).toContain(pretty.text)
    // GitHub's compact JSON: the body gives the bytes back, no raw_body (half the size).
    const compact = webhookOf(Buffer.from(JSON.stringify(githubExample('push'))))
    const small = JSON.parse(encodeQueuedWebhook(compact, fields)) as Record<string, unknown>
    expect(Object.keys(small)).toEqual(['spigot_state', 'from_queue', 'body', 'headers', 'received_at', 'target'])
    expect(JSON.stringify(small.body)).toBe(compact.raw.toString())
    expect(JSON.parse(encodeQueuedWebhook(compact, fields, {body: false}))).toMatchObject({body: null, raw_body: compact.raw.toString('base64')})
  })

  it('groups: the repository for the default target, <repository>@<target> for the others, within SQS limits', () => {
    expect(groupFor('octo/hello', 'default')).toBe('octo/hello')
    expect(groupFor('octo/hello', 'legacy')).toBe('octo/hello@legacy')
    expect(groupFor(undefined, 'default')).toBe('no-repository')
    expect(groupFor('octo/hello', 'old jenkins')).toBe('octo/hello@old_jenkins')
    const long = groupFor(`${'o'.repeat(39)}/${'r'.repeat(100)}`, 'legacy')
    expect(long).toHaveLength(128)
    expect(long).not.toBe(groupFor(`${'o'.repeat(39)}/${'r'.repeat(99)}x`, 'legacy'))
  })
})

// The queue layer's one group commit is the intake's sender now (src/core/queue/batching.ts): the
// assertions the spigot's own copy had, against it.
describe('the intake sender (coalescingSender)', () => {
  it('sends arriving in the same event-loop turn share one transaction; results map back in order', async () => {
    const queue = await openQueue(`sqlite:${join(dir, `group-${++n}.db`)}#spigot`, {fifo: true})
    cleanup.push(() => queue.close())
    const batches: number[] = []
    const counting = new Proxy(queue, {
      get: (target, key, receiver) =>
        key === 'sendBatch'
          ? async (inputs: SendInput[]) => {
              batches.push(inputs.length)
              return target.sendBatch(inputs)
            }
          : Reflect.get(target, key, receiver),
    })
    const sender = coalescingSender(counting)
    const results = await Promise.all(Array.from({length: 40}, (_, i) => sender.send({body: `m${i}`, groupId: 'g', deduplicationId: `d${i % 30}`})))
    expect(batches).toEqual([40])
    expect(results.filter((r) => r.duplicate)).toHaveLength(10)
    expect(results[35]!.id).toBe(results[5]!.id)
    const stored = await queue.peek(10)
    expect(stored.map((m) => m.body)).toEqual(Array.from({length: 10}, (_, i) => `m${i}`))
    expect((await queue.stats()).visible).toBe(30)
    await sender.close()
  })

  it('a failing batch is retried message by message: only the bad one fails', async () => {
    const queue = await openQueue(`sqlite:${join(dir, `group-${++n}.db`)}#spigot`, {fifo: true})
    cleanup.push(() => queue.close())
    const sender = coalescingSender(queue)
    const settled = await Promise.allSettled([sender.send({body: 'good-1'}), sender.send({body: ''}), sender.send({body: 'good-2'})])
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((await queue.stats()).visible).toBe(2)
    await sender.close()
  })
})

describe('order end to end (issue 11.8)', () => {
  it('ON: a webhook of a repository with webhooks still queued is queued behind them; other repositories are forwarded', async () => {
    let state: 'ON' | 'OFF' = 'OFF'
    const {queue, jenkins, intake} = await setup(async () => state)
    expect(await post(intake, pushFor('octo/a', 'a-1'))).toMatchObject({status: 202, reason: 'spigot-off'})
    state = 'ON'
    expect(await post(intake, pushFor('octo/a', 'a-2'))).toMatchObject({status: 202, outcome: 'queued', reason: 'behind-queued'})
    expect(await post(intake, pushFor('octo/b', 'b-1'))).toMatchObject({status: 200, outcome: 'forwarded'})
    expect(jenkins.webhooks.map((r) => r.headers['x-github-delivery'])).toEqual(['b-1'])
    // The drain takes them one by one; a webhook in flight still counts as queued ahead.
    const drained: string[] = []
    for (let i = 0; i < 5; i++) {
      const message = (await queue.receive({maxMessages: 10})).at(0)
      if (!message) break
      drained.push(decodeMessage(message.body).headers['X-GitHub-Delivery']!)
      if (i === 0) expect(await post(intake, pushFor('octo/a', 'a-x'))).toMatchObject({reason: 'behind-queued'})
      await queue.delete(message.receiptHandle)
    }
    expect(drained).toEqual(['a-1', 'a-2', 'a-x'])
    // octo/a has nothing queued any more: its webhooks go straight to Jenkins again.
    expect(await post(intake, pushFor('octo/a', 'a-3'))).toMatchObject({status: 200, outcome: 'forwarded'})
  })

  it('webhooks of one repository are decided in arrival order: the next waits for a forward in flight, then queues behind it when it failed', async () => {
    const {queue, jenkins, intake} = await setup(async () => 'ON', 'hang', {forwardTimeoutMs: 300})
    const first = post(intake, pushFor('octo/a', 'a-1'))
    for (let i = 0; i < 100 && jenkins.webhooks.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5))
    const second = post(intake, pushFor('octo/a', 'a-2'))
    expect(await first).toMatchObject({status: 202, reason: 'jenkins-timeout'})
    // Queued without trying: Jenkins just failed (its gate is closed), and a-1 is queued ahead anyway.
    expect(await second).toMatchObject({status: 202, outcome: 'queued'})
    expect(jenkins.webhooks).toHaveLength(1)
    const queued = (await queue.peek(10)).map((m) => decodeMessage(m.body).headers['X-GitHub-Delivery'])
    expect(queued).toEqual(['a-1', 'a-2'])
  })

  it('a Jenkins that just failed is not tried again until its back-off passed: other repositories queue at once', async () => {
    const {intake} = await setup(async () => 'ON', 'refuse')
    expect(await post(intake, pushFor('octo/a', 'a-1'))).toMatchObject({status: 202, reason: 'jenkins-refused'})
    expect(await post(intake, pushFor('octo/b', 'b-1'))).toMatchObject({status: 202, reason: 'jenkins-down', deliveries: []})
    expect(intake.forwarder.gates.isDown('jenkins:default')).toBe(true)
  })
})

describe('Jenkins refusing the credentials while ON', () => {
  it('401: queued, and Jenkins is down (credentials) for the back-off cap: the next webhooks queue without a try', async () => {
    const {queue, jenkins, intake} = await setup(async () => 'ON', {kind: 'status', status: 401})
    expect(await post(intake, pushFor('octo/a', 'a-1'))).toMatchObject({status: 202, reason: 'jenkins-client-error'})
    expect(await post(intake, pushFor('octo/b', 'b-1'))).toMatchObject({status: 202, reason: 'jenkins-down'})
    expect(intake.forwarder.gates.retryInMs('jenkins:default')).toBeGreaterThan(30_000)
    expect(jenkins.webhooks).toHaveLength(1)
    expect(await queue.peek(10)).toHaveLength(2)
  })
})

describe('ArrivalOrder', () => {
  it('runs each key\'s steps after the earlier ones decided; other keys do not wait', async () => {
    const order = new ArrivalOrder()
    const events: string[] = []
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const a1 = order.inTurn('a', async () => {
      events.push('a1 start')
      await held
      events.push('a1 end')
    })
    const a2 = order.inTurn('a', async () => void events.push('a2'))
    const b1 = order.inTurn('b', async () => void events.push('b1'))
    await b1
    expect(events).toEqual(['a1 start', 'b1'])
    release()
    await Promise.all([a1, a2])
    expect(events).toEqual(['a1 start', 'b1', 'a1 end', 'a2'])
    expect(order.pending).toBe(0)
  })

  it('a step that decided early lets the next one go before it ends', async () => {
    const order = new ArrivalOrder()
    const events: string[] = []
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const first = order.inTurn('a', async (decided) => {
      decided()
      await held
      events.push('first end')
    })
    await order.inTurn('a', async () => void events.push('second'))
    expect(events).toEqual(['second'])
    release()
    await first
  })
})

describe('QueuedAhead', () => {
  const stats = (live: number): QueueStats => ({visible: live, inFlight: 0, delayed: 0, dead: 0})

  it('a queue that can be asked per group answers per group; sends still on their way count', async () => {
    let storedAt: (() => void) | undefined
    const asked: string[] = []
    const ahead = new QueuedAhead({url: 'q', stats: async () => stats(0), groupHasLiveMessages: async (group) => (asked.push(group), group === 'x')})
    expect(await ahead.has('x')).toBe(true)
    expect(await ahead.has('y')).toBe(false)
    ahead.track('y', new Promise<void>((resolve) => (storedAt = resolve)))
    expect(await ahead.has('y')).toBe(true)
    storedAt!()
    await new Promise((resolve) => setImmediate(resolve))
    expect(await ahead.has('y')).toBe(false)
    expect(asked).toEqual(['x', 'y', 'y'])
  })

  it('SQS (no per-group answer): queued behind while the backlog is not empty, read at most once a second, and for a minute after this process queued', async () => {
    let now = 1_000_000
    let live = 3
    let reads = 0
    const ahead = new QueuedAhead({url: 'sqs', stats: async () => (reads++, stats(live))}, {now: () => now})
    expect(await Promise.all([ahead.has('a'), ahead.has('b')])).toEqual([true, true])
    expect(reads).toBe(1)
    live = 0
    expect(await ahead.has('a')).toBe(true) // the same read, under a second old
    now += 1000
    expect(await ahead.has('a')).toBe(false)
    ahead.track('c', Promise.resolve())
    await new Promise((resolve) => setImmediate(resolve))
    now += 59_000
    expect(await ahead.has('a')).toBe(true) // SQS's counts may not show it yet
    now += 1001
    expect(await ahead.has('a')).toBe(false)
    expect(reads).toBe(3)
  })

  it('a queue that cannot be asked counts as "queued ahead" (queueing never breaks the order)', async () => {
    const ahead = new QueuedAhead({url: 'q', stats: async () => stats(0), groupHasLiveMessages: async () => Promise.reject(new Error('disk I/O error'))})
    expect(await ahead.has('a')).toBe(true)
  })
})

/** A queue whose sends always fail (the queue layer's own errors are tested in test/core/queue). */
function failingQueue(queue: Queue): Queue {
  return new Proxy(queue, {
    get: (target, key, receiver) => (key === 'send' || key === 'sendBatch' ? async () => Promise.reject(new Error('disk I/O error')) : Reflect.get(target, key, receiver)),
  })
}

describe('a queue that fails', () => {
  it('→ 503, never a 2xx', async () => {
    const jenkins: JenkinsStandIn = await jenkinsStandIn('accept')
    const queue = await openQueue(`sqlite:${join(dir, `failing-${++n}.db`)}#spigot`, {fifo: true})
    const intake = createIntake({
      config: {targets: [{name: 'default', url: jenkins.url}], routes: {...DEFAULT_ROUTES}, unrouted: 'accept', forwardTimeoutMs: 500},
      queue: failingQueue(queue),
      state: async () => 'OFF',
      log: silentLogger,
    })
    cleanup.push(
      () => intake.close(),
      () => queue.close(),
      () => jenkins.close(),
    )
    const answer = await post(intake, pushFor('octo/a', 'a-1'))
    expect(answer).toMatchObject({status: 503, outcome: 'rejected', reason: 'queue-error'})
    expect(answer.body.error).toMatch(/disk I\/O error/)
  })
})
