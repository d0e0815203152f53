import {Writable} from 'node:stream'
import {join} from 'node:path'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {createLogger} from '../../src/core/log.js'
import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import {type StatusQueueSection, resolveSettings} from '../../src/status-queue/config.js'
import {runStatusQueue} from '../../src/status-queue/worker.js'
import {tempDir} from '../helpers/tmp.js'
import {SHA, body, detail, envelope} from './fixtures.js'
import {type GitHubStandIn, githubStandIn, replies} from './github-standin.js'

const TOKEN = 'ghp_workertoken0123456789'
const dir = tempDir('cistern-sq-worker-')
let github: GitHubStandIn
let n = 0

beforeAll(async () => {
  github = await githubStandIn()
})
afterAll(() => github.close())
beforeEach(() => github.reset())

const sha = (i: number) => SHA.slice(0, 34) + i.toString(16).padStart(6, '0')

/** Log lines as parsed JSON objects. */
function capture() {
  const lines: Array<Record<string, unknown>> = []
  let text = ''
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk)
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    },
  })
  return {log: createLogger({stream, format: 'json', level: 'debug'}), lines, text: () => text}
}

async function freshQueue(query = '') {
  const url = `sqlite:${join(dir, 'q.db')}#sq-${++n}${query}`
  return {url, queue: await openQueue(url)}
}

function settings(queueUrl: string, file: StatusQueueSection = {}) {
  return resolveSettings({
    flags: {queue: queueUrl},
    env: {GITHUB_URL: github.apiUrl, GITHUB_ACCESS_TOKEN: TOKEN},
    file: {
      visibilityTimeout: 5,
      ...file,
      github: {retries: 0, retryBaseMs: 5, inlineWaitMaxSeconds: 0, ...file.github},
    },
  })
}

const ghRepo = (o: string, name: string) => `git@127.0.0.1:${o}/${name}.git`

async function sendAll(queue: Queue, bodies: string[], groupId?: string) {
  for (const text of bodies) await queue.send({body: text, groupId})
}

/** Run the worker in the foreground until `until()` holds (bounded), then stop it with the signal. */
async function runUntil(queueUrl: string, until: () => boolean, file: StatusQueueSection = {}, timeoutMs = 15_000, log?: ReturnType<typeof capture>['log']) {
  const controller = new AbortController()
  const started = Date.now()
  const run = runStatusQueue(settings(queueUrl, file), {signal: controller.signal, log})
  const timer = setInterval(() => {
    if (until() || Date.now() - started > timeoutMs) controller.abort()
  }, 20)
  try {
    return await run
  } finally {
    clearInterval(timer)
  }
}

describe('runStatusQueue (embedded queue → GitHub stand-in)', () => {
  it('posts one exact status per build state, from detail and envelope bodies', async () => {
    const {url, queue} = await freshQueue()
    const states = ['passed', 'failed', 'canceled', 'canceling', 'not_run', 'skipped', 'blocked', 'scheduled', 'started', 'running']
    await sendAll(
      queue,
      states.map((state, i) => body(i % 2 ? envelope({state, number: i, commit: sha(i), repo: ghRepo('acme', 'web-app')}) : detail({state, number: i, commit: sha(i), repo: ghRepo('acme', 'web-app')}))),
    )
    const summary = await runStatusQueue(settings(url), {once: true})
    expect(summary).toMatchObject({stoppedBy: 'empty', received: 10, delivered: 10, dead: 0, retried: 0})
    const byNumber = new Map(github.posted.map((p) => [p.body.target_url, p]))
    const expected = {passed: 'success', failed: 'failure', canceled: 'error', canceling: 'error', not_run: 'error', skipped: 'error', blocked: 'pending', scheduled: 'pending', started: 'pending', running: 'pending'} as const
    states.forEach((state, i) => {
      const post = byNumber.get(`https://buildkite.com/acme/web-app/builds/${i}`)
      expect(post, state).toBeDefined()
      expect(post!.owner).toBe('acme')
      expect(post!.repo).toBe('web-app')
      expect(post!.sha).toBe(sha(i))
      expect(Object.keys(post!.body).sort()).toEqual(['context', 'description', 'state', 'target_url'])
      expect(post!.body.state).toBe(expected[state as keyof typeof expected])
      expect(post!.body.context).toBe('buildkite/web-app')
      expect(String(post!.body.description)).toMatch(new RegExp(`^Build #${i} `))
    })
    expect(byNumber.get('https://buildkite.com/acme/web-app/builds/6')!.body.description).toBe('Build #6 is blocked')
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 0})
    await queue.close()
  })

  it('resolves every repository URL form to owner/name, dotted names whole', async () => {
    const {url, queue} = await freshQueue()
    const forms: Array<[string, string, string]> = [
      ['git@127.0.0.1:acme/one.git', 'acme', 'one'],
      ['https://127.0.0.1/acme/two', 'acme', 'two'],
      ['https://127.0.0.1/acme/three.git', 'acme', 'three'],
      ['ssh://git@127.0.0.1:7999/acme/four.git', 'acme', 'four'],
      ['git@127.0.0.1:my.org/my.repo.name.git', 'my.org', 'my.repo.name'],
      ['https://127.0.0.1/acme/site.github.io', 'acme', 'site.github.io'],
    ]
    await sendAll(queue, forms.map(([repo], i) => body(detail({repo, commit: sha(i)}))))
    const summary = await runStatusQueue(settings(url), {once: true})
    expect(summary).toMatchObject({delivered: forms.length, dead: 0})
    expect(github.posted.map((p) => [p.owner, p.repo, p.sha]).sort()).toEqual(forms.map(([, o, r], i) => [o, r, sha(i)]).sort())
    await queue.close()
  })

  // Issue 11: each dead letter is one warn line by the consumer (queue id, the build as its label,
  // the reason); the handler's own "error dead-letter: …" line is gone.
  it('dead-letters what can never post, with a clear log line each, and posts the rest', async () => {
    const {url, queue} = await freshQueue()
    const poison: Array<[string, RegExp]> = [
      ['{"build": {"number": 1', /^dead letter \S+ — body is not JSON/],
      [body({hello: 'world'}), /^dead letter \S+ — unknown event shape/],
      [body(detail({commit: 'HEAD', repo: ghRepo('acme', 'a')})), /^dead letter \S+ acme\/web-app#42 — build\.commit is HEAD/],
      [body(detail({commit: 'abc1234', repo: ghRepo('acme', 'a')})), /^dead letter \S+ acme\/web-app#42 — build\.commit is "abc1234", not a 40-hex SHA/],
      [body(detail({repo: 'git@127.0.0.1:just-a-name.git'})), /^dead letter \S+ acme\/web-app#42 — repository URL .* has no owner/],
      [body(detail({repo: 'git@gitlab.com:acme/web-app.git'})), /^dead letter \S+ acme\/web-app#42 — repository host gitlab\.com is not the GitHub host 127\.0\.0\.1/],
      [body(detail({state: 'exploded', repo: ghRepo('acme', 'a')})), /^dead letter \S+ acme\/web-app#42 — unknown Buildkite build state "exploded"/],
    ]
    const good = [0, 1, 2].map((i) => body(detail({commit: sha(i), repo: ghRepo('acme', 'good')})))
    // poison between good ones
    await sendAll(queue, [good[0]!, ...poison.slice(0, 4).map(([b]) => b), good[1]!, ...poison.slice(4).map(([b]) => b), good[2]!])
    const {log, lines} = capture()
    const summary = await runStatusQueue(settings(url), {once: true, log})
    expect(summary).toMatchObject({received: 10, delivered: 3, dead: 7, retried: 0, exitCode: 1})
    expect(summary.deadLetters).toHaveLength(7)
    expect(summary.problems[0]).toMatch(/^7 dead letters — see them with `cistern queue peek --dead sqlite:/)
    expect(github.posted.map((p) => p.sha).sort()).toEqual([sha(0), sha(1), sha(2)])
    expect(github.attempts).toHaveLength(3)
    const warnings = lines.filter((l) => l.level === 'warn').map((l) => String(l.msg))
    for (const [, pattern] of poison) expect(warnings.filter((m) => pattern.test(m)), String(pattern)).toHaveLength(1)
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 7})
    await queue.close()
  })

  // Issue 11: a 4xx is this message's fault only when GitHub accepts others meanwhile, so a refused
  // status is retried once (a suspect) before it goes dead (it used to go dead at once).
  it('dead-letters 404 and 422 answers when they repeat while GitHub accepts others, and skips non-build events', async () => {
    const {url, queue} = await freshQueue()
    // the good status answers last, so its success falls between the refusals and their retries
    github.script((post) => (post.repo === 'gone' ? replies.notFound() : post.repo === 'bad' ? replies.unprocessable() : {status: 201, delayMs: 100, body: {}}))
    await sendAll(queue, [
      body(detail({repo: ghRepo('acme', 'gone'), commit: sha(1)})),
      body(detail({repo: ghRepo('acme', 'bad'), commit: sha(2)})),
      body(envelope({}, 'Job Finished')),
      body(detail({repo: ghRepo('acme', 'fine'), commit: sha(3)})),
    ])
    const {log, lines} = capture()
    const summary = await runStatusQueue(settings(url), {once: true, log})
    expect(summary).toMatchObject({delivered: 2, dead: 2, retried: 2, exitCode: 1})
    expect(github.attempts).toHaveLength(5)
    expect(github.posted.map((p) => p.repo)).toEqual(['fine'])
    expect(lines.some((l) => l.level === 'warn' && /^dead letter .* — github:acme answered 404: Not Found.*while it accepted/.test(String(l.msg)))).toBe(true)
    expect(lines.some((l) => l.level === 'warn' && /^dead letter .* — github:acme answered 422: Validation Failed \(No commit found for SHA\).*while it accepted/.test(String(l.msg)))).toBe(true)
    expect(lines.some((l) => String(l.msg).includes('skipped: event "Job Finished"'))).toBe(true)
    await queue.close()
  })

  // Issue 11: a 500 is GitHub's failure, not the message's: it never goes dead (it used to after max-attempts).
  it('a status GitHub answers 500 at every attempt between good ones: the good ones post, it waits, nothing goes dead', async () => {
    const {url, queue} = await freshQueue()
    github.script((post) => (post.repo === 'flaky' ? replies.serverError() : undefined))
    await sendAll(queue, [
      body(detail({repo: ghRepo('acme', 'ok'), commit: sha(1)})),
      body(detail({repo: ghRepo('acme', 'flaky'), commit: sha(2)})),
      body(detail({repo: ghRepo('acme', 'ok'), commit: sha(3)})),
    ])
    const summary = await runUntil(url, () => github.posted.length === 2 && github.attempts.filter((a) => a.repo === 'flaky').length >= 2, {maxAttempts: 2})
    expect(github.posted.map((p) => p.sha).sort()).toEqual([sha(1), sha(3)])
    expect(summary).toMatchObject({dead: 0, retried: 0, exitCode: 0})
    expect(summary.released).toBeGreaterThanOrEqual(1)
    const stats = await queue.stats()
    expect(stats).toMatchObject({inFlight: 0, dead: 0})
    expect(stats.visible + stats.delayed).toBe(1)
    await queue.close()
  })

  it('max-attempts is the consumer\'s: a status refused at every attempt with no success between goes dead there, loudly', async () => {
    const {url, queue} = await freshQueue()
    github.script(() => replies.unprocessable())
    await sendAll(queue, [body(detail({repo: ghRepo('acme', 'lonely'), commit: sha(1)}))])
    const {log, lines} = capture()
    const summary = await runStatusQueue(settings(url, {maxAttempts: 2}), {once: true, log})
    expect(summary).toMatchObject({dead: 1, retried: 1, exitCode: 1})
    expect(github.attempts).toHaveLength(2)
    expect(lines.some((l) => l.level === 'warn' && /^dead letter .* acme\/web-app#42 — gave up after 2 attempts: github:acme answered 422/.test(String(l.msg)))).toBe(true)
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, delayed: 0, dead: 1})
    await queue.close()
  })

  // Issue 11: the poison is a 422 (a 500 is GitHub's, never a message's); the group moves on all the same.
  it('FIFO: a poison message at the head of a group goes dead after maxReceiveCount and the group moves on, in order', async () => {
    const {url, queue} = await freshQueue('?fifo=true&maxReceiveCount=2')
    github.script((post) => (post.repo === 'flaky' ? replies.unprocessable() : undefined))
    await sendAll(queue, [body(detail({repo: ghRepo('acme', 'flaky'), commit: sha(1)})), ...[2, 3, 4].map((i) => body(detail({repo: ghRepo('acme', 'ok'), commit: sha(i), number: i})))], 'acme/web-app')
    await sendAll(queue, [body(detail({repo: ghRepo('acme', 'other'), commit: sha(5)}))], 'acme/other')
    const summary = await runUntil(url, () => github.posted.length === 4, {maxAttempts: 0})
    expect(github.posted.filter((p) => p.repo === 'ok').map((p) => p.sha)).toEqual([sha(2), sha(3), sha(4)])
    expect(github.posted.some((p) => p.repo === 'other')).toBe(true)
    expect(github.attempts.filter((a) => a.repo === 'flaky')).toHaveLength(2)
    expect(summary.delivered).toBe(4)
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 1})
    await queue.close()
  })

  // Issue 11: a 429 closes the github gate (the message is released, not an attempt) and a one-shot
  // run waits for it (it used to count a retry and leave it for the next run).
  it('waits out a 429\'s Retry-After with the github gate closed, then posts', async () => {
    const {url, queue} = await freshQueue()
    github.script((_post, attempt) => (attempt === 1 ? replies.tooMany(1) : undefined))
    await sendAll(queue, [body(detail({repo: ghRepo('acme', 'web-app'), commit: sha(1)}))])
    const summary = await runStatusQueue(settings(url), {once: true})
    expect(summary).toMatchObject({delivered: 1, retried: 0, released: 1, dead: 0, exitCode: 0})
    expect(github.attempts).toHaveLength(2)
    await queue.close()
  })

  it('a 403 from one organisation holds only its statuses; the others flow; a one-shot run exits 3 naming it', async () => {
    const {url, queue} = await freshQueue()
    github.script((post) => (post.owner === 'locked' ? {status: 403, body: {message: 'Resource protected by organization SAML enforcement.'}} : undefined))
    await sendAll(queue, [
      ...[1, 2].map((i) => body(detail({repo: ghRepo('locked', 'app'), commit: sha(i)}))),
      ...[3, 4, 5].map((i) => body(detail({repo: ghRepo('acme', 'web-app'), commit: sha(i)}))),
    ])
    const summary = await runStatusQueue(settings(url), {once: true})
    expect(github.posted.map((p) => p.sha).sort()).toEqual([sha(3), sha(4), sha(5)])
    expect(summary).toMatchObject({delivered: 3, dead: 0, exitCode: 3, stoppedBy: 'target-down'})
    expect(summary.problems).toEqual(['2 remaining (github:locked is down: GitHub refused the token (403 Resource protected by organization SAML enforcement.))'])
    expect(summary.targetsDown).toEqual([expect.objectContaining({target: 'github:locked', givenUp: true})])
    const stats = await queue.stats()
    expect(stats).toMatchObject({inFlight: 0, dead: 0})
    expect(stats.visible + stats.delayed).toBe(2)
    await queue.close()
  })

  // Issue 11: a token refused for everything stops the worker loudly with exit 3 (it was a usage error, 2).
  it('stops on 401 naming GITHUB_ACCESS_TOKEN (exit 3), leaving the messages queued', async () => {
    const {url, queue} = await freshQueue()
    github.script(() => replies.badCredentials())
    await sendAll(queue, [1, 2, 3].map((i) => body(detail({repo: ghRepo('acme', 'web-app'), commit: sha(i)}))))
    const {log, text} = capture()
    const summary = await runStatusQueue({...settings(url), concurrency: 1}, {once: true, log})
    expect(summary).toMatchObject({stoppedBy: 'stop', exitCode: 3, dead: 0})
    expect(summary.problems[0]).toMatch(/401 Bad credentials.*GITHUB_ACCESS_TOKEN/)
    expect(github.posted).toHaveLength(0)
    const stats = await queue.stats()
    expect(stats.visible + stats.inFlight + stats.delayed).toBe(3)
    expect(stats.dead).toBe(0)
    expect(text()).not.toContain(TOKEN)
    await queue.close()
  })
})
