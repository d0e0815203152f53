/**
 * status-queue under faults, over the built CLI, on each backend a worker meets: the embedded queue,
 * SQS FIFO through fauxqs (one message group, as EventBridge sends, with a redrive policy) and the
 * API Gateway facade. GitHub is a loopback stand-in that fails as GitHub does: 30 % 5xx, a hanging
 * answer, a secondary rate limit, a 422 for one status, down, 401, 403 for one organisation; and
 * workers are killed with SIGKILL mid-batch. What is asserted: nothing lost (every good status
 * posted), nothing dead but the poison, each dead letter loud (its warn line and the count), at most
 * what a worker held posted twice, and the documented exit codes.
 */
import {GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageBatchCommand} from '@aws-sdk/client-sqs'
import {execa} from 'execa'
import {writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {sleep} from '../../src/core/loop.js'
import {openQueue} from '../../src/core/queue/index.js'
import {CLI, cistern} from '../helpers/cli.js'
import {type Fauxqs, startFauxqs} from '../helpers/fauxqs.js'
import {tempDir} from '../helpers/tmp.js'
import {type FacadeStandIn, facadeStandIn} from '../status-queue/facade-standin.js'
import {SHA, body, detail} from '../status-queue/fixtures.js'
import {type GitHubStandIn, type Reply, githubStandIn, replies} from '../status-queue/github-standin.js'

const TOKEN = 'ghp_faultSuiteToken0123456789abcdef'
const API_KEY = 'apikey-fault-suite-31415926'
const CONCURRENCY = 4
/** What one worker can hold at once: its handlers and a prefetched batch. */
const HELD = CONCURRENCY + 10

const sha = (i: number) => SHA.slice(0, 34) + i.toString(16).padStart(6, '0')
const event = (i: number, owner = 'acme') => body(detail({commit: sha(i), number: i, repo: `git@127.0.0.1:${owner}/app.git`}))
const POISON = 999

let github: GitHubStandIn
let emulator: Fauxqs
beforeAll(async () => {
  ;[github, emulator] = await Promise.all([githubStandIn(), startFauxqs()])
}, 30_000)
afterAll(async () => {
  await Promise.all([github.close(), emulator.stop()])
})
beforeEach(() => {
  github.reset()
})

/** A queue of one backend, filled, with what the CLI needs to work it and a look at what is left. */
interface Filled {
  args: string[]
  env: Record<string, string>
  /** Messages still queued (any state), dead ones not counted. */
  remaining(): Promise<number>
  /** Bodies in the dead letters. */
  dead(): Promise<string[]>
  /** SQS: how often each message was received before this look (which receives them once more). */
  receiveCounts?(): Promise<number[]>
  /** SQS: messages in flight (leased by someone). */
  inFlight?(): Promise<number>
  /** The facade stand-in, for what the facade saw. */
  stand?: FacadeStandIn
  close(): Promise<void>
}

interface Backend {
  name: string
  fill(dir: string, bodies: string[], options?: {maxReceiveCount?: number}): Promise<Filled>
}

let queues = 0

const embedded: Backend = {
  name: 'the embedded queue',
  async fill(dir, bodies) {
    const url = `sqlite:${join(dir, 'cistern.db')}#status-queue`
    const queue = await openQueue(url)
    for (let i = 0; i < bodies.length; i += 10) await queue.sendBatch(bodies.slice(i, i + 10).map((text) => ({body: text})))
    await queue.close()
    const look = async <T>(read: (queue: Awaited<ReturnType<typeof openQueue>>) => Promise<T>) => {
      const opened = await openQueue(url)
      try {
        return await read(opened)
      } finally {
        await opened.close()
      }
    }
    return {
      args: ['--queue', url],
      env: {},
      remaining: () => look(async (q) => {
        const stats = await q.stats()
        return stats.visible + stats.inFlight + stats.delayed
      }),
      dead: () => look(async (q) => ((await q.peekDead?.(100)) ?? []).map((m) => m.body)),
      close: async () => undefined,
    }
  },
}

const sqs: Backend = {
  name: 'SQS FIFO (fauxqs, one group, a redrive policy)',
  async fill(_dir, bodies, options = {}) {
    const name = `status-${++queues}`
    const {url} = await emulator.createQueue(`${name}.fifo`, {deadLetter: `${name}-dead.fifo`, maxReceiveCount: options.maxReceiveCount ?? 5, visibilityTimeout: 2})
    const {url: deadUrl} = await emulator.createQueue(`${name}-dead.fifo`)
    for (let i = 0; i < bodies.length; i += 10) {
      const Entries = bodies.slice(i, i + 10).map((text, k) => ({Id: String(k), MessageBody: text, MessageGroupId: 'buildkite', MessageDeduplicationId: `${name}-${i + k}`}))
      await emulator.client.send(new SendMessageBatchCommand({QueueUrl: url, Entries}))
    }
    const count = async (queueUrl: string) => {
      const {Attributes = {}} = await emulator.client.send(
        new GetQueueAttributesCommand({QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed']}),
      )
      return Number(Attributes.ApproximateNumberOfMessages ?? 0) + Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0)
    }
    return {
      args: ['--queue', url],
      env: emulator.env,
      remaining: () => count(url),
      async inFlight() {
        const {Attributes = {}} = await emulator.client.send(new GetQueueAttributesCommand({QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessagesNotVisible']}))
        return Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0)
      },
      async dead() {
        const {Messages = []} = await emulator.client.send(new ReceiveMessageCommand({QueueUrl: deadUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 0}))
        return Messages.map((m) => m.Body ?? '')
      },
      async receiveCounts() {
        const {Messages = []} = await emulator.client.send(
          new ReceiveMessageCommand({QueueUrl: url, MaxNumberOfMessages: 10, VisibilityTimeout: 0, MessageSystemAttributeNames: ['ApproximateReceiveCount']}),
        )
        return Messages.map((m) => Number(m.Attributes?.ApproximateReceiveCount) - 1)
      },
      close: async () => undefined,
    }
  },
}

const facade: Backend = {
  name: 'the API Gateway facade',
  async fill(dir, bodies) {
    const stand = await facadeStandIn(API_KEY, 2)
    for (const text of bodies) stand.send(text)
    const deadLetterUrl = `sqlite:${join(dir, 'cistern.db')}#facade-dead`
    return {
      args: ['--dead-letter-queue', deadLetterUrl],
      env: {API_URL: stand.apiUrl, API_KEY},
      stand,
      remaining: async () => stand.messages.length,
      async dead() {
        const queue = await openQueue(`apigw+${stand.apiUrl}/`, {apiKey: API_KEY, deadLetterUrl})
        try {
          return ((await queue.peekDead?.(100)) ?? []).map((m) => m.body)
        } finally {
          await queue.close()
        }
      },
      close: () => stand.close(),
    }
  },
}

/** A data dir with a cistern.yml that keeps leases, retries and give-ups short. */
function workspace() {
  const dir = tempDir('cistern-sq-faults-')
  const config = join(dir, 'cistern.yml')
  writeFileSync(
    config,
    [
      'status-queue:',
      '  visibilityTimeout: 2',
      '  drainSeconds: 5',
      '  giveUpAfterSeconds: 2',
      '  github:',
      '    retries: 2',
      '    retryBaseMs: 50',
      '    inlineWaitMaxSeconds: 0',
      '    requestTimeoutMs: 400',
      '',
    ].join('\n'),
  )
  return {dir, config}
}

function work(filled: Filled, ws: {dir: string; config: string}, extra: string[] = [], githubUrl = github.apiUrl) {
  return cistern(['status-queue', 'work', '--config', ws.config, '--concurrency', String(CONCURRENCY), ...filled.args, ...extra], {
    env: {CISTERN_DATA_DIR: ws.dir, GITHUB_URL: githubUrl, GITHUB_ACCESS_TOKEN: TOKEN, CISTERN_LOG_FORMAT: 'json', ...filled.env},
    timeout: 90_000,
  })
}

/** Statuses posted more than once: at most what the killed or retrying workers held. */
function duplicates(): number {
  return github.posted.length - new Set(github.posted.map((p) => p.sha)).size
}

/** Same sequence every run: a fault suite that fails, fails again. */
function seeded(seed: number): () => number {
  let state = seed
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** A port nothing listens on: GitHub down. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  return typeof address === 'object' && address ? address.port : 1
}

const GOOD = Array.from({length: 30}, (_, i) => i)

/** SQS: the group's head (what a receiving worker takes first) was never received before this look. */
async function expectNeverReceived(filled: Filled): Promise<void> {
  if (!filled.receiveCounts) return
  const counts = await filled.receiveCounts()
  expect(counts.length).toBeGreaterThan(0)
  expect(counts).toEqual(counts.map(() => 0))
}

describe.each([embedded, sqs, facade])('status-queue work on $name', (backend) => {
  it('GitHub 30 % 5xx, a hang, a secondary rate limit and a 422 poison: every good status posted, only the poison dead, loudly; exit 1', async () => {
    const ws = workspace()
    const filled = await backend.fill(ws.dir, [...GOOD.slice(0, 10).map((i) => event(i)), event(POISON), ...GOOD.slice(10).map((i) => event(i))])
    const random = seeded(11)
    let requests = 0
    github.script((post): Reply | undefined => {
      requests++
      if (post.sha === sha(POISON)) return replies.unprocessable()
      if (requests === 7) return {status: 201, delayMs: 1500, body: {}} // hangs past the 400 ms timeout
      if (requests === 12) return {status: 403, headers: {'retry-after': '1'}, body: {message: 'You have exceeded a secondary rate limit.'}}
      return random() < 0.3 ? replies.serverError() : undefined
    })
    try {
      // A flaky GitHub is down now and then (three 5xx in a row for one status): give it the default 30 s.
      const result = await work(filled, ws, ['--once', '--json', '--give-up-after', '30s'])
      expect(result.exitCode, String(result.stderr)).toBe(1)
      const summary = JSON.parse(String(result.stdout))
      expect(summary).toMatchObject({dead: 1, exitCode: 1, deadLetters: [{label: `acme/web-app#${POISON}`, reason: expect.stringMatching(/github:acme answered 422: Validation Failed .*while it accepted/)}]})
      // 0 lost: every good status reached GitHub
      expect(new Set(github.posted.map((p) => p.sha))).toEqual(new Set(GOOD.map((i) => sha(i))))
      expect(duplicates()).toBeLessThanOrEqual(HELD)
      // loud: one warn line for the dead letter, and the count with the commands to see and redrive it
      const stderr = String(result.stderr)
      expect(stderr.match(/"level":"warn","msg":"dead letter [^"]* acme\/web-app#999 — github:acme answered 422/g)).toHaveLength(1)
      expect(stderr).toMatch(/^1 dead letter — see them with `cistern queue peek --dead .*`, put them back with `cistern queue redrive .*`$/m)
      expect(stderr).not.toMatch(/answered 500 .*timed out|timed out.*answered 500/)
      expect(String(result.stderr) + String(result.stdout)).not.toContain(TOKEN)
      expect(await filled.remaining()).toBe(0)
      expect((await filled.dead()).map((text) => JSON.parse(text).build.commit)).toEqual([sha(POISON)])
    } finally {
      await filled.close()
    }
  }, 90_000)

  it('GitHub down: no receive spent, exit 3 naming github, nothing dead; back up, everything posted', async () => {
    const ws = workspace()
    // Runs that spent a receive would show in the receive count (the look below spends one: a
    // redrive limit of 2 leaves room for it and the run that posts).
    const filled = await backend.fill(ws.dir, GOOD.slice(0, 6).map((i) => event(i)), {maxReceiveCount: 2})
    const down = `http://127.0.0.1:${await closedPort()}/api/v3`
    try {
      for (let run = 0; run < (backend === sqs ? 2 : 1); run++) {
        const result = await work(filled, ws, ['--once', '--json'], down)
        expect(result.exitCode, String(result.stderr)).toBe(3)
        expect(JSON.parse(String(result.stdout))).toMatchObject({dead: 0, delivered: 0, targetsDown: [expect.objectContaining({target: 'github', givenUp: true})]})
        expect(String(result.stderr)).toMatch(/^(6|work) remaining \(github is down: github: connection refused/m)
      }
      // The health check came first: the facade and SQS were not even received from.
      if (filled.stand) expect(filled.stand.messages.every((m) => m.receiveCount === 0)).toBe(true)
      await expectNeverReceived(filled)
      const result = await work(filled, ws, ['--once', '--json'])
      expect(result.exitCode, String(result.stderr)).toBe(0)
      expect(new Set(github.posted.map((p) => p.sha))).toEqual(new Set(GOOD.slice(0, 6).map((i) => sha(i))))
      expect(await filled.dead()).toEqual([])
      expect(await filled.remaining()).toBe(0)
    } finally {
      await filled.close()
    }
  }, 90_000)

  it('killed with SIGKILL mid-batch, twice: nothing lost, nothing dead, duplicates within what the workers held', async () => {
    const ws = workspace()
    const total = 30
    const filled = await backend.fill(ws.dir, Array.from({length: total}, (_, i) => event(i)))
    github.script(() => ({status: 201, delayMs: 100, body: {}}))
    const env = {NO_COLOR: '1', CISTERN_DATA_DIR: ws.dir, GITHUB_URL: github.apiUrl, GITHUB_ACCESS_TOKEN: TOKEN, CISTERN_LOG_FORMAT: 'json', ...filled.env}
    try {
      for (const kill of [1, 2]) {
        const before = github.posted.length
        const worker = execa('node', [CLI, 'status-queue', 'work', '--config', ws.config, '--concurrency', String(CONCURRENCY), ...filled.args], {env, reject: false})
        const started = Date.now()
        while (github.posted.length < before + 5 && Date.now() - started < 20_000) await sleep(10)
        worker.kill('SIGKILL')
        expect((await worker).signal, `kill ${kill}`).toBe('SIGKILL')
        // Its leases lapse after the 2 s visibility timeout.
        await sleep(2500)
      }
      expect(new Set(github.posted.map((p) => p.sha)).size).toBeLessThan(total)
      // On SQS a killed worker's long poll stays open at the server (SQS cannot know the client
      // died): it takes the group's head as its lease lapses and holds it for one more visibility
      // timeout. Wait (bounded) until nobody holds anything, as an operator would see in the stats.
      for (let waited = 0; filled.inFlight && (await filled.inFlight()) > 0 && waited < 25_000; waited += 250) await sleep(250)
      github.script(() => undefined)
      const result = await work(filled, ws, ['--once', '--json'])
      expect(result.exitCode, String(result.stderr)).toBe(0)
      expect(new Set(github.posted.map((p) => p.sha))).toEqual(new Set(Array.from({length: total}, (_, i) => sha(i))))
      expect(duplicates()).toBeLessThanOrEqual(2 * HELD)
      expect(await filled.dead()).toEqual([])
      expect(await filled.remaining()).toBe(0)
    } finally {
      await filled.close()
    }
  }, 90_000)
})

describe('status-queue work, GitHub refusing (embedded queue, and SQS where a refusal must cost no receive)', () => {
  it('401 for everything: exit 3 naming GITHUB_ACCESS_TOKEN, nothing dead, everything still queued; on SQS not even received', async () => {
    github.server.respond((_req, res) => void res.writeHead(401, {'content-type': 'application/json'}).end('{"message":"Bad credentials"}'))
    try {
      for (const backend of [embedded, sqs]) {
        const ws = workspace()
        const filled = await backend.fill(ws.dir, GOOD.slice(0, 3).map((i) => event(i)), {maxReceiveCount: 1})
        const result = await work(filled, ws, ['--once'])
        expect(result.exitCode, backend.name).toBe(3)
        expect(String(result.stderr)).toMatch(/^GitHub rejected the token \(401 Bad credentials\): GITHUB_ACCESS_TOKEN is not accepted — set GITHUB_ACCESS_TOKEN/m)
        expect(String(result.stderr)).not.toContain(TOKEN)
        expect(await filled.remaining()).toBe(3)
        expect(await filled.dead()).toEqual([])
        await expectNeverReceived(filled)
      }
    } finally {
      await github.close()
      github = await githubStandIn()
    }
  }, 60_000)

  it('a hanging GitHub is reported as timed out (never "answered 500"), exit 3, nothing dead', async () => {
    const ws = workspace()
    const filled = await embedded.fill(ws.dir, GOOD.slice(0, 3).map((i) => event(i)))
    github.script(() => ({status: 201, delayMs: 3000, body: {}}))
    const result = await work(filled, ws, ['--once', '--json'])
    expect(result.exitCode).toBe(3)
    expect(String(result.stderr)).toMatch(/^3 remaining \(github is down: github: timed out: no answer within 0\.4s\)$/m)
    expect(String(result.stderr)).not.toMatch(/answered 500/)
    expect(JSON.parse(String(result.stdout))).toMatchObject({dead: 0, delivered: 0})
    expect(await filled.dead()).toEqual([])
  }, 60_000)

  it('a 403 from one organisation only: the others are posted, its statuses wait, exit 3 names github:<org>', async () => {
    const ws = workspace()
    const filled = await embedded.fill(ws.dir, [event(1, 'locked'), ...GOOD.slice(2, 8).map((i) => event(i)), event(9, 'locked')])
    github.script((post) => (post.owner === 'locked' ? {status: 403, body: {message: 'Resource protected by organization SAML enforcement.'}} : undefined))
    const result = await work(filled, ws, ['--once', '--json'])
    expect(result.exitCode).toBe(3)
    expect(new Set(github.posted.map((p) => p.sha))).toEqual(new Set(GOOD.slice(2, 8).map((i) => sha(i))))
    expect(String(result.stderr)).toMatch(/^2 remaining \(github:locked is down: GitHub refused the token \(403 Resource protected by organization SAML enforcement\.\)\)$/m)
    expect(JSON.parse(String(result.stdout))).toMatchObject({dead: 0, delivered: 6})
    expect(await filled.remaining()).toBe(2)
    expect(await filled.dead()).toEqual([])
  }, 60_000)
})
