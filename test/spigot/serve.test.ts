import {join} from 'node:path'

import {PutObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {mockClient} from 'aws-sdk-client-mock'
import {afterAll, afterEach, beforeEach, describe, expect, it} from 'vitest'

import SpigotServe from '../../src/commands/spigot/serve.js'

import {type LogFields, type Logger, silentLogger} from '../../src/core/log.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue, QueueMessage} from '../../src/core/queue/types.js'
import {createCommenter} from '../../src/spigot/comments.js'
import {DEFAULT_ROUTES, type SpigotConfig} from '../../src/spigot/config.js'
import {s3LargePayloadStore} from '../../src/spigot/large-payload.js'
import {type SpigotMessage, decodeMessage, replayBytes} from '../../src/core/webhook-message.js'
import {type SpigotServer, type SpigotServerOptions, cachedState, createSpigotServer} from '../../src/spigot/serve.js'
import {type StateStore, openStateStore} from '../../src/spigot/state.js'
import {standIn} from '../helpers/http.js'
import {type GitHubDelivery, type JenkinsStandIn, githubDelivery, githubExample, jenkinsStandIn, signatureVerifies} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'

const SECRET = 'webhook-secret-for-tests'
const dir = tempDir('cistern-spigot-serve-')
let n = 0

interface LogLine {
  level: string
  message: string
  fields: LogFields
}

function recordingLogger(lines: LogLine[], base: LogFields = {}): Logger {
  const at = (level: string) => (message: string, fields: LogFields = {}) => lines.push({level, message, fields: {...base, ...fields}})
  return {level: 'debug', debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (fields) => recordingLogger(lines, {...base, ...fields})}
}

interface Fixture {
  jenkins: JenkinsStandIn
  queue: Queue
  state: StateStore
  server: SpigotServer
  url: string
  logs: LogLine[]
  post(hook: GitHubDelivery | {body: Buffer | string; headers: Record<string, string>}, path?: string): Promise<{status: number; json: Record<string, unknown>}>
  queued(): Promise<Array<{message: SpigotMessage; raw: QueueMessage}>>
}

const open: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close()
})

async function fixture(
  options: {
    mode?: Parameters<typeof jenkinsStandIn>[0]
    state?: 'ON' | 'OFF'
    config?: Partial<SpigotConfig> | ((jenkins: JenkinsStandIn) => Partial<SpigotConfig>)
    server?: Partial<SpigotServerOptions>
    wrapQueue?: (queue: Queue) => Queue
  } = {},
): Promise<Fixture> {
  const jenkins = await jenkinsStandIn(options.mode ?? 'accept')
  open.push(() => jenkins.close())
  const db = join(dir, `serve-${++n}.db`)
  const realQueue = await openQueue(`sqlite:${db}#spigot`, {fifo: true})
  open.push(() => realQueue.close())
  const queue = options.wrapQueue ? options.wrapQueue(realQueue) : realQueue
  const state = await openStateStore({backend: 'local', dbPath: db})
  open.push(() => state.close())
  if (options.state) await state.set(options.state)
  const config: SpigotConfig = {
    queue: queue.url,
    targets: [{name: 'default', url: jenkins.url}],
    routes: {...DEFAULT_ROUTES},
    unrouted: 'accept',
    forwardTimeoutMs: 1000,
    webhookSecret: SECRET,
    ...(typeof options.config === 'function' ? options.config(jenkins) : options.config),
  }
  const logs: LogLine[] = []
  const server = await createSpigotServer({config, queue, state, log: recordingLogger(logs), ...options.server})
  const url = await server.listen(0, '127.0.0.1')
  open.push(() => server.close())
  return {
    jenkins,
    queue,
    state,
    server,
    url,
    logs,
    async post(hook, path = '/') {
      const response = await fetch(url + path, {method: 'POST', headers: hook.headers, body: hook.body})
      const text = await response.text()
      return {status: response.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {}}
    },
    async queued() {
      const messages = await realQueue.peek(10)
      return messages.map((raw) => ({raw, message: decodeMessage(raw.body)}))
    },
  }
}

const signed = (event: string, payload: unknown, extra: Parameters<typeof githubDelivery>[2] = {}) => githubDelivery(event, payload, {secret: SECRET, ...extra})

describe('spigot serve: state ON, Jenkins up', () => {
  it('forwards real push, pull_request and issue_comment payloads byte-identically, signature intact', async () => {
    const f = await fixture()
    const hooks = [
      signed('push', githubExample('push'), {pretty: true}),
      signed('pull_request', githubExample('pull_request', {action: 'opened'})),
      signed('issue_comment', githubExample('issue_comment', {action: 'created'}), {pretty: true}),
    ]
    const paths = ['/', '/github-webhook/', '/ghprbhook']
    for (const [i, hook] of hooks.entries()) {
      const answer = await f.post(hook, paths[i])
      expect(answer.status).toBe(200)
      expect(answer.json).toMatchObject({ok: true, forwarded: ['default']})
    }
    expect(f.jenkins.webhooks.map((r) => r.url)).toEqual(['/github-webhook/', '/ghprbhook/', '/ghprbhook/'])
    for (const [i, hook] of hooks.entries()) {
      const got = f.jenkins.webhooks[i]!
      expect(got.body.equals(hook.body)).toBe(true)
      expect(signatureVerifies(SECRET, got)).toBe(true)
      expect(got.headers['x-github-event']).toBe(hook.event)
      expect(got.headers['x-github-delivery']).toBe(hook.delivery)
      expect(got.headers['x-github-hook-id']).toBe('412345678')
      expect(got.headers['x-hub-signature']).toBe(hook.headers['X-Hub-Signature'])
      expect(got.headers['user-agent']).toBe('GitHub-Hookshot/5a7f3a1')
      // Only the kept headers travel.
      expect(got.headers['x-github-hook-installation-target-id']).toBeUndefined()
    }
    expect(await f.queued()).toEqual([])
    expect(f.server.counts).toMatchObject({forwarded: 3, queued: 0})
  })

  it('form-encoded payloads are parsed for routing and forwarded raw', async () => {
    const f = await fixture()
    const hook = signed('push', githubExample('push', {index: 1}), {form: true})
    expect((await f.post(hook)).status).toBe(200)
    expect(f.jenkins.webhooks[0]!.body.equals(hook.body)).toBe(true)
    expect(f.jenkins.webhooks[0]!.headers['content-type']).toBe('application/x-www-form-urlencoded')
  })

  it('ping → 200, nothing forwarded or queued', async () => {
    const f = await fixture()
    const answer = await f.post(signed('ping', githubExample('ping')))
    expect(answer).toMatchObject({status: 200, json: {ok: true, event: 'ping'}})
    expect(f.jenkins.webhooks).toHaveLength(0)
    expect(await f.queued()).toHaveLength(0)
  })

  it('an event with no route → 202 and a log line, or 400 by config', async () => {
    const f = await fixture()
    const answer = await f.post(signed('star', githubExample('star')))
    expect(answer).toMatchObject({status: 202, json: {ok: true, event: 'star'}})
    expect(f.jenkins.webhooks).toHaveLength(0)
    expect(await f.queued()).toHaveLength(0)
    expect(f.logs.some((l) => l.message.includes('no route') && l.fields.event === 'star')).toBe(true)

    const strict = await fixture({config: {unrouted: 'reject'}})
    expect((await strict.post(signed('star', githubExample('star')))).status).toBe(400)
  })

  it('several targets: each gets the webhook; only the one that failed is queued, with its name', async () => {
    const legacy = await jenkinsStandIn('refuse')
    open.push(() => legacy.close())
    const f = await fixture({
      config: (jenkins) => ({
        targets: [
          {name: 'default', url: jenkins.url},
          {name: 'legacy', url: legacy.url},
        ],
        routes: {push: {path: 'github-webhook/', targets: ['default', 'legacy']}},
      }),
    })
    const hook = signed('push', githubExample('push'))
    const answer = await f.post(hook)
    expect(answer.status).toBe(202)
    expect(answer.json).toMatchObject({queued: ['legacy'], forwarded: ['default']})
    expect(f.jenkins.webhooks).toHaveLength(1)
    const queued = await f.queued()
    expect(queued).toHaveLength(1)
    expect(queued[0]!.message.target).toBe('legacy')
    expect(queued[0]!.raw.deduplicationId).toBe(`${hook.delivery}:legacy`)
  })
})

describe('spigot serve: Jenkins failing or the spigot OFF → queued', () => {
  for (const [mode, cause] of [
    ['refuse', 'jenkins-refused'],
    ['hang', 'jenkins-timeout'],
    ['server-error', 'jenkins-server-error'],
  ] as const) {
    it(`ON + Jenkins ${mode} → queued → 202, message in the original shape plus raw bytes`, async () => {
      const f = await fixture({mode, config: {forwardTimeoutMs: 300}})
      const payload = githubExample('pull_request', {action: 'synchronize'})
      const hook = signed('pull_request', payload, {pretty: true})
      const answer = await f.post(hook)
      expect(answer.status).toBe(202)
      expect(answer.json).toMatchObject({ok: true, queued: ['default'], state: 'ON'})
      const queued = await f.queued()
      expect(queued).toHaveLength(1)
      const {message, raw} = queued[0]!
      expect(message).toMatchObject({spigot_state: 'ON', from_queue: 'false', body: payload, target: 'default'})
      expect(Object.keys(message).slice(0, 4)).toEqual(['spigot_state', 'from_queue', 'body', 'headers'])
      expect(message.headers).toEqual({
        'X-GitHub-Event': 'pull_request',
        'X-GitHub-Delivery': hook.delivery,
        'X-GitHub-Hook-ID': '412345678',
        'X-Hub-Signature': hook.headers['X-Hub-Signature'],
        'X-Hub-Signature-256': hook.headers['X-Hub-Signature-256'],
        'Content-Type': 'application/json',
        'User-Agent': 'GitHub-Hookshot/5a7f3a1',
      })
      expect(replayBytes(message).equals(hook.body)).toBe(true)
      expect(raw.groupId).toBe((payload.repository as {full_name: string}).full_name)
      expect(raw.deduplicationId).toBe(`${hook.delivery}:default`)
      expect(f.server.counts.queued).toBe(1)
      const metrics = await (await fetch(f.url + '/metrics')).text()
      expect(metrics).toContain(`cistern_spigot_webhooks_total{outcome="queued",reason="${cause}"} 1`)
      if (mode === 'hang') f.jenkins.releaseHanging()
    })
  }

  it('OFF → queued → 202 without touching Jenkins; a redelivery still waiting is not queued twice', async () => {
    const f = await fixture({state: 'OFF'})
    const hook = signed('push', githubExample('push'))
    const first = await f.post(hook)
    expect(first).toMatchObject({status: 202, json: {queued: ['default'], state: 'OFF'}})
    const again = await f.post(hook)
    expect(again).toMatchObject({status: 202, json: {duplicate: true}})
    expect(f.jenkins.requests).toHaveLength(0)
    const queued = await f.queued()
    expect(queued).toHaveLength(1)
    expect(queued[0]!.message.spigot_state).toBe('OFF')
    const metrics = await (await fetch(f.url + '/metrics')).text()
    expect(metrics).toContain('cistern_spigot_webhooks_total{outcome="queued",reason="spigot-off"} 1')
    expect(metrics).toContain('cistern_spigot_webhooks_total{outcome="queued",reason="duplicate"} 1')

    // Once drained (deleted), the same delivery may be queued again (a later manual redelivery).
    const [received] = await f.queue.receive({maxMessages: 1})
    await f.queue.delete(received!.receiptHandle)
    expect((await f.post(hook)).json).toMatchObject({queued: ['default']})
    expect(await f.queued()).toHaveLength(1)
  })

  it('the state is read per request: OFF then ON', async () => {
    const f = await fixture({state: 'OFF'})
    expect((await f.post(signed('push', githubExample('push')))).status).toBe(202)
    await f.state.set('ON')
    // Another repository: one with a webhook queued gets its next one queued behind it (issue 11.8).
    const other = githubExample('push')
    other.repository = {...(other.repository as object), full_name: 'octo/other'}
    expect((await f.post(signed('push', other))).status).toBe(200)
    expect(f.jenkins.webhooks).toHaveLength(1)
    expect((await f.post(signed('push', githubExample('push')))).json).toMatchObject({queued: ['default'], state: 'ON'})
  })

  it('/healthz reports the state and the backlog', async () => {
    const f = await fixture({state: 'OFF'})
    await f.post(signed('push', githubExample('push')))
    await f.post(signed('push', githubExample('push', {index: 1})))
    const health = await (await fetch(f.url + '/healthz')).json()
    expect(health).toMatchObject({ok: true, state: 'OFF', stateBackend: 'local', backlog: 2, dead: 0})
  })

  it('a queue that fails → 503, never a 2xx', async () => {
    const f = await fixture({
      state: 'OFF',
      wrapQueue: (queue) =>
        new Proxy(queue, {
          get: (target, key, receiver) =>
            key === 'send' || key === 'sendBatch' ? async () => Promise.reject(new Error('disk I/O error')) : Reflect.get(target, key, receiver),
        }),
    })
    const answer = await f.post(signed('push', githubExample('push')))
    expect(answer.status).toBe(503)
    expect(answer.json.error).toContain('disk I/O error')
    expect(f.logs.some((l) => l.level === 'error' && l.message.includes('not queued'))).toBe(true)
  })

  it('comments on a queued pull_request (not on a closed one) through the GitHub API', async () => {
    const github = await standIn((_req, res) => {
      res.writeHead(201, {'content-type': 'application/json'})
      res.end('{"id":1}')
    })
    open.push(() => github.close())
    const commenter = createCommenter({token: 'ghp_test_token', baseUrl: github.url, log: silentLogger})
    const f = await fixture({state: 'OFF', server: {commenter}})
    const opened = githubExample('pull_request', {action: 'opened'})
    await f.post(signed('pull_request', opened))
    await f.post(signed('pull_request', githubExample('pull_request', {action: 'closed'})))
    await f.post(signed('push', githubExample('push')))
    for (let i = 0; i < 50 && github.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
    await new Promise((r) => setTimeout(r, 100))
    expect(github.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      `POST /repos/${(opened.repository as {full_name: string}).full_name}/issues/${String(opened.number)}/comments`,
    ])
  })
})

describe('spigot serve: the queue and target metrics (examples/monitoring)', () => {
  const sample = (text: string, name: string) => new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]

  it('backlog by state, oldest age, dead letters and Jenkins health, read at scrape time', async () => {
    const f = await fixture({state: 'OFF'})
    await f.post(signed('push', githubExample('push')))
    await f.post(signed('pull_request', githubExample('pull_request')))
    const [held] = await f.queue.receive({maxMessages: 1, visibilityTimeout: 60})
    let metrics = await (await fetch(f.url + '/metrics')).text()
    const q = `queue="${f.queue.url}"`
    expect(sample(metrics, `cistern_queue_messages{${q},state="visible"}`)).toBe('1')
    expect(sample(metrics, `cistern_queue_messages{${q},state="in_flight"}`)).toBe('1')
    expect(sample(metrics, `cistern_queue_messages{${q},state="delayed"}`)).toBe('0')
    expect(sample(metrics, `cistern_queue_messages{${q},state="dead"}`)).toBe('0')
    expect(Number(sample(metrics, `cistern_queue_oldest_message_age_seconds{${q}}`))).toBeGreaterThanOrEqual(0)
    expect(sample(metrics, `cistern_dead_letters_total{${q}}`)).toBe('0')
    // Nothing forwarded yet (OFF): a health check says.
    expect(sample(metrics, 'cistern_target_up{target="jenkins:default"}')).toBe('1')

    await f.queue.deadLetter(held!, 'poison for the test')
    await f.jenkins.setMode('refuse')
    await f.state.set('ON')
    const other = githubExample('push')
    other.repository = {...(other.repository as object), full_name: 'octo/other'}
    expect((await f.post(signed('push', other))).status).toBe(202)
    metrics = await (await fetch(f.url + '/metrics')).text()
    expect(sample(metrics, `cistern_queue_messages{${q},state="dead"}`)).toBe('1')
    expect(sample(metrics, `cistern_queue_messages{${q},state="visible"}`)).toBe('2')
    expect(sample(metrics, 'cistern_target_up{target="jenkins:default"}')).toBe('0')
  })
})

describe('spigot serve: bad input', () => {
  it('wrong or missing signature → 401, nothing forwarded or queued', async () => {
    const f = await fixture({state: 'OFF'})
    const wrong = githubDelivery('push', githubExample('push'), {secret: 'not-the-secret'})
    expect((await f.post(wrong)).status).toBe(401)
    const unsigned = githubDelivery('push', githubExample('push'))
    const answer = await f.post(unsigned)
    expect(answer.status).toBe(401)
    expect(answer.json.error).toMatch(/missing X-Hub-Signature-256/)
    const tampered = signed('push', githubExample('push'))
    tampered.body = Buffer.from(tampered.body.toString().replace('"ref"', '"ref" '))
    expect((await f.post(tampered)).status).toBe(401)
    expect(await f.queued()).toHaveLength(0)
    expect(f.jenkins.requests).toHaveLength(0)
    const metrics = await (await fetch(f.url + '/metrics')).text()
    expect(metrics).toContain('cistern_spigot_webhooks_total{outcome="rejected",reason="signature"} 3')
  })

  it('missing X-GitHub-Event → 400; malformed JSON → 400; wrong content type → 400', async () => {
    const f = await fixture({state: 'OFF', config: {webhookSecret: undefined}})
    const noEvent = githubDelivery('push', githubExample('push'))
    delete noEvent.headers['X-GitHub-Event']
    expect((await f.post(noEvent)).status).toBe(400)
    const malformed = {body: '{"ref": "refs/heads/main",', headers: {'Content-Type': 'application/json', 'X-GitHub-Event': 'push', 'X-GitHub-Delivery': 'bad-1'}}
    const answer = await f.post(malformed)
    expect(answer.status).toBe(400)
    expect(answer.json.error).toMatch(/malformed JSON/)
    expect((await f.post({body: 'payload=%7B', headers: {'Content-Type': 'application/x-www-form-urlencoded', 'X-GitHub-Event': 'push'}})).status).toBe(400)
    expect((await f.post({body: '<push/>', headers: {'Content-Type': 'text/xml', 'X-GitHub-Event': 'push'}})).status).toBe(400)
    expect((await f.post({body: '', headers: {'Content-Type': 'application/json', 'X-GitHub-Event': 'push'}})).status).toBe(400)
    expect(await f.queued()).toHaveLength(0)
    // GET on the webhook path is not a webhook.
    expect((await fetch(f.url + '/')).status).toBe(404)
  })

  it('a body over the 25 MB limit → 413 and an error log, nothing queued', async () => {
    const f = await fixture({state: 'OFF'})
    const big = Buffer.alloc(25 * 1024 * 1024 + 1, 0x20)
    const response = await fetch(f.url + '/', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-GitHub-Event': 'push'}, body: big})
    expect(response.status).toBe(413)
    expect(await f.queued()).toHaveLength(0)
    expect(f.logs.some((l) => l.level === 'error' && l.message.includes('over the limit'))).toBe(true)
    const metrics = await (await fetch(f.url + '/metrics')).text()
    expect(metrics).toContain('cistern_spigot_webhooks_total{outcome="rejected",reason="body-limit"} 1')
  })
})

describe('spigot serve: payloads larger than the queue allows', () => {
  // SQS's default limit (256 KiB) on the embedded queue, so the test needs no 25 MB payloads.
  const sqsSized = (queue: Queue): Queue =>
    new Proxy(queue, {get: (target, key, receiver) => (key === 'capabilities' ? {...target.capabilities, maxBodyBytes: 256 * 1024} : Reflect.get(target, key, receiver))})

  function bigPush(bytes: number) {
    const payload = githubExample('push')
    payload.head_commit = {...(payload.head_commit as object), message: 'x'.repeat(bytes)}
    return payload
  }

  const s3 = mockClient(S3Client)
  beforeEach(() => s3.reset())
  afterAll(() => s3.restore())

  it('a payload that fits only without the parsed copy is queued raw-only', async () => {
    const f = await fixture({state: 'OFF', wrapQueue: sqsSized})
    // Pretty-printed, so the message needs raw_body besides the parsed body.
    const hook = signed('push', bigPush(110 * 1024), {pretty: true})
    expect((await f.post(hook)).status).toBe(202)
    const [{message}] = (await f.queued()) as [{message: SpigotMessage; raw: QueueMessage}]
    expect(message.body).toBeNull()
    expect(replayBytes(message).equals(hook.body)).toBe(true)
  })

  it('bigger → S3 PutObject with the raw bytes, pointer in the message, no raw_body', async () => {
    s3.on(PutObjectCommand).resolves({ETag: '"abc"'})
    const f = await fixture({state: 'OFF', wrapQueue: sqsSized, server: {largePayloads: s3LargePayloadStore({bucket: 'spigot-overflow', region: 'us-east-1'})}})
    const hook = signed('push', bigPush(400 * 1024))
    const answer = await f.post(hook)
    expect(answer.status).toBe(202)
    const puts = s3.commandCalls(PutObjectCommand)
    expect(puts).toHaveLength(1)
    const input = puts[0]!.args[0].input
    expect(input.Bucket).toBe('spigot-overflow')
    expect(input.Key).toMatch(new RegExp(`^spigot/\\d{4}-\\d{2}-\\d{2}/${hook.delivery}\\.json$`))
    expect(Buffer.from(input.Body as Uint8Array).equals(hook.body)).toBe(true)
    const [{message, raw}] = (await f.queued()) as [{message: SpigotMessage; raw: QueueMessage}]
    expect(message.raw_body).toBeUndefined()
    expect(message.large_payload).toEqual({bucket: 'spigot-overflow', key: input.Key, bytes: hook.body.length})
    expect(message.headers['X-GitHub-Delivery']).toBe(hook.delivery)
    expect(raw.groupId).toBe('Codertocat/Hello-World')
  })

  it('S3 failing → 503, nothing queued', async () => {
    s3.on(PutObjectCommand).rejects(new Error('AccessDenied'))
    const f = await fixture({state: 'OFF', wrapQueue: sqsSized, server: {largePayloads: s3LargePayloadStore({bucket: 'spigot-overflow', region: 'us-east-1'})}})
    const answer = await f.post(signed('push', bigPush(400 * 1024)))
    expect(answer.status).toBe(503)
    expect(answer.json.error).toMatch(/AccessDenied/)
    expect(await f.queued()).toHaveLength(0)
  })

  it('bigger and no bucket → 413 and an error log, nothing queued', async () => {
    const f = await fixture({state: 'OFF', wrapQueue: sqsSized})
    const answer = await f.post(signed('push', bigPush(400 * 1024)))
    expect(answer.status).toBe(413)
    expect(answer.json.error).toMatch(/--large-payload-bucket/)
    expect(await f.queued()).toHaveLength(0)
    expect(f.logs.some((l) => l.level === 'error' && l.message.includes('too large'))).toBe(true)
    // A big payload is fine while Jenkins takes it directly.
    await f.state.set('ON')
    expect((await f.post(signed('push', bigPush(400 * 1024)))).status).toBe(200)
  })
})

describe('spigot serve: shutdown', () => {
  it('close() lets an in-flight request finish (queued after the forward timeout), then refuses', async () => {
    const f = await fixture({mode: 'hang', config: {forwardTimeoutMs: 400}})
    const pending = f.post(signed('push', githubExample('push')))
    for (let i = 0; i < 50 && f.jenkins.webhooks.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    const closing = f.server.close()
    const answer = await pending
    await closing
    expect(answer.status).toBe(202)
    expect(await f.queued()).toHaveLength(1)
    await expect(fetch(f.url + '/healthz')).rejects.toThrow()
  })
})

describe('spigot serve --help', () => {
  it('lists no flag it does not use (issue 14: --drain-rule is toggle\'s); paragraphs are single lines', () => {
    expect(Object.keys(SpigotServe.flags)).not.toContain('drain-rule')
    // --health-path is used: the health check behind cistern_target_up while nothing is forwarded.
    expect(Object.keys(SpigotServe.flags)).toContain('health-path')
    for (const paragraph of SpigotServe.description.split('\n\n')) expect(paragraph).not.toContain('\n')
  })
})

describe('cachedState', () => {
  it('ttl 0: one read per event-loop turn, a fresh read on the next turn, a failed read not kept', async () => {
    let reads = 0
    let value: 'ON' | 'OFF' = 'OFF'
    let fail = false
    const read = cachedState(
      {
        backend: 'local',
        async get() {
          reads++
          if (fail) throw new Error('disk gone')
          return value
        },
      },
      0,
    )
    expect(await Promise.all([read(), read(), read()])).toEqual(['OFF', 'OFF', 'OFF'])
    expect(reads).toBe(1)
    await new Promise((resolve) => setImmediate(resolve))
    value = 'ON'
    expect(await read()).toBe('ON')
    expect(reads).toBe(2)
    await new Promise((resolve) => setImmediate(resolve))
    fail = true
    await expect(read()).rejects.toThrow('disk gone')
    await new Promise((resolve) => setImmediate(resolve))
    fail = false
    expect(await read()).toBe('ON')
    expect(reads).toBe(4)
  })
})
