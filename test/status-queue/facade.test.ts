import {Writable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {createLogger} from '../../src/core/log.js'
import {resolveSettings} from '../../src/status-queue/config.js'
import {runStatusQueue} from '../../src/status-queue/worker.js'
import {SHA, body, detail, envelope} from './fixtures.js'
import {type FacadeStandIn, facadeStandIn} from './facade-standin.js'
import {type GitHubStandIn, githubStandIn} from './github-standin.js'

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
