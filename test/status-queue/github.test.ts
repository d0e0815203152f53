import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {classifyGitHubError, createGitHubClient, type GitHubOptions} from '../../src/status-queue/github.js'
import type {CommitStatus} from '../../src/status-queue/status.js'
import {SHA} from './fixtures.js'
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
beforeEach(() => github.reset())

const client = (over: Partial<GitHubOptions> = {}) =>
  createGitHubClient({apiUrl: github.apiUrl, token: TOKEN, retries: 2, retryBaseMs: 5, inlineWaitMaxSeconds: 0, ...over})

describe('createGitHubClient', () => {
  it('POSTs the exact status JSON with the token to GITHUB_URL', async () => {
    const result = await (await client()).postStatus(target, status)
    expect(result).toEqual({kind: 'posted', httpStatus: 201})
    expect(github.posted).toEqual([{owner: 'acme', repo: 'my.repo.name', sha: SHA, body: status, authorization: `token ${TOKEN}`}])
  })

  it('retries a 5xx in-process, then posts', async () => {
    github.script((_post, attempt) => (attempt <= 2 ? replies.serverError() : undefined))
    expect(await (await client()).postStatus(target, status)).toEqual({kind: 'posted', httpStatus: 201})
    expect(github.attempts).toHaveLength(3)
  })

  it('hands a lasting 5xx back as a retry with the queue backoff', async () => {
    github.script(() => replies.serverError())
    const result = await (await client({retries: 1})).postStatus(target, status)
    expect(result).toMatchObject({kind: 'retry', reason: expect.stringMatching(/500/)})
    expect(result.kind === 'retry' && result.delaySeconds).toBeUndefined()
    expect(github.attempts).toHaveLength(2)
  })

  it('turns 429 + Retry-After into a queue retry of that delay, and holds later statuses without a request', async () => {
    github.script(() => replies.tooMany(7))
    const gh = await client()
    expect(await gh.postStatus(target, status)).toMatchObject({kind: 'retry', delaySeconds: 7})
    expect(github.attempts).toHaveLength(1)
    github.script(() => undefined)
    expect(await gh.postStatus(target, status)).toMatchObject({kind: 'retry', reason: /still in force/})
    expect(github.attempts).toHaveLength(1)
  })

  it('caps a long rate-limit delay (x-ratelimit-reset)', async () => {
    const reset = Math.floor(Date.now() / 1000) + 3600
    github.script(() => ({
      status: 403,
      headers: {'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset)},
      body: {message: 'API rate limit exceeded for user ID 1.'},
    }))
    expect(await (await client({maxRetryDelaySeconds: 30})).postStatus(target, status)).toMatchObject({kind: 'retry', delaySeconds: 30})
  })

  it('waits out a short secondary rate limit in-process (throttling plugin)', async () => {
    github.script((_post, attempt) =>
      attempt === 1
        ? {status: 403, headers: {'retry-after': '1'}, body: {message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.'}}
        : undefined,
    )
    expect(await (await client({inlineWaitMaxSeconds: 5})).postStatus(target, status)).toEqual({kind: 'posted', httpStatus: 201})
    expect(github.attempts).toHaveLength(2)
  })

  it.each([
    ['404', replies.notFound(), 'dead', /404.*not found/],
    ['422', replies.unprocessable(), 'dead', /422 Validation Failed \(No commit found for SHA\)/],
    ['401', replies.badCredentials(), 'auth', /401 Bad credentials/],
    ['403', {status: 403, body: {message: 'Resource not accessible by personal access token'}}, 'auth', /403 Resource not accessible/],
  ])('classifies %s without retrying it', async (_name, reply, kind, reason) => {
    github.script(() => reply)
    const result = await (await client()).postStatus(target, status)
    expect(result).toMatchObject({kind, reason: expect.stringMatching(reason)})
    expect(github.attempts).toHaveLength(1)
  })

  it('reports a redirect or an HTML 404 as a wrong GITHUB_URL, not as a posted or dead status', async () => {
    github.script(() => ({status: 301, headers: {location: 'https://ghe.example.com/api/v3/'}}))
    expect(await (await client()).postStatus(target, status)).toMatchObject({kind: 'misdirected', httpStatus: 301})
    github.server.respond((_req, res) => void res.writeHead(404, {'content-type': 'text/html'}).end('<html>Not Found</html>'))
    try {
      expect(await (await client()).postStatus(target, status)).toMatchObject({kind: 'misdirected', httpStatus: 404, reason: /GITHUB_URL/})
    } finally {
      await github.close()
      github = await githubStandIn()
    }
  })

  it('retries when GitHub is unreachable', async () => {
    const gh = await createGitHubClient({apiUrl: 'http://127.0.0.1:1/api/v3', token: TOKEN, retries: 0})
    expect(await gh.postStatus(target, status)).toMatchObject({kind: 'retry', reason: /request failed/})
  })

  it('times out a hanging GitHub and retries the message', async () => {
    github.script(() => ({status: 201, delayMs: 2000}))
    const result = await (await client({requestTimeoutMs: 150, retries: 1})).postStatus(target, status)
    expect(result).toMatchObject({kind: 'retry'})
    expect(github.attempts).toHaveLength(2)
  })

  it('stops at once when the caller aborts (shutdown), without retrying', async () => {
    github.script(() => ({status: 201, delayMs: 2000}))
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 100)
    const result = await (await client({retries: 3})).postStatus(target, status, controller.signal)
    expect(result).toEqual({kind: 'retry', delaySeconds: 0, reason: 'request aborted at shutdown'})
    expect(github.attempts).toHaveLength(1)
  })

  it('keeps at most `concurrency` requests in flight', async () => {
    github.script(() => ({status: 201, delayMs: 150}))
    const gh = await client({concurrency: 3})
    const results = await Promise.all(Array.from({length: 12}, (_, i) => gh.postStatus({...target, sha: SHA.slice(0, 38) + String(i).padStart(2, '0')}, status)))
    expect(results.every((r) => r.kind === 'posted')).toBe(true)
    expect(github.maxInFlight).toBeLessThanOrEqual(3)
    expect(github.maxInFlight).toBeGreaterThanOrEqual(2)
  })

  it('spaces writes when writesPerMinute is set', async () => {
    const gh = await client({writesPerMinute: 600}) // one start per 100 ms
    const began = Date.now()
    const results = await Promise.all([1, 2, 3].map(() => gh.postStatus(target, status)))
    // the third write may not start before 200 ms: a lower bound, whatever the machine's load
    expect(Date.now() - began).toBeGreaterThanOrEqual(195)
    expect(results.every((r) => r.kind === 'posted')).toBe(true)
    expect(github.posted).toHaveLength(3)
  })
})

describe('classifyGitHubError', () => {
  const err = (status: number, headers: Record<string, string> = {}, message = 'x') => ({name: 'HttpError', status, message, response: {headers, data: {message}}})
  const now = Date.parse('2026-11-26T07:00:00Z')

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(classifyGitHubError(err(429, {'retry-after': '12'}), {now})).toMatchObject({kind: 'retry', delaySeconds: 12})
    expect(classifyGitHubError(err(429, {'retry-after': new Date(now + 30_000).toUTCString()}), {now})).toMatchObject({kind: 'retry', delaySeconds: 30})
  })

  it('waits a minute for a secondary limit without Retry-After, and never less than a second', () => {
    expect(classifyGitHubError(err(403, {}, 'You have exceeded a secondary rate limit'), {now})).toMatchObject({delaySeconds: 60})
    expect(classifyGitHubError(err(429, {'retry-after': '0'}), {now})).toMatchObject({delaySeconds: 1})
  })

  it('uses x-ratelimit-reset for an exhausted primary limit', () => {
    const reset = String(now / 1000 + 120)
    expect(classifyGitHubError(err(403, {'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset}), {now})).toMatchObject({delaySeconds: 121})
  })

  it('treats other 4xx as dead and 5xx / network as retry', () => {
    expect(classifyGitHubError(err(410), {now}).kind).toBe('dead')
    expect(classifyGitHubError(err(400), {now}).kind).toBe('dead')
    expect(classifyGitHubError(err(502), {now}).kind).toBe('retry')
    expect(classifyGitHubError(new TypeError('fetch failed'), {now}).kind).toBe('retry')
  })
})
