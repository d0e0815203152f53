import {GetObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {mockClient} from 'aws-sdk-client-mock'
import {join} from 'node:path'
import {afterEach, describe, expect, it, vi} from 'vitest'

import {createLogger} from '../../src/core/log.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import type {PrCommenter} from '../../src/spigot/comments.js'
import {DEFAULT_ROUTES, type SpigotConfig} from '../../src/spigot/config.js'
import {TokenBucket, drain, renderSummary} from '../../src/spigot/drain.js'
import {closeJenkinsAgents} from '../../src/spigot/jenkins.js'
import type {SpigotMessage} from '../../src/core/webhook-message.js'
import {openStateStore} from '../../src/spigot/state.js'
import {standIn} from '../helpers/http.js'
import {type JenkinsStandIn, jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, lambdaMessage, seeded, sign, webhook} from './drain-fixtures.js'

const dir = tempDir('cistern-drain-')
let n = 0
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  closeJenkinsAgents()
})

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
    expect(summary).toMatchObject({delivered: 4, retried: 0, dead: 0, remaining: 0, stoppedBy: 'empty'})
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
    const commenter: PrCommenter = {queued: async () => {}, replayed: async (m) => void replayed.push(m)}
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
    const summary = await drain({queue, config: configFor(stand.url), fetchLargePayload: async (p) => (fetched.push(p), big.raw)})
    expect(summary.delivered).toBe(1)
    expect(fetched).toEqual([pointer])
    expect(stand.webhooks[0]!.body.equals(big.raw)).toBe(true)
    expect(stand.webhooks[0]!.headers['x-hub-signature-256']).toBe(sign(big.raw))
  })

  it('reads a large payload from S3 (GetObject on the pointer) when no reader is injected', async () => {
    const {queue} = await setup()
    const stand = await jenkins('accept')
    const big = webhook('pull_request')
    const s3 = mockClient(S3Client)
    cleanups.push(async () => void s3.restore())
    s3.on(GetObjectCommand).resolves({Body: {transformToByteArray: async () => new Uint8Array(big.raw)}} as never)
    const {raw_body: _dropped, ...rest} = big.message
    await enqueue(queue, [{...rest, large_payload: {bucket: 'overflow', key: 'spigot/2026-11-26/d.json', bytes: big.raw.length}}])
    const summary = await drain({queue, config: configFor(stand.url), region: 'us-east-1'})
    expect(summary.delivered).toBe(1)
    expect(s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input)).toEqual([{Bucket: 'overflow', Key: 'spigot/2026-11-26/d.json'}])
    expect(stand.webhooks[0]!.body.equals(big.raw)).toBe(true)
    expect(stand.webhooks[0]!.url).toBe('/ghprbhook/')

    // S3 failing: the message is retried later, not dead-lettered.
    s3.reset()
    s3.on(GetObjectCommand).rejects(Object.assign(new Error('Access Denied'), {name: 'AccessDenied'}))
    await enqueue(queue, [{...rest, headers: {...rest.headers, 'X-GitHub-Delivery': 'other'}, large_payload: {bucket: 'overflow', key: 'k', bytes: 1}}])
    const failed = await drain({queue, config: configFor(stand.url), region: 'us-east-1', retryDelaySeconds: 60})
    expect(failed).toMatchObject({delivered: 0, retried: 1, dead: 0, remaining: 1})
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
    expect(summary).toMatchObject({delivered: 1, retried: 1, remaining: 0})
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
    expect(summary).toMatchObject({stoppedBy: 'unhealthy', unhealthy: {state: 'quieting-down'}, remaining: 1})
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
    while ((await waiting(queue)) > 0 && passes < 20) {
      passes++
      const summary = await drain({queue, config: configFor(stand.url + '/'), retryDelaySeconds: 0, concurrency: 4})
      expect(summary.dead).toBe(0)
      delivered += summary.delivered
    }
    expect(delivered).toBe(30)
    const accepted = new Set<string>()
    // The stand-in answered 503 to some: each delivery id must have been POSTed until one succeeded.
    for (const req of stand.requests.filter((r) => r.method === 'POST')) accepted.add(delivery(req))
    for (const hook of hooks) expect(accepted.has(hook.delivery)).toBe(true)
    expect(stand.requests.filter((r) => r.method === 'POST').length).toBeGreaterThan(30)
    expect((await queue.stats()).dead).toBe(0)
  })

  it('4xx other than 408/429 dead-letters with the reason; 408 and 429 retry', async () => {
    const {queue} = await setup()
    const stand = await standIn((req, res) => {
      if (req.method === 'GET') return void res.end('{}')
      const status = req.url.startsWith('/github-webhook/') ? 404 : Number(req.headers['x-github-event'] === 'pull_request' ? 429 : 408)
      res.writeHead(status).end('nope')
    })
    cleanups.push(() => stand.close())
    await enqueue(queue, [webhook('push', {repo: 'acme/a'}).message, webhook('pull_request', {repo: 'acme/b'}).message, webhook('issue_comment', {repo: 'acme/c'}).message])
    const lines: Record<string, unknown>[] = []
    const log = createLogger({level: 'warn', format: 'json', stream: {write: (t: string) => (lines.push(JSON.parse(t)), true)} as unknown as NodeJS.WritableStream})
    const summary = await drain({queue, config: configFor(stand.url + '/'), retryDelaySeconds: 60, log})
    expect(summary).toMatchObject({delivered: 0, dead: 1, retried: 2, remaining: 2})
    expect((await queue.stats()).dead).toBe(1)
    const deadLine = lines.find((line) => String(line.msg).startsWith('dead-lettered'))
    expect(deadLine?.msg).toMatch(/Jenkins refused the webhook: default .*github-webhook\/: client-error \(HTTP 404: nope\)/)
  })

  it('a hanging Jenkins whose health still answers: timeout, retry, nothing lost', async () => {
    const {queue} = await setup()
    const stand = await jenkins('hang')
    await enqueue(queue, [webhook('push').message])
    const summary = await drain({queue, config: configFor(stand.url), deliveryTimeoutMs: 200, retryDelaySeconds: 60})
    expect(summary).toMatchObject({delivered: 0, retried: 1, remaining: 1, stoppedBy: 'empty'})
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
    expect(summary).toMatchObject({delivered: 0, dead: 2, remaining: 0})
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

describe('TokenBucket', () => {
  afterEach(() => vi.useRealTimers())
  it('lets a burst through, then spaces takes at 1/rate', async () => {
    vi.useFakeTimers({toFake: ['setTimeout', 'clearTimeout', 'performance']})
    const bucket = new TokenBucket(10, 2)
    const done: number[] = []
    const takes = Array.from({length: 5}, (_, i) => bucket.take().then(() => done.push(i)))
    await vi.advanceTimersByTimeAsync(0)
    expect(done).toEqual([0, 1])
    await vi.advanceTimersByTimeAsync(100)
    expect(done).toEqual([0, 1, 2])
    await vi.advanceTimersByTimeAsync(200)
    expect(done).toEqual([0, 1, 2, 3, 4])
    await Promise.all(takes)
  })
})
