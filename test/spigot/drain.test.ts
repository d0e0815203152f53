import {DeleteObjectCommand, GetObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {mockClient} from 'aws-sdk-client-mock'
import {join} from 'node:path'
import {afterEach, describe, expect, it, vi} from 'vitest'

import {type LogFields, createLogger} from '../../src/core/log.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import type {PrCommenter} from '../../src/spigot/comments.js'
import {DEFAULT_ROUTES, type SpigotConfig} from '../../src/spigot/config.js'
import {type DrainOptions, drain as drainNow, renderSummary} from '../../src/spigot/drain.js'
import type {LargePayloadPointer} from '../../src/spigot/large-payload.js'
import type {SpigotMessage} from '../../src/core/webhook-message.js'
import {openStateStore} from '../../src/spigot/state.js'
import {standIn} from '../helpers/http.js'
import {type JenkinsStandIn, jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, lambdaMessage, seeded, sign, webhook} from './drain-fixtures.js'

const dir = tempDir('cistern-drain-')
let n = 0
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** The drain with short target back-offs (50 ms doubling to 200 ms) and give-up (2 s), so failures cost little time. */
function drain(options: DrainOptions) {
  return drainNow({targetBackoff: {baseMs: 50, maxMs: 200}, giveUpAfterMs: 2000, ...options})
}

/** A JSON logger that keeps its lines. */
function memoryLog(level: 'debug' | 'info' | 'warn' = 'warn') {
  const lines: Array<{level: string; msg: string} & LogFields> = []
  const log = createLogger({level, format: 'json', stream: {write: (t: string) => (lines.push(JSON.parse(t)), true)} as unknown as NodeJS.WritableStream})
  return {log, lines}
}

async function setup(options: {fifo?: boolean; maxReceiveCount?: number} = {}) {
  const dbPath = join(dir, `q${++n}.db`)
  const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: options.fifo ?? true, maxReceiveCount: options.maxReceiveCount ?? 0, visibilityTimeout: 5})
  const state = await openStateStore({backend: 'local', dbPath})
  cleanups.push(async () => {
    await queue.close()
    await state.close()
  })
  return {queue, state}
}

async function jenkins(...args: Parameters<typeof jenkinsStandIn>): Promise<JenkinsStandIn> {
  const stand = await jenkinsStandIn(...args)
  cleanups.push(() => stand.close())
  return stand
}

function configFor(...urls: string[]): SpigotConfig {
  const targets = urls.map((url, i) => ({name: i === 0 ? 'default' : `t${i}`, url}))
  const routes = Object.fromEntries(Object.entries(DEFAULT_ROUTES).map(([event, rule]) => [event, {path: rule.path, targets: [...rule.targets]}]))
  return {queue: 'unused', targets, routes, unrouted: 'accept', forwardTimeoutMs: 1000}
}

async function waiting(queue: Queue) {
  const stats = await queue.stats()
  return stats.visible + stats.inFlight + stats.delayed
}

const delivery = (req: {headers: Record<string, string | string[] | undefined>}) => String(req.headers['x-github-delivery'])

describe('drain: replay', () => {
  it('replays the raw bytes byte-identically with the kept headers, routed by event; the signature verifies', async () => {
    const {queue} = await setup()
    const stand = await jenkins('accept')
    const hooks = [webhook('push'), webhook('pull_request', {index: 0}), webhook('issue_comment'), webhook('push', {index: 3})]
    await enqueue(queue, hooks.map((h) => h.message))

    const summary = await drain({queue, config: configFor(stand.url)})
    expect(summary).toMatchObject({delivered: 4, retried: 0, dead: 0, remaining: 0, stoppedBy: 'empty', exitCode: 0, problems: []})
    expect(stand.webhooks).toHaveLength(4)
    for (const hook of hooks) {
      const got = stand.webhooks.find((req) => delivery(req) === hook.delivery)!
      expect(got.body.equals(hook.raw)).toBe(true)
      expect(got.headers['x-hub-signature-256']).toBe(sign(got.body))
      expect(got.headers['x-github-event']).toBe(hook.message.headers['X-GitHub-Event'])
      expect(got.headers['x-github-hook-id']).toBe('1234')
      expect(got.headers['user-agent']).toBe('GitHub-Hookshot/abc123')
      expect(got.headers['content-type']).toBe('application/json')
      expect(got.url).toBe(hook.message.headers['X-GitHub-Event'] === 'push' ? '/github-webhook/' : '/ghprbhook/')
    }
    expect(await waiting(queue)).toBe(0)
    expect(renderSummary(summary)).toMatch(/^drain: 4 delivered, 0 retried, 0 dead, 0 remaining/)
  })

  it('re-serialises messages the original Lambda queued (no raw_body) and drops headers it should not replay', async () => {
    const {queue} = await setup({fifo: false})
    const stand = await jenkins('accept')
    const original = lambdaMessage('pull_request')
    await queue.send({body: JSON.stringify(original.message)})
    const summary = await drain({queue, config: configFor(stand.url)})
    expect(summary.delivered).toBe(1)
    const [got] = stand.webhooks
    expect(got!.body.toString()).toBe(JSON.stringify(original.message.body))
    expect(got!.url).toBe('/ghprbhook/')
    expect(got!.headers['x-github-delivery']).toBe(original.delivery)
    expect(got!.headers['x-forwarded-for']).toBeUndefined()
    expect(got!.headers.host).toBe(new URL(stand.url).host)
  })

  it('keeps each repository\'s order (FIFO groups) with several deliveries in flight', async () => {
    const {queue} = await setup()
    const stand = await jenkins('accept')
    // Slow answers so that several groups are in flight at once.
    const repos = ['acme/a', 'acme/b', 'acme/c']
    const sent: Record<string, string[]> = {a: [], b: [], c: []}
    const hooks = []
    for (let i = 0; i < 12; i++) {
      const repo = repos[i % 3]!
      const hook = webhook('push', {repo})
      sent[repo.slice(-1)]!.push(hook.delivery)
      hooks.push(hook.message)
    }
    await enqueue(queue, hooks)
    const summary = await drain({queue, config: configFor(stand.url), concurrency: 4})
    expect(summary.delivered).toBe(12)
    for (const repo of repos) {
      const order = stand.webhooks.filter((req) => JSON.parse(req.body.toString()).repository.full_name === repo).map(delivery)
      expect(order).toEqual(sent[repo.slice(-1)])
    }
  })

  it('comments "Jenkins is back" on replayed pull requests only (not closed ones)', async () => {
    const {queue} = await setup()
    const stand = await jenkins('accept')
    const replayed: SpigotMessage[] = []
    const commenter: PrCommenter = {queued: async () => undefined, replayed: async (m) => void replayed.push(m)}
    const opened = webhook('pull_request', {index: 0})
    const closed = webhook('pull_request', {index: 3})
    expect((closed.message.body as {action: string}).action).toBe('closed')
    await enqueue(queue, [opened.message, closed.message, webhook('push').message])
    await drain({queue, config: configFor(stand.url), commenter})
    expect(replayed.map((m) => m.headers['X-GitHub-Delivery'])).toEqual([opened.delivery])
  })

  it('reads a large payload through its pointer and replays those bytes', async () => {
    const {queue} = await setup()
    const stand = await jenkins('accept')
    const big = webhook('push')
    const pointer = {bucket: 'overflow', key: 'spigot/x.json', bytes: big.raw.length}
    const {raw_body: _dropped, ...rest} = big.message
    await enqueue(queue, [{...rest, body: {repository: {full_name: 'acme/big'}}, large_payload: pointer}])
    const fetched: unknown[] = []
    const deleted: LargePayloadPointer[] = []
    const largePayloads = {read: async (p: LargePayloadPointer) => (fetched.push(p), big.raw), delete: async (p: LargePayloadPointer) => void deleted.push(p)}
    const summary = await drain({queue, config: configFor(stand.url), largePayloads})
    expect(summary.delivered).toBe(1)
    expect(fetched).toEqual([pointer])
    expect(stand.webhooks[0]!.body.equals(big.raw)).toBe(true)
    expect(stand.webhooks[0]!.headers['x-hub-signature-256']).toBe(sign(big.raw))
    // Delivered: its S3 object goes (issue 14), after the queue's delete of the message.
    expect(deleted).toEqual([pointer])
  })

  it('an overflow object another copy may still need (the event goes to two targets) is left to the lifecycle rule', async () => {
    const {queue} = await setup()
    const first = await jenkins('accept')
    const second = await jenkins('accept')
    const config = configFor(first.url, second.url)
    config.routes.push = {path: 'github-webhook/', targets: ['default', 't1']}
    const big = webhook('push', {target: 'default'})
    const {raw_body: _dropped, ...rest} = big.message
    await enqueue(queue, [{...rest, large_payload: {bucket: 'overflow', key: 'spigot/shared.json', bytes: big.raw.length}}])
    const deleted: LargePayloadPointer[] = []
    const summary = await drain({queue, config, largePayloads: {read: async () => big.raw, delete: async (p) => void deleted.push(p)}})
    expect(summary).toMatchObject({delivered: 1, exitCode: 0})
    expect(first.webhooks).toHaveLength(1)
    expect(second.webhooks).toHaveLength(0)
    expect(deleted).toEqual([])
  })

  it('reads a large payload from S3 (GetObject on the pointer) when no reader is injected', async () => {
    const {queue} = await setup()
    const stand = await jenkins('accept')
    const big = webhook('pull_request')
    const s3 = mockClient(S3Client)
    cleanups.push(async () => s3.restore())
    s3.on(GetObjectCommand).resolves({Body: {transformToByteArray: async () => new Uint8Array(big.raw)}} as never)
    const {raw_body: _dropped, ...rest} = big.message
    await enqueue(queue, [{...rest, large_payload: {bucket: 'overflow', key: 'spigot/2026-11-26/d.json', bytes: big.raw.length}}])
    const summary = await drain({queue, config: configFor(stand.url), region: 'us-east-1'})
    expect(summary.delivered).toBe(1)
    expect(s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input)).toEqual([{Bucket: 'overflow', Key: 'spigot/2026-11-26/d.json'}])
    expect(stand.webhooks[0]!.body.equals(big.raw)).toBe(true)
    expect(stand.webhooks[0]!.url).toBe('/ghprbhook/')
    expect(s3.commandCalls(DeleteObjectCommand).map((c) => c.args[0].input)).toEqual([{Bucket: 'overflow', Key: 'spigot/2026-11-26/d.json'}])

    // S3 refusing: not the message's fault (issue 11: target failures are not message failures):
    // it is handed back untouched and nothing is dead-lettered; S3 refusing the credentials ends the run (exit 3).
    s3.reset()
    s3.on(GetObjectCommand).rejects(Object.assign(new Error('Access Denied'), {name: 'AccessDenied'}))
    await enqueue(queue, [{...rest, headers: {...rest.headers, 'X-GitHub-Delivery': 'other'}, large_payload: {bucket: 'overflow', key: 'k', bytes: 1}}])
    const failed = await drain({queue, config: configFor(stand.url), region: 'us-east-1', retryDelaySeconds: 60})
    expect(failed).toMatchObject({delivered: 0, retried: 0, released: 1, dead: 0, remaining: 1, exitCode: 3})
    expect(failed.problems).toEqual([expect.stringMatching(/^1 remaining \(s3:overflow is down: could not read the payload at s3:\/\/overflow\/k: Access Denied\)$/)])
    expect((await queue.stats()).dead).toBe(0)

    // The object is gone (expired, or a replay already delivered it): that message can never be replayed: dead, loudly.
    s3.reset()
    s3.on(GetObjectCommand).rejects(Object.assign(new Error('The specified key does not exist.'), {name: 'NoSuchKey'}))
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const gone = await drain({queue, config: configFor(stand.url), region: 'us-east-1'})
    expect(gone).toMatchObject({delivered: 0, dead: 1, remaining: 0, exitCode: 1})
    expect(gone.deadLetters[0]!.reason).toMatch(/could not read the payload at s3:\/\/overflow\/k: The specified key does not exist/)
  })

  it('a flapping Jenkins (every 2nd webhook 503, health up): everything delivered, nothing dead', async () => {
    const {queue} = await setup()
    const stand = await jenkins({kind: 'flap', every: 2, status: 503})
    const hooks = Array.from({length: 10}, (_, i) => webhook('push', {repo: `acme/f${i}`}))
    await enqueue(queue, hooks.map((h) => h.message))
    let delivered = 0
    for (let pass = 0; pass < 10 && (await waiting(queue)) > 0; pass++) {
      const summary = await drain({queue, config: configFor(stand.url), retryDelaySeconds: 0})
      expect(summary.dead).toBe(0)
      delivered += summary.delivered
    }
    expect(delivered).toBe(10)
    expect(stand.answered - stand.accepted).toBeGreaterThan(0)
    const accepted = new Set(stand.webhooks.map(delivery))
    for (const hook of hooks) expect(accepted.has(hook.delivery)).toBe(true)
  })

  it('a message for several targets is not sent again to one that already took it', async () => {
    const {queue} = await setup()
    const first = await jenkins('accept')
    let posts = 0
    // The second Jenkins answers its first webhook 503 (health stays up), then 200.
    const second = await standIn((req, res) => {
      if (req.method === 'GET') return void res.end('{}')
      res.writeHead(++posts === 1 ? 503 : 200).end()
    })
    cleanups.push(() => second.close())
    const config = configFor(first.url, second.url + '/')
    config.routes.push = {path: 'github-webhook/', targets: ['default', 't1']}
    const hook = webhook('push')
    await enqueue(queue, [hook.message])
    const summary = await drain({queue, config, retryDelaySeconds: 0})
    // A 503 is the second Jenkins' trouble, not the message's: handed back (released), then delivered (issue 11).
    expect(summary).toMatchObject({delivered: 1, released: 1, remaining: 0, dead: 0, exitCode: 0})
    expect(first.webhooks.map(delivery)).toEqual([hook.delivery])
    expect(second.requests.filter((r) => r.method === 'POST').map(delivery)).toEqual([hook.delivery, hook.delivery])
  })
})

describe('drain: failures', () => {
  it('Jenkins unhealthy at the start: exit-3 outcome, no message touched, auto-off sets OFF', async () => {
    const {queue, state} = await setup()
    const stand = await jenkins('accept', {health: 503})
    await enqueue(queue, [webhook('push').message, webhook('push').message])
    const summary = await drain({queue, config: configFor(stand.url), state, autoOff: true})
    expect(summary.stoppedBy).toBe('unhealthy')
    expect(summary.unhealthy).toMatchObject({name: 'default', state: 'down'})
    expect(summary.autoOff).toEqual({before: 'ON', after: 'OFF'})
    expect(summary.exitCode).toBe(3)
    expect(summary.problems).toEqual([expect.stringMatching(/^Jenkins default http:\/\/127\.0\.0\.1:\d+\/ down \(\d+ ms\) — GET \/health\/ answered 503 — queued webhooks are kept/)])
    expect(await state.get()).toBe('OFF')
    expect(stand.webhooks).toHaveLength(0)
    // Untouched: never received.
    const peeked = await queue.peek(10)
    expect(peeked.map((m) => m.receiveCount)).toEqual([0, 0])
    expect(renderSummary(summary)).toMatch(/stopped: Jenkins down; spigot ON → OFF/)
  })

  it('quieting down counts as unhealthy; without --auto-off the state is left alone', async () => {
    const {queue, state} = await setup()
    const stand = await jenkins('accept', {quietingDown: true})
    await enqueue(queue, [webhook('push').message])
    const summary = await drain({queue, config: configFor(stand.url), state})
    expect(summary).toMatchObject({stoppedBy: 'unhealthy', unhealthy: {state: 'quieting-down'}, remaining: 1, exitCode: 3})
    expect(summary.autoOff).toBeUndefined()
    expect(await state.get()).toBe('ON')
    expect(stand.webhooks).toHaveLength(0)
  })

  it('Jenkins going down mid-drain: stop, auto-off, the rest stays queued and a later drain delivers it', async () => {
    const {queue, state} = await setup()
    const stand = await jenkins('accept')
    const hooks = Array.from({length: 8}, (_, i) => webhook('push', {repo: `acme/r${i}`}))
    await enqueue(queue, hooks.map((h) => h.message))
    let answered = 0
    // After 3 accepted webhooks Jenkins goes away (port closed): the 4th delivery is refused.
    const log = createLogger({level: 'error', format: 'json', stream: {write: () => true} as unknown as NodeJS.WritableStream})
    const summary = await drain({
      queue,
      config: configFor(stand.url),
      state,
      autoOff: true,
      concurrency: 1,
      giveUpAfterMs: 500,
      log,
      onProgress: (p) => {
        if (p.delivered === 3 && answered === 0) {
          answered = 3
          void stand.setMode('refuse')
        }
      },
    })
    expect(summary.stoppedBy).toBe('unhealthy')
    expect(summary.delivered).toBeGreaterThanOrEqual(3)
    expect(summary.delivered).toBeLessThan(8)
    expect(summary.remaining).toBe(8 - summary.delivered)
    expect(await state.get()).toBe('OFF')
    // Given up after --give-up-after with no success: exit 3, what remains and why, nothing dead.
    expect(summary).toMatchObject({exitCode: 3, dead: 0, targetsDown: [{target: 'jenkins:default', givenUp: true}]})
    expect(summary.problems).toEqual([`${8 - summary.delivered} remaining (jenkins:default is down: ${summary.targetsDown[0]!.reason})`])
    // The first failure may be a keep-alive connection the closing Jenkins reset, the next are refusals.
    expect(summary.targetsDown[0]!.reason).toMatch(/connection (refused|reset): POST github-webhook\/ \((127\.0\.0\.1:\d+, )?(ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)\)/)
    expect((await queue.stats()).dead).toBe(0)

    await stand.setMode('accept')
    await state.set('ON')
    const again = await drain({queue, config: configFor(stand.url), state})
    expect(again.delivered + summary.delivered).toBe(8)
    const seen = new Set(stand.webhooks.map(delivery))
    for (const hook of hooks) expect(seen.has(hook.delivery)).toBe(true)
  })

  it('Jenkins answering 503 at random (health up): nothing is lost, nothing dead', async () => {
    const {queue} = await setup()
    const random = seeded(42)
    const stand = await standIn((req, res) => {
      if (req.method === 'GET') return void res.writeHead(200, {'content-type': 'application/json'}).end('{"quietingDown":false}')
      res.writeHead(random() < 0.4 ? 503 : 200).end()
    })
    cleanups.push(() => stand.close())
    const hooks = Array.from({length: 30}, (_, i) => webhook(i % 2 ? 'push' : 'issue_comment', {repo: `acme/r${i % 5}`}))
    await enqueue(queue, hooks.map((h) => h.message))
    let delivered = 0
    let passes = 0
    // One run empties it now (in-process retries until the deadline); the loop stays as the bound.
    while ((await waiting(queue)) > 0 && passes < 20) {
      passes++
      // A 503 closes the gate for a back-off and hands the message back (a second at least): the default
      // give-up (30 s) is far; the short one of these tests could end a run on two failures in a row.
      const summary = await drain({queue, config: configFor(stand.url + '/'), retryDelaySeconds: 0, concurrency: 4, giveUpAfterMs: 30_000})
      expect(summary.dead).toBe(0)
      delivered += summary.delivered
    }
    expect(delivered).toBe(30)
    expect(passes).toBe(1)
    const accepted = new Set<string>()
    // The stand-in answered 503 to some: each delivery id must have been POSTed until one succeeded.
    for (const req of stand.requests.filter((r) => r.method === 'POST')) accepted.add(delivery(req))
    for (const hook of hooks) expect(accepted.has(hook.delivery)).toBe(true)
    expect(stand.requests.filter((r) => r.method === 'POST').length).toBeGreaterThan(30)
    expect((await queue.stats()).dead).toBe(0)
  })

  it('a 400 for one message while others pass: retried once, then dead with a warn line; the others delivered', async () => {
    const {queue} = await setup()
    const hooks = Array.from({length: 5}, (_, i) => webhook('push', {repo: `acme/p${i}`}))
    const poison = hooks[2]!
    const stand = await standIn((req, res) => {
      if (req.method === 'GET') return void res.end('{}')
      res.writeHead(delivery(req) === poison.delivery ? 400 : 200).end(delivery(req) === poison.delivery ? 'bad payload' : '')
    })
    cleanups.push(() => stand.close())
    await enqueue(queue, hooks.map((h) => h.message))
    const {log, lines} = memoryLog()
    const summary = await drain({queue, config: configFor(stand.url + '/'), retryDelaySeconds: 0, log})
    expect(summary).toMatchObject({delivered: 4, dead: 1, retried: 1, remaining: 0, exitCode: 1})
    expect((await queue.stats()).dead).toBe(1)
    const deadLine = lines.find((line) => line.msg.startsWith('dead letter'))
    expect(deadLine?.level).toBe('warn')
    expect(deadLine?.msg).toMatch(new RegExp(`^dead letter \\S+ push ${poison.delivery} acme/p2 — jenkins:default answered 400: POST github-webhook/ — bad payload again, while it accepted other messages`))
    expect(summary.deadLetters).toEqual([{id: expect.any(String), label: `push ${poison.delivery} acme/p2`, reason: expect.stringContaining('answered 400')}])
    expect(summary.problems).toEqual([expect.stringMatching(/^1 dead letter — see them with `cistern queue peek --dead sqlite:.*`, put them back with `cistern queue redrive /)])
    expect(stand.requests.filter((r) => delivery(r) === poison.delivery)).toHaveLength(2)
  })

  it('408 and 429 are the target\'s (Retry-After honoured): handed back, nothing dead, everything delivered', async () => {
    const {queue} = await setup()
    let posts = 0
    const stand = await standIn((req, res) => {
      if (req.method === 'GET') return void res.end('{}')
      posts++
      if (posts === 1) return void res.writeHead(429, {'retry-after': '1'}).end('slow down')
      if (posts === 3) return void res.writeHead(408).end()
      res.writeHead(200).end()
    })
    cleanups.push(() => stand.close())
    const hooks = Array.from({length: 4}, (_, i) => webhook('push', {repo: `acme/r${i}`}))
    await enqueue(queue, hooks.map((h) => h.message))
    const started = Date.now()
    const summary = await drain({queue, config: configFor(stand.url + '/'), concurrency: 1})
    expect(summary).toMatchObject({delivered: 4, dead: 0, retried: 0, remaining: 0, exitCode: 0})
    expect(summary.released).toBeGreaterThanOrEqual(2)
    // Jenkins asked for a second: the gate stayed closed at least that long.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900)
  })

  it('404 for every webhook (the plugin is missing) and 401 are the target\'s: nothing dead, exit 3', async () => {
    for (const [status, why] of [
      [404, /answered 404: POST github-webhook\/ — no plugin \(\d different messages in a row\)/],
      [401, /answered 401: POST github-webhook\/ — no plugin/],
    ] as const) {
      const {queue} = await setup()
      const stand = await standIn((req, res) => {
        if (req.method === 'GET') return void res.end('{}')
        res.writeHead(status).end('no plugin')
      })
      cleanups.push(() => stand.close())
      await enqueue(queue, Array.from({length: 6}, (_, i) => webhook('push', {repo: `acme/n${i}`}).message))
      const summary = await drain({queue, config: configFor(stand.url + '/'), giveUpAfterMs: 500})
      expect(summary, String(status)).toMatchObject({delivered: 0, dead: 0, remaining: 6, exitCode: 3, stoppedBy: 'unhealthy'})
      expect(summary.targetsDown).toEqual([expect.objectContaining({target: 'jenkins:default', givenUp: true})])
      expect(summary.targetsDown[0]!.reason).toMatch(why)
      expect(summary.problems).toEqual([expect.stringMatching(/^6 remaining \(jenkins:default is down: /)])
      expect((await queue.stats()).dead).toBe(0)
      // The credentials case stops at once: no message after the first refusal.
      if (status === 401) expect(stand.requests.filter((r) => r.method === 'POST').length).toBeLessThanOrEqual(4)
    }
  })

  it('one unhealthy Jenkins does not stop replay to the others (per-target gates)', async () => {
    const {queue} = await setup()
    const up = await jenkins('accept')
    const down = await jenkins('refuse')
    const config = configFor(up.url, down.url)
    const forUp = Array.from({length: 4}, (_, i) => webhook('push', {repo: `acme/u${i}`, target: 'default'}))
    const forDown = Array.from({length: 3}, (_, i) => webhook('push', {repo: `acme/d${i}`, target: 't1'}))
    await enqueue(queue, [...forUp, ...forDown].map((h) => h.message))
    const summary = await drain({queue, config, giveUpAfterMs: 500})
    expect(up.webhooks.map(delivery).sort()).toEqual(forUp.map((h) => h.delivery).sort())
    expect(summary).toMatchObject({delivered: 4, dead: 0, remaining: 3, exitCode: 3})
    expect(summary.health.map((h) => [h.name, h.state])).toEqual([
      ['default', 'up'],
      ['t1', 'down'],
    ])
    // The reason is the health check's, or a probe's after the gate opened again.
    expect(summary.problems).toEqual([expect.stringMatching(/^3 remaining \(jenkins:t1 is down: (t1 http:\/\/127\.0\.0\.1:\d+\/ down|jenkins:t1: connection refused)/)])
  })

  it('pushes for one repository, Jenkins failing 30 % of webhooks at random: empty in one run, in order, nothing dead', async () => {
    // 15 here (each failure holds the repository back a second); test/e2e/spigot-faults.test.ts sends 60 through the CLI.
    const {queue} = await setup()
    const random = seeded(11)
    const accepted: string[] = []
    const stand = await standIn((req, res) => {
      if (req.method === 'GET') return void res.end('{}')
      const ok = random() >= 0.3
      if (ok) accepted.push(delivery(req))
      res.writeHead(ok ? 200 : 503).end()
    })
    cleanups.push(() => stand.close())
    const hooks = Array.from({length: 15}, () => webhook('push', {repo: 'acme/busy'}))
    await enqueue(queue, hooks.map((h) => h.message))
    const summary = await drain({queue, config: configFor(stand.url + '/'), concurrency: 4, giveUpAfterMs: 30_000})
    expect(summary).toMatchObject({delivered: 15, dead: 0, remaining: 0, exitCode: 0, stoppedBy: 'empty'})
    expect(summary.released).toBeGreaterThan(0)
    // Accepted in the order queued: a failing head held its repository back, nothing overtook it.
    expect(accepted).toEqual(hooks.map((h) => h.delivery))
    expect((await queue.stats()).dead).toBe(0)
  })

  it('a retry due after the deadline is what remains, and why: exit 1', async () => {
    const {queue} = await setup()
    const stand = await standIn((req, res) => {
      if (req.method === 'GET') return void res.end('{}')
      res.writeHead(422).end('unprocessable')
    })
    cleanups.push(() => stand.close())
    await enqueue(queue, [webhook('push').message])
    const summary = await drain({queue, config: configFor(stand.url + '/'), retryDelaySeconds: 60, deadlineMs: 1000})
    expect(summary).toMatchObject({delivered: 0, retried: 1, dead: 0, remaining: 1, exitCode: 1})
    expect(summary.problems).toEqual(['1 remaining (retry due after the deadline)'])
  })

  it('a hanging Jenkins whose health still answers: timeout, retry, nothing lost', async () => {
    const {queue} = await setup()
    const stand = await jenkins('hang')
    await enqueue(queue, [webhook('push').message])
    const summary = await drain({queue, config: configFor(stand.url), deliveryTimeoutMs: 200, retryDelaySeconds: 60, giveUpAfterMs: 600})
    // A timeout is the target's, not the message's: handed back, nothing dead, exit 3; and it reads as a timeout.
    expect(summary).toMatchObject({delivered: 0, retried: 0, dead: 0, remaining: 1, stoppedBy: 'unhealthy', exitCode: 3})
    expect(summary.released).toBeGreaterThanOrEqual(1)
    expect(summary.problems).toEqual([expect.stringMatching(/^1 remaining \(jenkins:default is down: jenkins:default: timed out: POST github-webhook\/ \(127\.0\.0\.1:\d+, ETIMEDOUT\)\)$/)])
    await stand.setMode('accept')
  })

  it('an undecodable or unroutable message is dead-lettered, not retried forever', async () => {
    const {queue} = await setup({fifo: false})
    const stand = await jenkins('accept')
    await queue.send({body: 'not json'})
    const unrouted = webhook('push')
    unrouted.message.headers['X-GitHub-Event'] = 'release'
    await queue.send({body: JSON.stringify(unrouted.message)})
    const summary = await drain({queue, config: configFor(stand.url)})
    expect(summary).toMatchObject({delivered: 0, dead: 2, remaining: 0, exitCode: 1})
    expect(summary.deadLetters.map((letter) => letter.reason)).toEqual([expect.stringMatching(/^undecodable message/), 'no route for the "release" event (add one under spigot.routes)'])
    expect(stand.webhooks).toHaveLength(0)
  })
})

describe('drain: modes', () => {
  it('--dry-run lists what would be sent and touches nothing', async () => {
    const {queue} = await setup()
    const stand = await jenkins('accept')
    const hooks = [webhook('push'), webhook('pull_request')]
    await enqueue(queue, [...hooks.map((h) => h.message), lambdaMessage('push').message])
    const summary = await drain({queue, config: configFor(stand.url), dryRun: true})
    expect(summary.stoppedBy).toBe('dry-run')
    expect(summary.wouldSend).toHaveLength(3)
    expect(summary.wouldSend![0]).toMatchObject({event: 'push', delivery: hooks[0]!.delivery, urls: [`${stand.url}github-webhook/`], bytes: hooks[0]!.raw.length, source: 'raw'})
    expect(summary.wouldSend![2]).toMatchObject({event: 'push', source: 'reserialised'})
    expect(stand.webhooks).toHaveLength(0)
    expect((await queue.peek(10)).every((m) => m.receiveCount === 0)).toBe(true)
    expect(renderSummary(summary)).toContain('dry run: 3 would be sent; nothing was touched')
  })

  it('logs a summary, not a line per message, at info (per-message lines are debug)', async () => {
    const {queue} = await setup()
    const stand = await jenkins('accept')
    await enqueue(queue, Array.from({length: 20}, (_, i) => webhook('push', {repo: `acme/l${i % 4}`}).message))
    const {log, lines} = memoryLog('info')
    const seen: number[] = []
    const summary = await drain({queue, config: configFor(stand.url), log, progress: 'log', onProgress: (p) => seen.push(p.total ?? -1)})
    expect(summary).toMatchObject({delivered: 20, exitCode: 0})
    expect(lines.map((line) => line.msg)).toEqual([expect.stringMatching(/^drain: 20 delivered, 0 retried, 0 dead, 0 remaining/)])
    expect(lines[0]).toMatchObject({level: 'info', delivered: 20, dead: 0})
    expect(new Set(seen)).toEqual(new Set([20]))

    await enqueue(queue, [webhook('push').message])
    const debug = memoryLog('debug')
    await drain({queue, config: configFor(stand.url), log: debug.log})
    expect(debug.lines.some((line) => /^replayed push \S+ \S+ to default github-webhook\/ \(200, [\d.]+ ms\)$/.test(line.msg))).toBe(true)
  })

  it('--only-when-on does nothing while OFF', async () => {
    const {queue, state} = await setup()
    const stand = await jenkins('accept')
    await enqueue(queue, [webhook('push').message])
    await state.set('OFF')
    const summary = await drain({queue, config: configFor(stand.url), state, onlyWhenOn: true})
    expect(summary).toMatchObject({stoppedBy: 'off', delivered: 0, remaining: 1})
    expect(stand.requests).toHaveLength(0)
  })

  it('--watch pauses while the spigot is OFF, replays when ON, stops on the signal', async () => {
    const {queue, state} = await setup()
    const stand = await jenkins('accept')
    await state.set('OFF')
    const controller = new AbortController()
    const running = drain({queue, config: configFor(stand.url), state, watch: true, signal: controller.signal})
    const hook = webhook('push')
    await enqueue(queue, [hook.message])
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(stand.webhooks).toHaveLength(0)
    await state.set('ON')
    await vi.waitFor(() => expect(stand.webhooks).toHaveLength(1), {timeout: 10_000, interval: 50})
    controller.abort()
    const summary = await running
    expect(summary).toMatchObject({stoppedBy: 'signal', delivered: 1, remaining: 0})
  })
})

describe('drain: --rate', () => {
  it('starts at most `rate` deliveries a second (burst = concurrency), through the core Limiter', async () => {
    const {queue} = await setup()
    const stamps: number[] = []
    const stand = await standIn((req, res) => {
      if (req.method === 'GET') return void res.end('{}')
      stamps.push(Date.now())
      res.writeHead(200).end()
    })
    cleanups.push(() => stand.close())
    await enqueue(queue, Array.from({length: 6}, (_, i) => webhook('push', {repo: `acme/rate${i}`}).message))
    const summary = await drain({queue, config: configFor(stand.url + '/'), rate: 10, concurrency: 2})
    expect(summary).toMatchObject({delivered: 6, exitCode: 0})
    // 6 starts at 10/s with a burst of 2: the last comes at least (6 - 2) / 10 s after the first.
    expect(stamps.at(-1)! - stamps[0]!).toBeGreaterThanOrEqual(350)
  })
})
