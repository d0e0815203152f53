import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {handlerContext} from '../../src/core/consume.js'
import {TargetGates} from '../../src/core/delivery.js'
import type {HttpResponse} from '../../src/core/http-client.js'
import type {QueueMessage} from '../../src/core/queue/types.js'
import {readAnswer} from '../../src/status-queue/answers.js'
import {type GitHubOptions, GitHubStatuses} from '../../src/status-queue/github.js'
import {type HandlerSettings, StatusHandler} from '../../src/status-queue/handler.js'
import type {CommitStatus} from '../../src/status-queue/status.js'
import {SHA, body, detail} from './fixtures.js'
import {type GitHubStandIn, githubStandIn, replies} from './github-standin.js'

const TOKEN = 'ghp_testtoken1234567890'
const status: CommitStatus = {
  state: 'success',
  target_url: 'https://buildkite.com/acme/web-app/builds/42',
  description: 'Build #42 passed',
  context: 'buildkite/web-app',
}
const target = {owner: 'acme', repo: 'my.repo.name', sha: SHA}

let github: GitHubStandIn
beforeAll(async () => {
  github = await githubStandIn()
})
afterAll(() => github.close())
beforeEach(() => {
  github.reset()
})

const clients: GitHubStatuses[] = []
afterAll(() => Promise.all(clients.map((client) => client.close())))

function client(over: Partial<GitHubOptions> = {}): GitHubStatuses {
  const made = new GitHubStatuses({apiUrl: github.apiUrl, token: TOKEN, ...over})
  clients.push(made)
  return made
}

let seq = 0
/** The event whose status is `status` above, for `target` above. */
function message(): QueueMessage {
  return {id: `m-${++seq}`, body: body(detail({repo: 'git@127.0.0.1:acme/my.repo.name.git', commit: SHA})), receiptHandle: `r-${seq}`, receiveCount: 1, attributes: {}}
}

/** One message through the handler, on GitHub's answers from the stand-in (retries: 2, 5 ms back-off). */
function handle(over: Partial<GitHubOptions> = {}, settings: Partial<HandlerSettings> = {}, context = handlerContext()) {
  const handler = new StatusHandler({github: client(over), hosts: 'any', retries: 2, retryBaseMs: 5, inlineWaitMaxSeconds: 0, ...settings})
  return handler.handle(message(), context)
}

describe('GitHubStatuses', () => {
  it('POSTs the exact status JSON with the token to GITHUB_URL', async () => {
    expect(await client().post(target, status)).toEqual({kind: 'ok', status: 201})
    expect(github.posted).toEqual([{owner: 'acme', repo: 'my.repo.name', sha: SHA, body: status, authorization: `token ${TOKEN}`}])
  })

  it('keeps at most `concurrency` requests in flight', async () => {
    github.script(() => ({status: 201, delayMs: 150}))
    const gh = client({concurrency: 3})
    const results = await Promise.all(Array.from({length: 12}, (_, i) => gh.post({...target, sha: SHA.slice(0, 38) + String(i).padStart(2, '0')}, status)))
    expect(results.every((r) => r.kind === 'ok')).toBe(true)
    expect(github.maxInFlight).toBeLessThanOrEqual(3)
    expect(github.maxInFlight).toBeGreaterThanOrEqual(2)
  })

  it('spaces writes when writesPerMinute is set', async () => {
    const gh = client({writesPerMinute: 600}) // one start per 100 ms
    const began = Date.now()
    const results = await Promise.all([1, 2, 3].map(() => gh.post(target, status)))
    // the third write may not start before 200 ms: a lower bound, whatever the machine's load
    expect(Date.now() - began).toBeGreaterThanOrEqual(195)
    expect(results.every((r) => r.kind === 'ok')).toBe(true)
    expect(github.posted).toHaveLength(3)
  })

  it('checks its health with GET /rate_limit, which counts no status', async () => {
    expect(await client().health()).toMatchObject({kind: 'refused', answer: {status: 404}})
    expect(github.attempts).toHaveLength(0)
    expect(github.server.requests.at(-1)).toMatchObject({method: 'GET', url: '/api/v3/rate_limit'})
  })
})

describe('a status through the handler: in-process retries, then the verdict', () => {
  it('retries a 5xx in-process, then posts', async () => {
    github.script((_post, attempt) => (attempt <= 2 ? replies.serverError() : undefined))
    expect(await handle()).toMatchObject({kind: 'delivered'})
    expect(github.attempts).toHaveLength(3)
  })

  it('a lasting 5xx is GitHub down, not the message: target-down, released (issue 11)', async () => {
    github.script(() => replies.serverError())
    expect(await handle({}, {retries: 1})).toEqual({kind: 'target-down', target: 'github', reason: 'github answered 500: Server Error', credentials: false, retryAfterSeconds: undefined})
    expect(github.attempts).toHaveLength(2)
  })

  it('turns 429 + Retry-After into the `github` gate closing for that long, without a retry', async () => {
    github.script(() => replies.tooMany(7))
    expect(await handle()).toMatchObject({kind: 'target-down', target: 'github', retryAfterSeconds: 7, reason: expect.stringMatching(/GitHub rate limit \(429\)/)})
    expect(github.attempts).toHaveLength(1)
  })

  it('caps a long rate-limit delay (x-ratelimit-reset)', async () => {
    const reset = Math.floor(Date.now() / 1000) + 3600
    github.script(() => ({
      status: 403,
      headers: {'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset)},
      body: {message: 'API rate limit exceeded for user ID 1.'},
    }))
    expect(await handle({}, {maxRetryDelaySeconds: 30})).toMatchObject({kind: 'target-down', target: 'github', retryAfterSeconds: 30})
  })

  it('waits out a short secondary rate limit in-process', async () => {
    github.script((_post, attempt) =>
      attempt === 1
        ? {status: 403, headers: {'retry-after': '1'}, body: {message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.'}}
        : undefined,
    )
    expect(await handle({}, {inlineWaitMaxSeconds: 5})).toMatchObject({kind: 'delivered'})
    expect(github.attempts).toHaveLength(2)
  })

  it.each([
    ['404', replies.notFound(), {kind: 'retry', reason: expect.stringMatching(/github:acme answered 404: Not Found/)}],
    ['422', replies.unprocessable(), {kind: 'retry', reason: expect.stringMatching(/422: Validation Failed \(No commit found for SHA\)/)}],
    ['403', {status: 403, body: {message: 'Resource not accessible by personal access token'}}, {kind: 'target-down', target: 'github:acme', credentials: true, reason: expect.stringMatching(/403 Resource not accessible/)}],
  ])('does not retry %s in-process: the judge decides (a suspect once, then dead or the organisation down)', async (_name, reply, outcome) => {
    github.script(() => reply)
    expect(await handle()).toMatchObject(outcome)
    expect(github.attempts).toHaveLength(1)
  })

  it('stops the worker on 401 (a token refused for everything), exit 3, naming GITHUB_ACCESS_TOKEN', async () => {
    github.script(() => replies.badCredentials())
    const outcome = await handle()
    expect(outcome.kind).toBe('stop')
    if (outcome.kind !== 'stop') return
    expect(outcome.error).toMatchObject({name: 'TargetUnhealthyError', exitCode: 3})
    expect(outcome.error.oneLine).toMatch(/401 Bad credentials.*GITHUB_ACCESS_TOKEN is not accepted — set GITHUB_ACCESS_TOKEN/)
    expect(github.attempts).toHaveLength(1)
  })

  it('holds a status of an organisation whose gate is closed, without a request', async () => {
    const gates = new TargetGates()
    gates.failed('github:acme', 'github:acme answered 403', {credentials: true})
    expect(await handle({}, {}, handlerContext({gates}))).toMatchObject({kind: 'released', target: 'github:acme'})
    expect(github.attempts).toHaveLength(0)
  })

  it('reports a redirect or an HTML 404 as a wrong GITHUB_URL (exit 2), not as a posted or dead status', async () => {
    github.script(() => ({status: 301, headers: {location: 'https://ghe.example.com/api/v3/'}}))
    expect(await handle()).toMatchObject({kind: 'stop', error: {exitCode: 2, message: expect.stringMatching(/301 \(a redirect to https:\/\/ghe\.example\.com\/api\/v3\/\).*GITHUB_URL/)}})
    github.server.respond((_req, res) => void res.writeHead(404, {'content-type': 'text/html'}).end('<html>Not Found</html>'))
    try {
      expect(await handle()).toMatchObject({kind: 'stop', error: {exitCode: 2, message: expect.stringMatching(/404 with a non-JSON page: GITHUB_URL/)}})
      // the health check says so before anything is received
      expect(await client().health()).toMatchObject({kind: 'misdirected'})
    } finally {
      await github.close()
      github = await githubStandIn()
    }
  })

  it('a 2xx that is not the API JSON is not a posted status', async () => {
    github.server.respond((_req, res) => void res.writeHead(200, {'content-type': 'text/html'}).end('<html>Sign in</html>'))
    try {
      expect(await handle()).toMatchObject({kind: 'stop', error: {exitCode: 2, message: expect.stringMatching(/answered 200 with "text\/html" instead of the API's JSON/)}})
    } finally {
      await github.close()
      github = await githubStandIn()
    }
  })

  it('GitHub unreachable is GitHub down', async () => {
    const handler = new StatusHandler({github: client({apiUrl: 'http://127.0.0.1:1/api/v3'}), hosts: 'any', retries: 0})
    expect(await handler.handle(message(), handlerContext())).toMatchObject({kind: 'target-down', target: 'github', reason: 'github: connection refused: 127.0.0.1:1'})
  })

  it('times out a hanging GitHub, retries, and says it timed out — never "answered 500" (issue 14)', async () => {
    github.script(() => ({status: 201, delayMs: 2000}))
    const outcome = await handle({requestTimeoutMs: 200}, {retries: 1})
    expect(outcome).toMatchObject({kind: 'target-down', target: 'github', reason: 'github: timed out: no answer within 0.2s'})
    expect(JSON.stringify(outcome)).not.toMatch(/500/)
    expect(github.attempts).toHaveLength(2)
  })

  it('stops at once when the worker stops (the stop deadline aborts), without retrying', async () => {
    github.script(() => ({status: 201, delayMs: 2000}))
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('stop deadline passed')), 100)
    const outcome = await handle({}, {retries: 3}, handlerContext({signal: controller.signal}))
    expect(outcome).toEqual({kind: 'released', reason: 'the worker stopped before GitHub answered', delaySeconds: undefined, target: undefined})
    expect(github.attempts).toHaveLength(1)
  })
})

describe('readAnswer', () => {
  const answer = (status: number, headers: Record<string, string> = {}, message = 'x'): HttpResponse => ({
    status,
    headers: {'content-type': 'application/json; charset=utf-8', ...headers},
    body: Buffer.from(JSON.stringify({message})),
    ms: 1,
  })
  const now = Date.parse('2026-11-26T07:00:00Z')

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(readAnswer(answer(429, {'retry-after': '12'}), now)).toMatchObject({kind: 'rate-limited', seconds: 12})
    expect(readAnswer(answer(429, {'retry-after': new Date(now + 30_000).toUTCString()}), now)).toMatchObject({kind: 'rate-limited', seconds: 30})
  })

  it('waits a minute for a secondary limit without Retry-After, and never less than a second', () => {
    expect(readAnswer(answer(403, {}, 'You have exceeded a secondary rate limit'), now)).toMatchObject({kind: 'rate-limited', seconds: 60})
    expect(readAnswer(answer(429, {'retry-after': '0'}), now)).toMatchObject({kind: 'rate-limited', seconds: 1})
  })

  it('uses x-ratelimit-reset for an exhausted primary limit', () => {
    const reset = String(now / 1000 + 120)
    expect(readAnswer(answer(403, {'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset}), now)).toMatchObject({kind: 'rate-limited', seconds: 121})
    // a success that used the last request says so too (the health check reads it)
    expect(readAnswer(answer(200, {'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset}), now)).toEqual({kind: 'ok', status: 200, exhaustedForSeconds: 121})
  })

  it('other 4xx are for the judge (issue 11: not dead at once); 5xx, 408 and no answer are GitHub unwell', () => {
    expect(readAnswer(answer(410), now)).toEqual({kind: 'refused', answer: {status: 410, detail: 'x'}})
    expect(readAnswer(answer(400), now).kind).toBe('refused')
    expect(readAnswer(answer(502), now)).toEqual({kind: 'unwell', answer: {status: 502, detail: 'x'}})
    expect(readAnswer(answer(408), now).kind).toBe('unwell')
  })
})
