import {execa} from 'execa'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import {CLI, cistern} from '../helpers/cli.js'
import {standIn} from '../helpers/http.js'
import {tempDir} from '../helpers/tmp.js'
import {SHA, body, detail, envelope} from '../status-queue/fixtures.js'
import {facadeStandIn} from '../status-queue/facade-standin.js'
import {type GitHubStandIn, githubStandIn, replies} from '../status-queue/github-standin.js'

const TOKEN = 'ghp_e2eSecretToken0123456789abcdef'
const API_KEY = 'apikey-e2e-secret-4242424242'
const sha = (i: number) => SHA.slice(0, 34) + i.toString(16).padStart(6, '0')
const repo = 'git@127.0.0.1:acme/my.repo.name.git'

let github: GitHubStandIn
beforeAll(async () => {
  github = await githubStandIn()
})
afterAll(() => github.close())
beforeEach(() => github.reset())

/** A data dir with a cistern.yml that keeps retries and leases short. */
function workspace() {
  const dir = tempDir('cistern-sq-e2e-')
  const config = join(dir, 'cistern.yml')
  writeFileSync(
    config,
    ['status-queue:', '  visibilityTimeout: 2', '  drainSeconds: 5', '  github:', '    retries: 0', '    retryBaseMs: 10', ''].join('\n'),
  )
  const queueUrl = `sqlite:${join(dir, 'cistern.db')}#status-queue`
  const env = {CISTERN_DATA_DIR: dir, GITHUB_URL: github.apiUrl, GITHUB_ACCESS_TOKEN: TOKEN, API_KEY, CISTERN_LOG_FORMAT: 'json'}
  return {dir, config, queueUrl, env}
}

async function fill(queueUrl: string, bodies: string[]) {
  const queue = await openQueue(queueUrl)
  await queue.sendBatch(bodies.map((text) => ({body: text})))
  await queue.close()
}

async function stats(queueUrl: string) {
  const queue = await openQueue(queueUrl)
  try {
    return await queue.stats()
  } finally {
    await queue.close()
  }
}

describe('cistern status-queue work (built CLI)', () => {
  it('--once posts what it can, dead-letters the rest, exits 1 and never logs a secret', async () => {
    const ws = workspace()
    await fill(ws.queueUrl, [
      body(detail({commit: sha(1), repo})),
      '{"malformed',
      body(envelope({commit: sha(2), repo, state: 'blocked'}, 'Build Finished')),
      body(detail({commit: 'HEAD', repo})),
    ])
    const result = await cistern(['status-queue', 'work', '--once', '--json', '--config', ws.config, '--log-level', 'debug'], {env: ws.env})
    expect(result.exitCode).toBe(1)
    expect(JSON.parse(String(result.stdout))).toMatchObject({received: 4, delivered: 2, dead: 2, stoppedBy: 'empty', github: github.apiUrl})
    expect(github.posted.map((p) => [p.repo, p.sha, p.body.state, p.body.description])).toEqual(
      expect.arrayContaining([
        ['my.repo.name', sha(1), 'success', 'Build #42 passed'],
        ['my.repo.name', sha(2), 'pending', 'Build #42 is blocked'],
      ]),
    )
    // Issue 11: one warn line per dead letter, written by the consumer, then the count with the commands to see and redrive them.
    const stderr = String(result.stderr)
    expect(stderr).toMatch(/"level":"warn","msg":"dead letter \S+ — body is not JSON/)
    expect(stderr).toMatch(/"level":"warn","msg":"dead letter \S+ acme\/web-app#42 — build\.commit is HEAD/)
    expect(stderr).toMatch(/^2 dead letters — see them with `cistern queue peek --dead sqlite:.*`, put them back with `cistern queue redrive sqlite:.*`$/m)
    expect(stderr + String(result.stdout)).not.toContain(TOKEN)
    expect(stderr + String(result.stdout)).not.toContain(API_KEY)
    expect(await stats(ws.queueUrl)).toMatchObject({visible: 0, inFlight: 0, dead: 2})
  })

  it('works the API Gateway facade from API_URL + API_KEY like the original worker, without logging either secret', async () => {
    const ws = workspace()
    const facade = await facadeStandIn(API_KEY)
    try {
      facade.send(body(detail({commit: sha(1), repo})))
      facade.send(body(detail({commit: sha(2), repo, state: 'failed'})))
      const env = {...ws.env, API_URL: facade.apiUrl, CISTERN_QUEUE: ''}
      const result = await cistern(['status-queue', 'work', '--once', '--json', '--config', ws.config, '--log-level', 'debug'], {env})
      expect(result.exitCode).toBe(0)
      expect(JSON.parse(String(result.stdout))).toMatchObject({queue: expect.stringMatching(/^apigw\+http:\/\/127\.0\.0\.1:\d+\/prod\/$/), delivered: 2})
      expect(github.posted.map((p) => p.body.state).sort()).toEqual(['failure', 'success'])
      expect(facade.messages).toHaveLength(0)
      const output = String(result.stderr) + String(result.stdout)
      expect(output).not.toContain(API_KEY)
      expect(output).not.toContain(TOKEN)
      expect(facade.server.requests.every((r) => r.headers['x-api-key'] === API_KEY)).toBe(true)
    } finally {
      await facade.close()
    }
  })

  // Issue 11: a token refused for everything stops the worker loudly with exit 3 (it was 2, which
  // also meant "refused for one organisation"); the line is the run's problem, not an Error.
  it('exits 3 naming GITHUB_ACCESS_TOKEN when GitHub answers 401, and keeps the messages', async () => {
    const ws = workspace()
    github.script(() => replies.badCredentials())
    await fill(ws.queueUrl, [1, 2].map((i) => body(detail({commit: sha(i), repo}))))
    const result = await cistern(['status-queue', 'work', '--once', '--config', ws.config], {env: ws.env})
    expect(result.exitCode).toBe(3)
    expect(String(result.stderr)).toMatch(/^GitHub rejected the token \(401 Bad credentials\): GITHUB_ACCESS_TOKEN is not accepted — set GITHUB_ACCESS_TOKEN/m)
    expect(String(result.stderr)).not.toContain(TOKEN)
    const s = await stats(ws.queueUrl)
    expect(s.visible + s.inFlight).toBe(2)
    expect(s.dead).toBe(0)
  })

  it('exits 2 naming GITHUB_URL when it points at a web page instead of the API, and keeps the messages', async () => {
    const ws = workspace()
    const web = await standIn((_req, res) => void res.writeHead(404, {'content-type': 'text/html'}).end('<html><body>Page not found</body></html>'))
    try {
      await fill(ws.queueUrl, [1, 2].map((i) => body(detail({commit: sha(i), repo}))))
      const result = await cistern(['status-queue', 'work', '--once', '--config', ws.config], {env: {...ws.env, GITHUB_URL: web.url}})
      expect(result.exitCode).toBe(2)
      expect(String(result.stderr)).toMatch(/^GitHub answered 404 with a non-JSON page: GITHUB_URL does not look like the GitHub API \(GITHUB_URL http:\/\/127\.0\.0\.1:\d+\) — set GITHUB_URL to the API base/m)
      const s = await stats(ws.queueUrl)
      expect(s.visible + s.inFlight).toBe(2)
      expect(s.dead).toBe(0)
    } finally {
      await web.close()
    }
  })

  it('exits 2 when GITHUB_ACCESS_TOKEN is missing', async () => {
    const ws = workspace()
    const result = await cistern(['status-queue', 'work', '--once'], {env: {...ws.env, GITHUB_ACCESS_TOKEN: ''}})
    expect(result.exitCode).toBe(2)
    expect(String(result.stderr)).toMatch(/GITHUB_ACCESS_TOKEN is not set/)
  })

  it('loses nothing when killed with SIGKILL mid-batch: every status is posted after a restart', async () => {
    const ws = workspace()
    const total = 40
    await fill(ws.queueUrl, Array.from({length: total}, (_, i) => body(detail({commit: sha(i), repo, number: i}))))
    github.script(() => ({status: 201, delayMs: 100, body: {}}))

    const worker = execa('node', [CLI, 'status-queue', 'work', '--config', ws.config, '--concurrency', '4'], {env: {NO_COLOR: '1', ...ws.env}, reject: false})
    const started = Date.now()
    while (github.posted.length < 6 && Date.now() - started < 20_000) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(github.posted.length).toBeGreaterThanOrEqual(6)
    worker.kill('SIGKILL')
    const killed = await worker
    expect(killed.signal).toBe('SIGKILL')
    const postedBeforeKill = new Set(github.posted.map((p) => p.sha)).size
    expect(postedBeforeKill).toBeLessThan(total)

    // The killed worker's leases lapse after the 2 s visibility timeout; then a --once run drains the rest.
    await new Promise((resolve) => setTimeout(resolve, 2500))
    github.script(() => undefined)
    const rerun = await cistern(['status-queue', 'work', '--once', '--config', ws.config, '--json'], {env: ws.env})
    expect(rerun.exitCode).toBe(0)
    expect(new Set(github.posted.map((p) => p.sha))).toEqual(new Set(Array.from({length: total}, (_, i) => sha(i))))
    expect(await stats(ws.queueUrl)).toMatchObject({visible: 0, inFlight: 0, delayed: 0, dead: 0})
  })

  it('stops on SIGTERM after in-flight statuses and exits 0', async () => {
    const ws = workspace()
    await fill(ws.queueUrl, Array.from({length: 8}, (_, i) => body(detail({commit: sha(i), repo}))))
    github.script(() => ({status: 201, delayMs: 200, body: {}}))
    const worker = execa('node', [CLI, 'status-queue', 'work', '--config', ws.config, '--concurrency', '2'], {env: {NO_COLOR: '1', ...ws.env}, reject: false})
    const started = Date.now()
    while (github.attempts.length < 1 && Date.now() - started < 20_000) await new Promise((resolve) => setTimeout(resolve, 10))
    worker.kill('SIGTERM')
    const result = await worker
    expect(result.exitCode).toBe(0)
    expect(result.stderr).toMatch(/SIGTERM received/)
    // Whatever was in flight finished and was deleted; the rest is still queued.
    const s = await stats(ws.queueUrl)
    expect(s.inFlight).toBe(0)
    expect(s.visible + new Set(github.posted.map((p) => p.sha)).size).toBe(8)
  })
})
