import {join} from 'node:path'

import {afterAll, afterEach, describe, expect, it} from 'vitest'

import {silentLogger} from '../../src/core/log.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue, SendInput} from '../../src/core/queue/types.js'
import {DEFAULT_ROUTES} from '../../src/spigot/config.js'
import {type IntakeOptions, createIntake, encodeWithBodyText, groupCommit, roundTrip} from '../../src/spigot/intake.js'
import {closeJenkinsAgents} from '../../src/spigot/jenkins.js'
import {type SpigotMessage, decodeMessage, encodeMessage, replayBytes} from '../../src/core/webhook-message.js'
import {type JenkinsStandIn, githubDelivery, githubExample, jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-spigot-intake-')
let n = 0
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close()
  closeJenkinsAgents()
})
afterAll(() => closeJenkinsAgents())

async function setup(state: IntakeOptions['state'], mode: Parameters<typeof jenkinsStandIn>[0] = 'accept'): Promise<{queue: Queue; jenkins: JenkinsStandIn; intake: ReturnType<typeof createIntake>}> {
  const jenkins = await jenkinsStandIn(mode)
  const queue = await openQueue(`sqlite:${join(dir, `intake-${++n}.db`)}#spigot`, {fifo: true})
  cleanup.push(() => queue.close(), () => jenkins.close())
  const intake = createIntake({
    config: {targets: [{name: 'default', url: jenkins.url}], routes: {...DEFAULT_ROUTES}, unrouted: 'accept', forwardTimeoutMs: 500},
    queue,
    state,
    log: silentLogger,
  })
  return {queue, jenkins, intake}
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
    }
  })
})

describe('message encoding', () => {
  it('encodeWithBodyText gives exactly encodeMessage for the messages the intake builds', () => {
    const payload = githubExample('push')
    const bodyText = JSON.stringify(payload)
    const cases: SpigotMessage[] = [
      {spigot_state: 'OFF', from_queue: 'false', body: payload, headers: {'X-GitHub-Event': 'push', 'User-Agent': 'a "quoted" \\ agent'}, received_at: '2026-01-01T00:00:00.000Z', target: 'default'},
      {spigot_state: 'ON', from_queue: 'x","body":0,"y', body: payload, headers: {}, received_at: '2026-01-01T00:00:00.000Z'},
      {spigot_state: 'OFF', from_queue: 'false', body: payload, headers: {}},
    ]
    for (const message of cases) {
      expect(encodeWithBodyText(message, bodyText)).toBe(encodeMessage(message))
      expect(decodeMessage(encodeWithBodyText(message, bodyText))).toEqual(message)
    }
  })

  it('roundTrip: the JSON text only when it is byte-identical to the request', () => {
    const check = (raw: Buffer) => roundTrip(JSON.parse(raw.toString('utf8')), raw.toString('utf8'), raw)
    expect(check(Buffer.from('{"a":"café ✓"}'))).toBe('{"a":"café ✓"}')
    expect(check(Buffer.from('{"a": 1}'))).toBeUndefined()
    expect(check(Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3]), Buffer.from('"}')]))).toBeUndefined()
  })
})

describe('groupCommit', () => {
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
    const sender = groupCommit(counting)
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
    const sender = groupCommit(queue)
    const settled = await Promise.allSettled([sender.send({body: 'good-1'}), sender.send({body: ''}), sender.send({body: 'good-2'})])
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((await queue.stats()).visible).toBe(2)
    await sender.close()
  })
})
