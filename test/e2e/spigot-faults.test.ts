/**
 * `cistern spigot drain` (the built CLI, dist/) against a Jenkins that fails the ways real ones do,
 * on the embedded queue and on SQS through fauxqs (standard and FIFO, each with a redrive policy),
 * large payloads in fauxqs's S3 (issue 11's fault suite). Every scenario checks what the delivery
 * contract promises: nothing lost (every webhook reached Jenkins, in order per repository where the
 * queue keeps groups), nothing dead for the target's failures, each dead letter loud (warn line,
 * count, problem line), duplicates only for what was in flight at a kill, the documented exit codes.
 */
import {GetQueueAttributesCommand} from '@aws-sdk/client-sqs'
import {HeadObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {execa} from 'execa'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import type {SpigotMessage} from '../../src/core/webhook-message.js'
import {s3LargePayloadStore} from '../../src/spigot/large-payload.js'
import {CLI, cistern} from '../helpers/cli.js'
import {type Fauxqs, startFauxqs, useFauxqsEnv} from '../helpers/fauxqs.js'
import {type ScriptedJenkins, scriptedJenkins} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {seeded, webhook} from '../spigot/drain-fixtures.js'

const BUCKET = 'spigot-overflow'
const base = tempDir('cistern-e2e-faults-')
let emulator: Fauxqs
let restore: () => void
const cleanups: Array<() => Promise<unknown>> = []

beforeAll(async () => {
  emulator = await startFauxqs()
  restore = useFauxqsEnv(emulator)
  await emulator.createBucket(BUCKET)
})
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  restore()
  await emulator.stop()
})

interface Place {
  queue: Queue
  env: Record<string, string>
  /** Dead letters: the embedded dead table, or the SQS dead-letter queue. */
  dead(): Promise<number>
  /** Visible + in flight + delayed. */
  waiting(): Promise<number>
  visible(): Promise<number>
}

const visible = (place: Place) => place.visible()

interface Backend {
  name: string
  /** The queue keeps each repository's order (embedded, SQS FIFO). */
  groups: boolean
  /** The queue tells when a lease ends, so a drain after a kill -9 waits for it (embedded). */
  tellsLeases: boolean
  fresh(tag: string): Promise<Place>
}

let counter = 0
const backends: Backend[] = [
  {
    name: 'the embedded queue',
    groups: true,
    tellsLeases: true,
    async fresh() {
      const dataDir = join(base, `d${++counter}`)
      const queue = await openQueue(`sqlite:${join(dataDir, 'cistern.db')}#spigot`, {fifo: true})
      cleanups.push(() => queue.close())
      const waiting = async () => {
        const stats = await queue.stats()
        return stats.visible + stats.inFlight + stats.delayed
      }
      return {queue, env: {...emulator.env, CISTERN_DATA_DIR: dataDir}, dead: async () => (await queue.stats()).dead, waiting, visible: async () => (await queue.stats()).visible}
    },
  },
  ...(['', '.fifo'] as const).map(
    (fifo): Backend => ({
      name: `SQS ${fifo ? 'FIFO' : 'standard'} through fauxqs (redrive policy)`,
      groups: fifo !== '',
      tellsLeases: false,
      async fresh(tag) {
        const name = `spigot-${tag}-${++counter}`
        const {url} = await emulator.createQueue(`${name}${fifo}`, {deadLetter: `${name}-dlq${fifo}`, maxReceiveCount: 10})
        const dlq = await emulator.createQueue(`${name}-dlq${fifo}`)
        const queue = await openQueue(url)
        cleanups.push(() => queue.close())
        const count = async (queueUrl: string, names: Array<'ApproximateNumberOfMessages' | 'ApproximateNumberOfMessagesNotVisible' | 'ApproximateNumberOfMessagesDelayed'>) => {
          const {Attributes} = await emulator.client.send(new GetQueueAttributesCommand({QueueUrl: queueUrl, AttributeNames: names}))
          return names.reduce((sum, key) => sum + Number(Attributes?.[key] ?? 0), 0)
        }
        return {
          queue,
          env: {...emulator.env, CISTERN_QUEUE: url, CISTERN_DATA_DIR: join(base, `s${counter}`)},
          dead: () => count(dlq.url, ['ApproximateNumberOfMessages']),
          waiting: () => count(url, ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed']),
          visible: () => count(url, ['ApproximateNumberOfMessages']),
        }
      },
    }),
  ),
]

async function jenkins(answer: Parameters<typeof scriptedJenkins>[0]): Promise<ScriptedJenkins> {
  const stand = await scriptedJenkins(answer)
  cleanups.push(() => stand.close())
  return stand
}

interface Run {
  exitCode: number
  json: Record<string, unknown> & {delivered: number; dead: number; released: number; remaining: number; problems: string[]; deadLetters: Array<{label?: string; reason: string}>}
  stderr: string
  /** The JSON log lines on stderr. */
  logs: Array<{level: string; msg: string}>
}

async function drain(place: Place, stand: ScriptedJenkins, ...args: string[]): Promise<Run> {
  const result = await cistern(['spigot', 'drain', '--json', '--jenkins-url', stand.url, ...args], {env: {...place.env, CISTERN_LOG_FORMAT: 'json'}, timeout: 120_000})
  const stderr = String(result.stderr)
  const logs = stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as {level: string; msg: string})
  return {exitCode: result.exitCode ?? -1, json: JSON.parse(String(result.stdout)), stderr, logs}
}

interface Sent {
  delivery: string
  repository: string
}

/** `perRepo` pushes for each repository, interleaved, queued as `spigot serve` queues them. */
async function queuePushes(place: Place, repositories: string[], perRepo: number, extra: (message: SpigotMessage, i: number) => Promise<SpigotMessage> = async (m) => m): Promise<Sent[]> {
  const sent: Sent[] = []
  for (let i = 0; i < perRepo * repositories.length; i++) {
    const repository = repositories[i % repositories.length]!
    const hook = webhook('push', {repo: repository})
    const message = await extra(hook.message, i)
    // The group is the repository's, even for a large payload whose body is not in the message (as the intake sends it).
    await place.queue.send({
      body: JSON.stringify(message),
      ...(place.queue.capabilities.groups ? {groupId: repository, deduplicationId: hook.delivery} : {}),
    })
    sent.push({delivery: hook.delivery, repository})
  }
  return sent
}

/** Every sent webhook reached Jenkins; per repository in the order sent (a re-sent copy right after its first counts once). */
function expectAllDelivered(stand: ScriptedJenkins, sent: Sent[], {groups, except = []}: {groups: boolean; except?: string[]}): void {
  const wanted = sent.filter((hook) => !except.includes(hook.delivery))
  const accepted = new Set(stand.accepted.map((a) => a.delivery))
  for (const hook of wanted) expect(accepted.has(hook.delivery), `lost ${hook.delivery}`).toBe(true)
  for (const delivery of except) expect(accepted.has(delivery)).toBe(false)
  if (!groups) return
  for (const repository of new Set(wanted.map((hook) => hook.repository))) {
    const seen = stand.accepted
      .filter((a) => a.repository === repository)
      .map((a) => a.delivery)
      .filter((delivery, i, all) => all.indexOf(delivery) === i)
    expect(seen, repository).toEqual(wanted.filter((hook) => hook.repository === repository).map((hook) => hook.delivery))
  }
}

function duplicates(stand: ScriptedJenkins): number {
  const counts = new Map<string, number>()
  for (const {delivery} of stand.accepted) counts.set(delivery, (counts.get(delivery) ?? 0) + 1)
  return [...counts.values()].reduce((sum, n) => sum + n - 1, 0)
}

describe.each(backends)('spigot drain under faults, on $name', (backend) => {
  it('Jenkins failing 30 % of webhooks, one payload it refuses (400), large payloads in S3: one run, only the poison dead, loudly', {timeout: 120_000}, async () => {
    // On the embedded queue: issue 11's 60 pushes for one repository (each failure holds the
    // repository back for its back-off, about a second); on SQS, 20 over four repositories.
    const [repositories, perRepo] = backend.tellsLeases ? [['acme/monorepo'], 60] : [['acme/api', 'acme/web', 'acme/ops', 'acme/lib'], 4]
    const place = await backend.fresh('flaky')
    const store = s3LargePayloadStore({bucket: BUCKET})
    cleanups.push(async () => store.close())
    const keys: string[] = []
    const sent = await queuePushes(place, repositories, perRepo, async (message, i) => {
      if (i % 9 !== 4 || i > 20) return message
      // Too large for the queue: the bytes in S3, a pointer in the message (as the intake does).
      const {raw_body: raw, ...rest} = message
      const pointer = await store.put(Buffer.from(raw!, 'base64'), {delivery: message.headers['X-GitHub-Delivery'], event: 'push'})
      keys.push(pointer.key)
      return {...rest, body: null, large_payload: pointer}
    })
    // The poison in a repository of its own, so the others' successes show Jenkins refuses it alone.
    const others = await queuePushes(place, ['acme/other'], 3)
    sent.push(...others)
    const poison = others[1]!.delivery
    const poisonRepository = 'acme/other'
    const random = seeded(2024)
    const stand = await jenkins((request) => {
      if (request.headers['x-github-delivery'] === poison) return 400
      return random() < 0.3 ? 503 : 200
    })

    const run = await drain(place, stand, '--concurrency', '4')
    expect(run.exitCode).toBe(1)
    expect(run.json).toMatchObject({delivered: sent.length - 1, dead: 1, remaining: 0})
    expectAllDelivered(stand, sent, {groups: backend.groups, except: [poison]})
    expect(duplicates(stand)).toBe(0)
    // Loud: a warn line naming it, the count, the list, and the problem line with the commands to use.
    expect(run.logs.filter((line) => line.level === 'warn' && line.msg.startsWith('dead letter'))).toEqual([
      expect.objectContaining({msg: expect.stringContaining(`push ${poison} ${poisonRepository} — jenkins:default answered 400`)}),
    ])
    expect(run.json.deadLetters).toEqual([expect.objectContaining({label: `push ${poison} ${poisonRepository}`})])
    expect(run.json.problems).toEqual([expect.stringMatching(/^1 dead letter — see them with `cistern queue peek --dead .*`, put them back with `cistern queue redrive /)])
    expect(run.stderr).toMatch(/^1 dead letter — see them with/m)
    expect(await place.dead()).toBe(1)
    // The 503s were Jenkins', not the messages': released, never dead.
    expect(run.json.released).toBeGreaterThan(0)
    // Delivered webhooks' S3 objects are deleted (issue 14).
    expect(keys.length).toBeGreaterThan(0)
    const s3 = new S3Client({region: emulator.region, endpoint: emulator.endpoint, forcePathStyle: true})
    try {
      for (const key of keys) await expect(s3.send(new HeadObjectCommand({Bucket: BUCKET, Key: key}))).rejects.toMatchObject({name: 'NotFound'})
    } finally {
      s3.destroy()
    }
  })

  it('Jenkins down, refusing the credentials, hanging, or answering 503 while /health/ says 200: exit 3, nothing dead, nothing lost', {timeout: 120_000}, async () => {
    const cases: Array<{name: string; health?: number; answer: () => number | 'hang'; problem: RegExp}> = [
      {name: 'down', health: 503, answer: () => 200, problem: /^Jenkins default http:\/\/127\.0\.0\.1:\d+\/ down \(\d+ ms\) — GET \/health\/ answered 503 — queued webhooks are kept/},
      {name: '401', answer: () => 401, problem: /^4 remaining \(jenkins:default is down: jenkins:default answered 401: POST github-webhook\//},
      {name: 'hanging', answer: () => 'hang', problem: /^4 remaining \(jenkins:default is down: jenkins:default: timed out: POST github-webhook\/ \(127\.0\.0\.1:\d+, ETIMEDOUT\)\)$/},
      {name: '503 with health 200', answer: () => 503, problem: /^4 remaining \(jenkins:default is down: jenkins:default answered 503: POST github-webhook\/ — jenkins says 503\)$/},
    ]
    for (const fault of cases) {
      const place = await backend.fresh(fault.name.replaceAll(/\W+/g, '-'))
      const sent = await queuePushes(place, ['acme/a', 'acme/b'], 2)
      const stand = await jenkins(fault.answer)
      if (fault.health) stand.health = fault.health
      const run = await drain(place, stand, '--give-up-after', '1s', '--delivery-timeout', '300ms')
      expect(run.exitCode, fault.name).toBe(3)
      expect(run.json, fault.name).toMatchObject({delivered: 0, dead: 0})
      expect(run.json.problems, fault.name).toEqual([expect.stringMatching(fault.problem)])
      expect(await place.dead(), fault.name).toBe(0)
      expect(stand.accepted, fault.name).toEqual([])
      // Nothing lost: all still queued (visible again once the run's releases and the hanging leases end).
      await vi.waitFor(async () => expect(await place.waiting()).toBe(sent.length), {timeout: 10_000, interval: 200})
    }
  })

  it('kill -9 of a drain mid-batch, three times: the next runs deliver everything, duplicates only what was in flight', {timeout: 120_000}, async () => {
    const place = await backend.fresh('kill')
    const sent = await queuePushes(place, ['acme/x', 'acme/y', 'acme/z'], 10)
    const stand = await jenkins(async () => {
      await new Promise((resolve) => setTimeout(resolve, 60))
      return 200
    })
    const concurrency = 3
    const kills = 3
    // What the queue had out (received, not deleted: running, prefetched, delivered with the delete batched) at each kill.
    let inFlightAtKills = 0
    for (let kill = 1; kill <= kills; kill++) {
      const before = stand.accepted.length
      const child = execa('node', [CLI, 'spigot', 'drain', '--jenkins-url', stand.url, '--concurrency', String(concurrency), '--visibility-timeout', '2'], {
        env: {...place.env, NO_COLOR: '1', CISTERN_LOG_FORMAT: 'json'},
        reject: false,
      })
      cleanups.push(async () => child.kill('SIGKILL'))
      // Mid-batch: a few accepted by this drain, more in flight (or it finished by itself: nothing left to kill).
      await vi.waitFor(() => expect(stand.accepted.length >= before + 3 || child.exitCode !== null).toBe(true), {timeout: 30_000, interval: 10})
      child.kill('SIGKILL')
      await child
      inFlightAtKills += (await place.waiting()) - (await visible(place))
    }
    // The embedded queue tells when the dead drain's leases end: one run waits for them and finishes.
    // SQS cannot tell: a run reports them held (exit 1) and a later one delivers them.
    let last: Run | undefined
    for (let attempt = 0; attempt < 10; attempt++) {
      last = await drain(place, stand)
      if (last.json.remaining === 0) break
      expect(last.json.problems.join('\n')).toMatch(/held by another consumer/)
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
    expect(last?.exitCode).toBe(0)
    expect(last?.json).toMatchObject({dead: 0, remaining: 0})
    if (backend.tellsLeases) expect(last?.json.delivered).toBeGreaterThan(0)
    expectAllDelivered(stand, sent, {groups: backend.groups})
    expect(duplicates(stand)).toBeLessThanOrEqual(inFlightAtKills)
    expect(await place.dead()).toBe(0)
  })
})

describe('spigot drain under faults, the embedded queue only', () => {
  it('right after a kill -9: "N remaining (held by another consumer until …)", exit 1; once the leases lapse, one run delivers them', {timeout: 90_000}, async () => {
    const place = await backends[0]!.fresh('held')
    const sent = await queuePushes(place, ['acme/h1', 'acme/h2'], 4)
    const stand = await jenkins(() => 'hang')
    const child = execa('node', [CLI, 'spigot', 'drain', '--jenkins-url', stand.url, '--visibility-timeout', '8'], {env: {...place.env, NO_COLOR: '1'}, reject: false})
    cleanups.push(async () => child.kill('SIGKILL'))
    await vi.waitFor(() => expect(stand.posts.size).toBe(2), {timeout: 20_000, interval: 10})
    child.kill('SIGKILL')
    await child
    stand.answer(() => 200)
    const early = await drain(place, stand, '--deadline', '1s')
    expect(early.exitCode).toBe(1)
    expect(early.json).toMatchObject({delivered: 0, remaining: 8})
    // The dead drain's two group heads are held; the rest of each group waits behind its head, and
    // is reported with it: all 8 are the other consumer's until its leases lapse.
    expect(early.json.problems).toEqual([expect.stringMatching(/^8 remaining \(held by another consumer until \d\d:\d\d:\d\d\)$/)])
    const after = await drain(place, stand)
    expect(after.exitCode).toBe(0)
    expect(after.json).toMatchObject({delivered: 8, dead: 0, remaining: 0})
    expectAllDelivered(stand, sent, {groups: true})
  })

  it('a second drain while the first holds the messages says so (exit 1), and delivers nothing twice', {timeout: 60_000}, async () => {
    const place = await backends[0]!.fresh('second')
    const sent = await queuePushes(place, ['acme/slow'], 3)
    const stand = await jenkins(async () => {
      await new Promise((resolve) => setTimeout(resolve, 1500))
      return 200
    })
    const first = execa('node', [CLI, 'spigot', 'drain', '--json', '--jenkins-url', stand.url, '--visibility-timeout', '2'], {env: {...place.env, NO_COLOR: '1'}, reject: false})
    cleanups.push(async () => first.kill('SIGKILL'))
    await vi.waitFor(() => expect(stand.posts.size).toBeGreaterThan(0), {timeout: 20_000, interval: 20})
    const second = await drain(place, stand)
    expect(second.exitCode).toBe(1)
    expect(second.json.delivered).toBe(0)
    expect(second.json.problems).toEqual([expect.stringMatching(/^\d+ remaining \(held by another consumer until \d\d:\d\d:\d\d\)$/)])
    const done = await first
    expect(done.exitCode).toBe(0)
    expectAllDelivered(stand, sent, {groups: true})
    expect(duplicates(stand)).toBe(0)
  })

  it('`spigot maintenance -- true` with 30 queued drains them all (never "ok" with work left)', {timeout: 60_000}, async () => {
    const place = await backends[0]!.fresh('maintenance')
    const sent = await queuePushes(place, ['acme/m1', 'acme/m2', 'acme/m3'], 10)
    const stand = await jenkins(() => 200)
    const result = await cistern(['spigot', 'maintenance', '--json', '--jenkins-url', stand.url, '--poll-interval', '100', '--', 'true'], {env: place.env})
    expect(result.exitCode).toBe(0)
    expect(JSON.parse(String(result.stdout))).toMatchObject({outcome: 'ok', exitCode: 0, problems: [], drain: {delivered: 30, remaining: 0}})
    expectAllDelivered(stand, sent, {groups: true})
  })
})
