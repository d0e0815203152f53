import {Writable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {createLogger} from '../../src/core/log.js'
import {sleep} from '../../src/core/loop.js'
import {openQueue} from '../../src/core/queue/index.js'
import {resolveSettings} from '../../src/status-queue/config.js'
import {runStatusQueue} from '../../src/status-queue/worker.js'
import {tempDir} from '../helpers/tmp.js'
import {SHA, body, detail, envelope} from './fixtures.js'
import {type FacadeStandIn, facadeStandIn} from './facade-standin.js'
import {type GitHubStandIn, githubStandIn, replies} from './github-standin.js'

const TOKEN = 'ghp_facadetoken55555'
const API_KEY = 'facade-api-key-777777'
let github: GitHubStandIn
let facade: FacadeStandIn

beforeAll(async () => {
  github = await githubStandIn()
  facade = await facadeStandIn(API_KEY)
})
afterAll(async () => {
  await github.close()
  await facade.close()
})

const sha = (i: number) => SHA.slice(0, 38) + String(i).padStart(2, '0')

describe('the API Gateway facade (API_URL + API_KEY) as the queue', () => {
  it('posts every good status, deletes it through the facade, survives messages:null and SQS errors in a 200', async () => {
    const repo = 'git@127.0.0.1:acme/my.repo.name.git'
    facade.send(body(detail({commit: sha(1), repo})))
    facade.send('{"not json')
    facade.send(body(envelope({commit: sha(2), repo, state: 'failed'})))
    facade.send(body(detail({commit: 'HEAD', repo})))
    facade.send(body(detail({commit: sha(3), repo, state: 'running'})))
    facade.failReceives(1)

    let text = ''
    const log = createLogger({
      format: 'json',
      level: 'debug',
      stream: new Writable({
        write(chunk, _enc, cb) {
          text += String(chunk)
          cb()
        },
      }),
    })
    const settings = resolveSettings({
      flags: {},
      env: {API_URL: facade.apiUrl, API_KEY, GITHUB_URL: github.apiUrl, GITHUB_ACCESS_TOKEN: TOKEN},
      file: {visibilityTimeout: 2, github: {retries: 0, retryBaseMs: 5}},
    })
    expect(settings.queueUrl).toBe(`apigw+${facade.apiUrl}/`)

    const controller = new AbortController()
    const started = Date.now()
    const timer = setInterval(() => {
      if (facade.deleted.length >= 5 || Date.now() - started > 15_000) controller.abort()
    }, 20)
    const summary = await runStatusQueue(settings, {signal: controller.signal, log}).finally(() => clearInterval(timer))

    expect(github.posted.map((p) => [p.owner, p.repo, p.sha, p.body.state]).sort()).toEqual([
      ['acme', 'my.repo.name', sha(1), 'success'],
      ['acme', 'my.repo.name', sha(2), 'failure'],
      ['acme', 'my.repo.name', sha(3), 'pending'],
    ])
    // The poison is kept in the embedded dead-letter store, then deleted from the facade so its
    // group flows (issue 11 item 5; it used to stay for the SQS redrive policy).
    expect(facade.deleted).toHaveLength(5)
    expect(facade.messages).toEqual([])
    expect(summary.dead).toBeGreaterThanOrEqual(2)
    expect(summary.receiveErrors).toBeGreaterThanOrEqual(1)
    expect(text).not.toContain(API_KEY)
    expect(text).not.toContain(TOKEN)
    for (const request of facade.server.requests) expect(request.headers['x-api-key']).toBe(API_KEY)
  })
})

describe('the facade under GitHub faults (issue 11, item 5)', () => {
  const repo = (owner: string) => `git@127.0.0.1:${owner}/app.git`
  const settingsFor = (f: FacadeStandIn, over: Record<string, string> = {}) =>
    resolveSettings({
      flags: {},
      env: {API_URL: f.apiUrl, API_KEY, GITHUB_URL: github.apiUrl, GITHUB_ACCESS_TOKEN: TOKEN, CISTERN_DATA_DIR: dataDir, ...over},
      file: {visibilityTimeout: 2, giveUpAfterSeconds: 1, github: {retries: 0, retryBaseMs: 5, inlineWaitMaxSeconds: 0}},
    })
  const dataDir = tempDir('cistern-sq-facade-')
  const gets = (f: FacadeStandIn) => f.server.requests.filter((r) => r.method === 'GET').length

  it('a poison message is kept in the embedded dead-letter store and deleted from the facade, so its group flows', async () => {
    const f = await facadeStandIn(API_KEY, 1)
    github.reset()
    github.script((post) => (post.sha === sha(2) ? replies.unprocessable() : {status: 201, delayMs: 50, body: {}}))
    try {
      // EventBridge puts every event in one FIFO group: the poison sits among good events.
      for (const i of [1, 2, 3, 4, 5, 6]) f.send(body(detail({commit: sha(i), repo: repo('acme')})))
      const settings = settingsFor(f)
      const summary = await runStatusQueue(settings, {once: true})
      expect(summary).toMatchObject({delivered: 5, dead: 1, exitCode: 1})
      expect(summary.deadLetters).toEqual([expect.objectContaining({label: 'acme/web-app#42', reason: expect.stringMatching(/github:acme answered 422.*while it accepted/)})])
      expect(f.messages).toEqual([])
      expect(f.deleted).toHaveLength(6)
      const facade = await openQueue(settings.queueUrl, {apiKey: API_KEY})
      try {
        const kept = (await facade.peekDead?.(10)) ?? []
        expect(kept.map((m) => JSON.parse(m.body).build.commit)).toEqual([sha(2)])
        expect(kept[0]!.attributes['cistern.deadReason']).toMatch(/422/)
      } finally {
        await facade.close()
      }
    } finally {
      await f.close()
    }
  })

  it('during a long rate-limit cooldown the worker receives nothing, so no good event reaches the DLQ behind the facade', async () => {
    const f = await facadeStandIn(API_KEY, 1)
    github.reset()
    let getsAtFirst429: number | undefined
    github.script(() => {
      getsAtFirst429 ??= gets(f)
      return replies.tooMany(3600)
    })
    try {
      for (const i of [1, 2, 3, 4, 5]) f.send(body(detail({commit: sha(i), repo: repo('acme')})))
      const controller = new AbortController()
      const run = runStatusQueue(settingsFor(f), {signal: controller.signal})
      const began = Date.now()
      while (getsAtFirst429 === undefined && Date.now() - began < 10_000) await sleep(20)
      // Several facade visibility timeouts (1 s) pass: a receiving worker would get each event again and again.
      await sleep(3000)
      controller.abort()
      const summary = await run
      expect(summary).toMatchObject({dead: 0, delivered: 0, exitCode: 0, stoppedBy: 'signal'})
      expect(summary.targetsDown).toEqual([expect.objectContaining({target: 'github', reason: expect.stringMatching(/GitHub rate limit \(429\)/)})])
      expect(gets(f) - (getsAtFirst429 ?? 0)).toBeLessThanOrEqual(1)
      expect(Math.max(...f.messages.map((m) => m.receiveCount))).toBe(1)
      expect(f.messages).toHaveLength(5)
    } finally {
      await f.close()
    }
  })

  it('a 403 from one organisation holds only its events: the others are posted, nothing goes dead, exit 3 names it', async () => {
    const f = await facadeStandIn(API_KEY, 1)
    github.reset()
    github.script((post) => (post.owner === 'locked' ? {status: 403, body: {message: 'Resource protected by organization SAML enforcement.'}} : undefined))
    try {
      for (const i of [1, 2]) f.send(body(detail({commit: sha(i), repo: repo('locked')})))
      for (const i of [3, 4, 5]) f.send(body(detail({commit: sha(i), repo: repo('acme')})))
      const summary = await runStatusQueue(settingsFor(f), {once: true})
      expect(github.posted.map((p) => p.sha).sort()).toEqual([sha(3), sha(4), sha(5)])
      expect(summary).toMatchObject({delivered: 3, dead: 0, exitCode: 3})
      expect(summary.problems).toEqual(['2 remaining (github:locked is down: GitHub refused the token (403 Resource protected by organization SAML enforcement.))'])
      expect(f.messages.map((m) => JSON.parse(m.body).build.commit).sort()).toEqual([sha(1), sha(2)])
    } finally {
      await f.close()
    }
  })
})
