// The built CLI (dist/): refresh with `npm run build`. sqs-listen under faults (issues 11 and 12),
// on the embedded queue and on SQS through the fauxqs emulator, with a proxy in front of it that
// throttles or resets the calls a test names: jobs that fail, hang and crash; poison requests among
// good ones; the listener killed with SIGKILL mid-batch, several times; the response queue
// unreachable or throttled for a while; SQS queues with and without a redrive policy, standard and
// FIFO. What is asserted each time: nothing lost (every request answered, or still queued), nothing
// dead but true poison and each dead letter loud (a warn line and a count), duplicates no more than
// what was in flight, no request run twice at once, the documented exit code.
import {ReceiveMessageCommand} from '@aws-sdk/client-sqs'
import {execa} from 'execa'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {Response} from '../../src/sqs-listener/codec.js'
import {CLI, cistern} from '../helpers/cli.js'
import {type Fauxqs, startFauxqs, useFauxqsEnv} from '../helpers/fauxqs.js'
import {tempDir} from '../helpers/tmp.js'
import {type Fixture, makeFixture, waitFor} from '../sqs-listener/fixture.js'
import {type SqsProxy, startSqsProxy} from '../sqs-listener/sqs-proxy.js'

const root = tempDir('cistern-sqs-listen-faults-')
let n = 0
const fixture = (extra: Record<string, unknown> = {}) => makeFixture(join(root, `case-${++n}`), extra)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const children: Array<{kill: (signal?: NodeJS.Signals) => boolean}> = []
afterAll(() => {
  for (const child of children) child.kill('SIGKILL')
})

function listenInBackground(f: Fixture, env: Record<string, string> = {}) {
  const child = execa('node', [CLI, 'sqs-listen', '--config', f.configPath], {reject: false, env: {NO_COLOR: '1', ...f.env, ...env}, timeout: 90_000})
  children.push(child)
  return child
}

/** The JSON log lines of a run's stderr. */
function logLines(stderr: unknown): Array<{level: string; msg: string} & Record<string, unknown>> {
  return String(stderr)
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as {level: string; msg: string})
}

const byRequest = (responses: Response[], id: string) => responses.filter((r) => r.request_id === id)
const finals = (responses: Response[], id: string) => byRequest(responses, id).filter((r) => r.result === 'success' || r.result === 'failure')

/** Running (a zombie waiting for init to reap it has exited). */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return false
  }
}

describe('sqs-listen under faults, embedded queue (built CLI)', () => {
  it('a batch of jobs that succeed, fail, hang past their timeout and crash, with poison among them: all answered, only the poison dead, loudly; exit 1', async () => {
    const f = fixture({max_concurrent_jobs: 3})
    for (const id of ['good-1', 'good-2', 'good-3']) await f.send('lines', id, ['2'])
    await f.send('fail', 'req-fail', ['7'])
    await f.send('hang', 'req-hang') // its jobs.yml timeout is 1 s
    await f.send('crash', 'req-crash')
    await f.sendRaw('lines: [unclosed')
    await f.send('no_such_job', 'req-unknown', [])
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once', '--json'], {env: f.env})
    expect(run.exitCode, String(run.stderr)).toBe(1)
    const result = JSON.parse(String(run.stdout)) as Record<string, unknown> & {deadLetters: Array<{label?: string; reason: string}>; problems: string[]}
    expect(result).toMatchObject({received: 8, succeeded: 3, failed: 3, badRequests: 2, dead: 2, released: 0, remaining: 0, stoppedBy: 'empty', exitCode: 1})
    expect(result.deadLetters.map((d) => d.label).sort()).toEqual(['request req-unknown (job no_such_job)', 'request unknown (job unknown)'])
    expect(result.problems).toEqual([
      expect.stringMatching(/^2 dead letters — see them with `cistern queue peek --dead sqlite:.*#requests`/) as unknown,
      expect.stringMatching(/^3 jobs answered failure \(request (req-fail|req-hang|req-crash), (req-fail|req-hang|req-crash), (req-fail|req-hang|req-crash)\)$/) as unknown,
    ])
    // each dead letter has its warn line naming the request; the problems follow on stderr
    const deadLines = logLines(run.stderr).filter((line) => line.msg.startsWith('dead letter '))
    expect(deadLines.map((line) => line.level)).toEqual(['warn', 'warn'])
    expect(deadLines.some((line) => line.msg.includes('request req-unknown (job no_such_job) — unknown-job: no job named "no_such_job"'))).toBe(true)
    expect(String(run.stderr)).toContain('2 dead letters — see them with')

    const responses = await f.drainResponses()
    for (const id of ['good-1', 'good-2', 'good-3']) expect(finals(responses, id).map((r) => r.result), id).toEqual(['success'])
    expect(finals(responses, 'req-fail')[0]?.message).toContain('exit code 7')
    expect(finals(responses, 'req-hang')[0]?.message).toMatch(/timed out after/)
    expect(finals(responses, 'req-crash')[0]?.message).toMatch(/killed by signal SIGKILL/)
    for (const id of ['req-fail', 'req-hang', 'req-crash']) {
      expect(byRequest(responses, id).filter((r) => r.result === 'started'), id).toHaveLength(1) // not retried
      expect(finals(responses, id).map((r) => r.result), id).toEqual(['failure'])
    }
    expect(finals(responses, 'req-unknown')[0]?.message).toMatch(/^Invalid request: no job named "no_such_job"/)
    const {requests} = await f.queues()
    expect(await requests.stats()).toMatchObject({visible: 0, inFlight: 0, delayed: 0, dead: 2})
  })

  it('kill -9 of the listener mid-batch, three times: every request answered, none run twice at once, duplicates no more than were in flight', async () => {
    const concurrency = 2
    const kills = 3
    const f = fixture({visibility_timeout: 2, max_concurrent_jobs: concurrency, polling_interval: 1})
    // Each job outlives the kill, the restart and the visibility timeout: without the orphan
    // sweep its rerun would overlap it.
    const ids = Array.from({length: 5}, (_, i) => `kill-${i}`)
    for (const id of ids) await f.send('work', id, ['6000'])
    const starts = () => f.marks().filter((m) => m.what === 'start').length
    for (let k = 0; k < kills; k++) {
      const before = starts()
      const child = listenInBackground(f)
      await waitFor(() => starts() > before, 30_000, `a job to start under listener ${k + 1}`)
      await sleep(200 + Math.floor(Math.random() * 600)) // mid-batch: jobs running, others queued
      child.kill('SIGKILL')
      await child
    }
    const last = listenInBackground(f)
    const responses: Response[] = []
    await waitFor(
      async () => {
        responses.push(...(await f.drainResponses()))
        const {requests} = await f.queues()
        const stats = await requests.stats()
        return ids.every((id) => finals(responses, id).length > 0) && stats.visible + stats.inFlight + stats.delayed === 0
      },
      60_000,
      'every request to be answered and deleted',
    )
    last.kill('SIGTERM')
    expect((await last).exitCode).toBe(0)

    const marks = f.marks()
    let extraRuns = 0
    for (const id of ids) {
      expect(finals(responses, id).every((r) => r.result === 'success'), id).toBe(true)
      // Runs of one request never overlap: each ended (or was stopped by the orphan sweep) before the next began.
      const runs = marks
        .filter((m) => m.id === id && m.what === 'start')
        .map((start) => ({start: start.at, end: marks.find((m) => m.pid === start.pid && m.what !== 'start')?.at}))
        .sort((a, b) => a.start - b.start)
      for (const [i, run] of runs.entries()) {
        expect(run.end, `${id}: run ${i} has no end or stop mark`).toBeDefined()
        const next = runs.at(i + 1)
        if (next) expect(run.end ?? Number.POSITIVE_INFINITY, `${id}: run ${i} overlaps the next`).toBeLessThanOrEqual(next.start)
      }
      extraRuns += runs.length - 1
    }
    expect(extraRuns).toBeLessThanOrEqual(kills * concurrency)
    expect(marks.filter((m) => m.what === 'stopped').length, 'orphans stopped by the next listener').toBeGreaterThan(0)
    const extraFinals = ids.reduce((sum, id) => sum + finals(responses, id).length - 1, 0)
    expect(extraFinals).toBeLessThanOrEqual(kills * concurrency)
    for (const mark of marks) expect(alive(mark.pid), `job ${mark.pid} of ${mark.id}`).toBe(false)
    const {requests} = await f.queues()
    expect((await requests.stats()).dead).toBe(0)
  }, 150_000)
})

describe('sqs-listen on SQS (fauxqs, built CLI)', () => {
  let emulator: Fauxqs
  let proxy: SqsProxy
  let restoreEnv: () => void
  /** The CLI talks to the emulator through the proxy. */
  let cliEnv: Record<string, string>

  beforeAll(async () => {
    emulator = await startFauxqs()
    restoreEnv = useFauxqsEnv(emulator)
    proxy = await startSqsProxy(emulator.endpoint)
    cliEnv = {...emulator.env, AWS_ENDPOINT_URL: proxy.endpoint}
  }, 60_000)
  afterAll(async () => {
    restoreEnv()
    await proxy.close()
    await emulator.stop()
  })

  async function deadLetters(url: string): Promise<Array<{body: string; reason?: string}>> {
    const out = await emulator.client.send(new ReceiveMessageCommand({QueueUrl: url, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], WaitTimeSeconds: 0}))
    return (out.Messages ?? []).map((m) => ({body: m.Body ?? '', reason: m.MessageAttributes?.['cistern.deadReason']?.StringValue}))
  }

  it('a standard queue with a redrive policy: poison requests go to its dead-letter queue with their reason, the rest are answered; exit 1', async () => {
    const jobs = await emulator.createQueue('std-jobs', {deadLetter: 'std-jobs-dlq', maxReceiveCount: 3})
    const answers = await emulator.createQueue('std-answers')
    const f = fixture({job_queue_url: jobs.url, response_queue_url: answers.url, max_concurrent_jobs: 2})
    await f.send('lines', 'sqs-good-1', ['2'])
    await f.send('fail', 'sqs-fail', ['4'])
    await f.sendRaw('- a list\n- not a request\n')
    await f.send('no_such_job', 'sqs-unknown', [])
    await f.send('lines', 'sqs-good-2', ['1'])
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once', '--json'], {env: {...f.env, ...cliEnv}})
    expect(run.exitCode, String(run.stderr)).toBe(1)
    expect(JSON.parse(String(run.stdout))).toMatchObject({received: 5, succeeded: 2, failed: 1, badRequests: 2, dead: 2, remaining: 0})
    const dead = await deadLetters(jobs.url.replace(/std-jobs$/, 'std-jobs-dlq'))
    expect(dead.map((d) => d.body).sort()).toEqual(['- a list\n- not a request\n', 'no_such_job:\n  request_id: sqs-unknown\n  parameters: []\n'])
    expect(dead.map((d) => d.reason?.split(':')[0]).sort()).toEqual(['not-a-mapping', 'unknown-job'])
    expect(logLines(run.stderr).filter((line) => line.msg.startsWith('dead letter ') && line.level === 'warn')).toHaveLength(2)
    const responses = await f.drainResponses()
    for (const id of ['sqs-good-1', 'sqs-good-2']) expect(finals(responses, id).map((r) => r.result), id).toEqual(['success'])
    expect(finals(responses, 'sqs-fail').map((r) => r.result)).toEqual(['failure'])
    expect(finals(responses, 'sqs-unknown')[0]?.message).toMatch(/^Invalid request: no job named/)
    expect(responses.filter((r) => r.job_name === 'unknown' && r.result === 'failure')).toHaveLength(1)
  })

  it('FIFO queues: each group runs in order, each request answered in order (responses grouped by request)', async () => {
    const jobs = await emulator.createQueue('fifo-jobs.fifo', {deadLetter: 'fifo-jobs-dlq.fifo'})
    const answers = await emulator.createQueue('fifo-answers.fifo')
    const f = fixture({job_queue_url: jobs.url, response_queue_url: answers.url, max_concurrent_jobs: 3})
    const groups = {a: ['a-0', 'a-1', 'a-2', 'a-3'], b: ['b-0', 'b-1', 'b-2']}
    for (let i = 0; i < 4; i++) {
      for (const [group, ids] of Object.entries(groups)) {
        const id = ids[i]
        if (id) await f.send('work', id, ['150'], {groupId: group})
      }
    }
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once', '--json'], {env: {...f.env, ...cliEnv}})
    expect(run.exitCode, String(run.stderr)).toBe(0)
    expect(JSON.parse(String(run.stdout))).toMatchObject({succeeded: 7, dead: 0, remaining: 0, exitCode: 0})
    const marks = f.marks()
    for (const ids of Object.values(groups)) {
      const starts = marks.filter((m) => m.what === 'start' && ids.includes(m.id))
      expect(starts.map((m) => m.id)).toEqual(ids)
      // one at a time within the group: each began after the previous one ended
      for (const [i, start] of starts.entries()) {
        const previous = ids[i - 1]
        const ended = previous ? marks.find((m) => m.id === previous && m.what === 'end') : undefined
        if (previous) expect(start.at).toBeGreaterThanOrEqual(ended?.at ?? Number.POSITIVE_INFINITY)
      }
    }
    const responses = await f.drainResponses()
    for (const id of [...groups.a, ...groups.b]) expect(byRequest(responses, id).map((r) => r.result), id).toEqual(['started', 'success'])
  })

  it('no redrive policy: refuses to start (exit 2) before receiving anything; with --dead-letter-queue it runs and puts the poison there', async () => {
    const jobs = await emulator.createQueue('bare-jobs')
    const answers = await emulator.createQueue('bare-answers')
    const dlq = await emulator.createQueue('bare-jobs-dead')
    const f = fixture({job_queue_url: jobs.url, response_queue_url: answers.url})
    await f.send('lines', 'bare-good', ['1'])
    await f.sendRaw('not: [yaml')
    const refused = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: {...f.env, ...cliEnv}})
    expect(refused.exitCode).toBe(2)
    const errorLine = String(refused.stderr).split('\n').find((line) => line.startsWith('Error: '))
    expect(errorLine).toMatch(/has no dead-letter queue \(no RedrivePolicy\).*— give it one \(aws sqs set-queue-attributes .*\) or pass --dead-letter-queue URL$/)
    expect(proxy.failed.size).toBe(0)
    // nothing was received: both requests are there, first receive
    const peeked = await emulator.client.send(new ReceiveMessageCommand({QueueUrl: jobs.url, MaxNumberOfMessages: 10, VisibilityTimeout: 0, MessageSystemAttributeNames: ['ApproximateReceiveCount']}))
    expect(peeked.Messages?.map((m) => m.Attributes?.ApproximateReceiveCount)).toEqual(['1', '1'])

    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once', '--dead-letter-queue', dlq.url], {env: {...f.env, ...cliEnv}})
    expect(run.exitCode, String(run.stderr)).toBe(1)
    expect((await deadLetters(dlq.url)).map((d) => d.body)).toEqual(['not: [yaml'])
    expect(finals(await f.drainResponses(), 'bare-good').map((r) => r.result)).toEqual(['success'])
  })

  /**
   * The fault holds until the listener has met it a few times (start-up takes its time on a loaded
   * machine), then for `moreMs`; resolves with the moment it was lifted.
   */
  async function faultFor(action: string, times: number, moreMs: number): Promise<number> {
    await waitFor(() => (proxy.failed.get(action) ?? 0) >= times, 60_000, `${times} failed ${action} calls`)
    await sleep(moreMs)
    proxy.clear()
    return Date.now()
  }

  it('the response queue throttled for a while: no job runs while its responses cannot go out, then every response is delivered; exit 0', async () => {
    const jobs = await emulator.createQueue('thr-jobs', {deadLetter: 'thr-jobs-dlq'})
    const answers = await emulator.createQueue('thr-answers')
    const f = fixture({job_queue_url: jobs.url, response_queue_url: answers.url, max_concurrent_jobs: 3})
    const ids = ['thr-0', 'thr-1', 'thr-2']
    for (const id of ids) await f.send('work', id, ['100'])
    proxy.fail((call) => call.action === 'SendMessage' && (call.queueUrl ?? '').endsWith('/thr-answers'), 'throttle')
    let liftedAt: number
    try {
      const running = cistern(['sqs-listen', '--config', f.configPath, '--once', '--json'], {env: {...f.env, ...cliEnv}})
      liftedAt = await faultFor('SendMessage', 4, 2000)
      const run = await running
      expect(run.exitCode, String(run.stderr)).toBe(0)
      expect(JSON.parse(String(run.stdout))).toMatchObject({succeeded: 3, dead: 0, released: 0, remaining: 0, responsesNotDelivered: 0})
      expect(logLines(run.stderr).some((line) => line.level === 'warn' && line.msg.startsWith('response-queue is down: AWS throttled SQS SendMessage'))).toBe(true)
    } finally {
      proxy.clear()
      proxy.failed.clear()
    }
    const starts = f.marks().filter((m) => m.what === 'start')
    expect(starts.map((m) => m.id).sort()).toEqual(ids) // each once
    // no job started before its started response went out
    for (const start of starts) expect(start.at).toBeGreaterThanOrEqual(liftedAt - 50)
    const responses = await f.drainResponses()
    for (const id of ids) expect(byRequest(responses, id).map((r) => r.result), id).toEqual(['started', 'success'])
  })

  it('an embedded job queue whose SQS response queue is unreachable for a while (connections reset): answered after, nothing dead; exit 0', async () => {
    const answers = await emulator.createQueue('rst-answers')
    const f = fixture({response_queue_url: answers.url, max_concurrent_jobs: 2})
    const ids = ['rst-0', 'rst-1', 'rst-2']
    for (const id of ids) await f.send('work', id, ['100'])
    proxy.fail((call) => (call.queueUrl ?? '').endsWith('/rst-answers'), 'reset')
    try {
      const running = cistern(['sqs-listen', '--config', f.configPath, '--once', '--json'], {env: {...f.env, ...cliEnv}})
      await faultFor('SendMessage', 3, 1500)
      const run = await running
      expect(run.exitCode, String(run.stderr)).toBe(0)
      expect(JSON.parse(String(run.stdout))).toMatchObject({succeeded: 3, dead: 0, remaining: 0})
    } finally {
      proxy.clear()
      proxy.failed.clear()
    }
    expect(f.marks().filter((m) => m.what === 'start')).toHaveLength(3)
    const responses = await f.drainResponses()
    for (const id of ids) expect(byRequest(responses, id).map((r) => r.result), id).toEqual(['started', 'success'])
    const {requests} = await f.queues()
    expect((await requests.stats()).dead).toBe(0)
  })
})
