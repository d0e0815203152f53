import {afterEach, describe, expect, it} from 'vitest'

import type {JenkinsTarget} from '../../src/spigot/config.js'
import {JenkinsClient} from '../../src/spigot/jenkins.js'
import {standIn} from '../helpers/http.js'
import {type JenkinsStandIn, closedPort, githubDelivery, githubExample, jenkinsStandIn, signatureVerifies} from '../helpers/jenkins.js'

const stands: JenkinsStandIn[] = []
async function jenkins(...args: Parameters<typeof jenkinsStandIn>): Promise<JenkinsStandIn> {
  const stand = await jenkinsStandIn(...args)
  stands.push(stand)
  return stand
}
// One client per test, as one per drain or serve: its connections close with it.
let client = new JenkinsClient()
afterEach(async () => {
  await client.close()
  client = new JenkinsClient()
  await Promise.all(stands.splice(0).map((s) => s.close()))
})
const deliver = (...args: Parameters<JenkinsClient['deliver']>) => client.deliver(...args)
const checkHealth = (...args: Parameters<JenkinsClient['health']>) => client.health(...args)

const target = (url: string, extra: Partial<JenkinsTarget> = {}): JenkinsTarget => ({name: 'default', url, ...extra})

describe('deliver', () => {
  it('POSTs the exact bytes and kept headers; the signature still verifies', async () => {
    const stand = await jenkins('accept')
    const hook = githubDelivery('push', githubExample('push'), {secret: 's3cret', pretty: true})
    const result = await deliver(target(stand.url), 'github-webhook/', hook.body, hook.headers, {timeoutMs: 2000})
    expect(result.kind).toBe('accepted')
    expect(result.status).toBe(200)
    expect(stand.webhooks).toHaveLength(1)
    const got = stand.webhooks[0]!
    expect(got.method).toBe('POST')
    expect(got.url).toBe('/github-webhook/')
    expect(got.body.equals(hook.body)).toBe(true)
    expect(got.headers['x-github-event']).toBe('push')
    expect(got.headers['x-github-delivery']).toBe(hook.delivery)
    expect(got.headers['content-type']).toBe('application/json')
    expect(got.headers['user-agent']).toBe('GitHub-Hookshot/5a7f3a1')
    expect(got.headers['content-length']).toBe(String(hook.body.length))
    expect(got.headers.authorization).toBeUndefined()
    expect(signatureVerifies('s3cret', got)).toBe(true)
  })

  it('keeps a context path and adds basic auth with user and token', async () => {
    const stand = await jenkins('accept')
    const result = await deliver(target(`${stand.url}jenkins/`, {user: 'bot', token: 'api-token-1'}), 'ghprbhook/', Buffer.from('{}'), {'X-GitHub-Event': 'pull_request'}, {timeoutMs: 2000})
    expect(result.kind).toBe('accepted')
    const got = stand.webhooks[0]!
    expect(got.url).toBe('/jenkins/ghprbhook/')
    expect(got.headers.authorization).toBe('Basic ' + Buffer.from('bot:api-token-1').toString('base64'))
  })

  it('classifies refused, timeout, 5xx, 408/429 and other 4xx', async () => {
    const port = await closedPort()
    const refused = await deliver(target(`http://127.0.0.1:${port}/`), 'github-webhook/', Buffer.from('{}'), {}, {timeoutMs: 2000})
    expect(refused.kind).toBe('refused')
    expect(refused.error).toMatch(/ECONNREFUSED/)

    const hanging = await jenkins('hang')
    const timeout = await deliver(target(hanging.url), 'github-webhook/', Buffer.from('{}'), {}, {timeoutMs: 150})
    expect(timeout.kind).toBe('timeout')
    expect(timeout.ms).toBeGreaterThanOrEqual(100)
    expect(hanging.webhooks).toHaveLength(1)
    // A timeout is reported as one (issue 14), for the operator and for the judge.
    expect(timeout.error).toMatch(/no answer in time .*ETIMEDOUT/)
    expect(timeout.answer).toMatchObject({error: 'timeout'})
    expect(refused.answer).toMatchObject({error: 'refused'})

    const failing = await jenkins({kind: 'server-error', status: 503})
    const five = await deliver(target(failing.url), 'x/', Buffer.from('{}'), {}, {timeoutMs: 2000})
    expect(five).toMatchObject({kind: 'server-error', status: 503})
    expect(five.error).toContain('503')
    expect(five.answer).toEqual({status: 503, detail: 'jenkins says 503'})

    for (const [status, kind] of [
      [408, 'server-error'],
      [429, 'server-error'],
      [404, 'client-error'],
      [403, 'client-error'],
      [302, 'client-error'],
    ] as const) {
      await failing.setMode({kind: 'status', status})
      expect(await deliver(target(failing.url), 'x/', Buffer.from('{}'), {}, {timeoutMs: 2000})).toMatchObject({kind, status})
    }
  })

  it('sees a Jenkins that goes down and comes back on the same port (keep-alive sockets dropped)', async () => {
    const stand = await jenkins('accept')
    const t = target(stand.url)
    expect((await deliver(t, 'a/', Buffer.from('1'), {}, {timeoutMs: 1000})).kind).toBe('accepted')
    await stand.setMode('refuse')
    expect((await deliver(t, 'a/', Buffer.from('2'), {}, {timeoutMs: 1000})).kind).toBe('refused')
    await stand.setMode('accept')
    expect((await deliver(t, 'a/', Buffer.from('3'), {}, {timeoutMs: 1000})).kind).toBe('accepted')
    expect(stand.webhooks.map((r) => r.body.toString())).toEqual(['1', '3'])
  })

  it('flaps: every Nth webhook fails', async () => {
    const stand = await jenkins({kind: 'flap', every: 3})
    const kinds = []
    for (let i = 0; i < 6; i++) kinds.push((await deliver(target(stand.url), 'a/', Buffer.from(String(i)), {}, {timeoutMs: 1000})).kind)
    expect(kinds).toEqual(['accepted', 'accepted', 'server-error', 'accepted', 'accepted', 'server-error'])
    expect(stand.accepted).toBe(4)
  })

  it('reads Retry-After (seconds or a date) into the answer', async () => {
    const stand = await standIn((req, res) => {
      res.writeHead(429, {'retry-after': req.url.includes('date') ? new Date(Date.now() + 30_000).toUTCString() : '7'}).end('slow down')
    })
    stands.push({close: () => stand.close()} as JenkinsStandIn)
    expect((await deliver(target(stand.url + '/'), 'seconds/', Buffer.from('{}'), {}, {timeoutMs: 2000})).answer).toEqual({status: 429, detail: 'slow down', retryAfterSeconds: 7})
    const dated = await deliver(target(stand.url + '/'), 'date/', Buffer.from('{}'), {}, {timeoutMs: 2000})
    expect(dated.answer).toMatchObject({status: 429})
    expect((dated.answer as {retryAfterSeconds: number}).retryAfterSeconds).toBeGreaterThanOrEqual(28)
  })

  it('aborts with the signal and never throws', async () => {
    const stand = await jenkins('hang')
    const controller = new AbortController()
    const pending = deliver(target(stand.url), 'a/', Buffer.from('{}'), {}, {timeoutMs: 5000, signal: controller.signal})
    setTimeout(() => controller.abort(new Error('shutdown')), 50)
    const result = await pending
    expect(result.kind).toBe('refused')
    expect(result.error).toContain('shutdown')
    expect(result.aborted).toBe(true)
  })
})

describe('checkHealth', () => {
  it('up: GET /health/ then /api/json?tree=quietingDown', async () => {
    const stand = await jenkins('accept')
    const health = await checkHealth(target(stand.url))
    expect(health.state).toBe('up')
    expect(stand.healthChecks.map((r) => r.url)).toEqual(['/health/', '/api/json?tree=quietingDown'])
  })

  it('quieting down', async () => {
    const stand = await jenkins('accept', {quietingDown: true})
    expect(await checkHealth(target(stand.url))).toMatchObject({state: 'quieting-down'})
  })

  it('an old core without /health/ falls back to /login', async () => {
    const stand = await jenkins('accept', {health: 404})
    expect((await checkHealth(target(stand.url))).state).toBe('up')
    expect(stand.healthChecks.map((r) => r.url)).toEqual(['/health/', '/login', '/api/json?tree=quietingDown'])
  })

  it('down: 503 from /health/, a closed port, a configured path that 404s', async () => {
    const stand = await jenkins('accept', {health: 503})
    expect(await checkHealth(target(stand.url))).toMatchObject({state: 'down', detail: expect.stringContaining('503')})
    const port = await closedPort()
    expect(await checkHealth(target(`http://127.0.0.1:${port}/`))).toMatchObject({state: 'down', detail: expect.stringContaining('unreachable')})
    stand.setHealth({health: 200})
    expect(await checkHealth(target(stand.url), {healthPath: 'custom/ping'})).toMatchObject({state: 'down', detail: expect.stringContaining('404')})
  })

  it('a hanging Jenkins times out as down; basic auth is sent', async () => {
    const stand = await jenkins('accept')
    await checkHealth(target(stand.url, {user: 'bot', token: 'tok-123'}))
    expect(stand.healthChecks[0]!.headers.authorization).toBe('Basic ' + Buffer.from('bot:tok-123').toString('base64'))
    stand.setHealth({hang: true})
    expect(await checkHealth(target(stand.url), {timeoutMs: 200})).toMatchObject({state: 'down', detail: expect.stringContaining('timeout')})
  })
})
