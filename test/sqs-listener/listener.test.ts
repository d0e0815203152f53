import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs'
import {mockClient} from 'aws-sdk-client-mock'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'

import {silentLogger} from '../../src/core/log.js'
import {registerSecret} from '../../src/core/secrets.js'
import {openQueue} from '../../src/core/queue/index.js'
import {NoDeadLetterQueueError} from '../../src/core/queue/errors.js'
import type {Queue} from '../../src/core/queue/types.js'
import {decodeBody, decodeResponse, encodedSize, type Response} from '../../src/sqs-listener/codec.js'
import {loadListenerJobs} from '../../src/sqs-listener/jobs.js'
import {listen, type ListenResult, type ListenerSettings} from '../../src/sqs-listener/listener.js'
import {finalResponse} from '../../src/sqs-listener/responder.js'
import {runListener} from '../../src/sqs-listener/service.js'
import {openRequestStore} from '../../src/sqs-listener/store.js'
import {tempDir} from '../helpers/tmp.js'
import {makeFixture, waitFor} from './fixture.js'

const root = tempDir('cistern-sqs-listener-')
let n = 0

const settings = (extra: Partial<ListenerSettings> = {}): ListenerSettings => ({
  maxConcurrentJobs: 1,
  visibilityTimeout: 5,
  pollingIntervalSeconds: 1,
  responseEncoding: 'plain',
  stopTimeoutSeconds: 5,
  workingLines: 50,
  workingIntervalMs: 60_000,
  jobsPath: 'jobs.yml',
  ...extra,
})

/** The same queue, reporting a smaller body limit. */
function withMaxBody(queue: Queue, maxBodyBytes: number): Queue {
  return new Proxy(queue, {
    get(target, property) {
      if (property === 'capabilities') return {...target.capabilities, maxBodyBytes}
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

describe('listen() on embedded queues', () => {
  it("keeps every response within the response queue's body limit, lines complete and in order", async () => {
    const f = makeFixture(join(root, `case-${++n}`))
    const jobs = await loadListenerJobs(join(f.dir, 'jobs.yml'), ['bang'])
    const {requests, responses} = await f.queues()
    await f.send('lines', 'big', ['400'])
    const store = openRequestStore({path: ':memory:', queue: requests.url, windowMs: 60_000})
    const summary = await listen(
      {requests, responses: withMaxBody(responses, 700), jobs, store, log: silentLogger, settings: settings({workingLines: 1000, responseEncoding: 'base64'})},
      {once: true},
    )
    expect(summary).toMatchObject({received: 1, succeeded: 1})
    const bodies: string[] = []
    for (;;) {
      const batch = await responses.receive({maxMessages: 10})
      if (batch.length === 0) break
      for (const m of batch) {
        bodies.push(m.body)
        await responses.delete(m.receiptHandle)
      }
    }
    for (const body of bodies) {
      expect(Buffer.byteLength(body)).toBeLessThanOrEqual(700)
      expect(decodeBody(body).encoding).toBe('base64')
    }
    const decoded = bodies.map(decodeResponse)
    const working = decoded.filter((r) => r.result === 'working')
    expect(working.length).toBeGreaterThan(10)
    expect(working.flatMap((r) => r.message.split('\n'))).toEqual(Array.from({length: 400}, (_, i) => `line ${i + 1} of 400`))
    const final = decoded.at(-1)!
    expect(final.result).toBe('success')
    expect(encodedSize(final, 'base64')).toBeLessThanOrEqual(700)
    store.close()
  })
})

describe('listen(): what the listener itself writes carries no secret (issue 12)', () => {
  it('a bad request quoting a known secret: its failure response and its dead-letter reason are masked', async () => {
    const f = makeFixture(join(root, `case-${++n}`))
    const jobs = await loadListenerJobs(join(f.dir, 'jobs.yml'), ['bang'])
    const {requests, responses} = await f.queues()
    registerSecret('listener-leak-0123456789')
    await f.sendRaw('lines: listener-leak-0123456789')
    const store = openRequestStore({path: ':memory:', queue: requests.url, windowMs: 60_000})
    const result = await listen({requests, responses, jobs, store, log: silentLogger, settings: settings()}, {once: true})
    expect(result).toMatchObject({badRequests: 1, dead: 1, exitCode: 1})
    const answer = (await f.drainResponses()).at(0)
    expect(answer?.message).toBe('Invalid request: the body of job "lines" must be a mapping with request_id and parameters, got the scalar "[redacted]"')
    expect(result.deadLetters[0]?.reason).toBe('bad-job-body: the body of job "lines" must be a mapping with request_id and parameters, got the scalar "[redacted]"')
    const dead = (await requests.peekDead?.(1))?.at(0)
    expect(dead?.attributes['cistern.deadReason']).not.toContain('listener-leak')
    store.close()
  })
})

describe('listen() when the response queue fails', () => {
  /** The same queue, failing the sends whose 1-based numbers are listed, or every send while `down()` says so. */
  function failingSends(queue: Queue, failing: Set<number>, down: () => boolean = () => false): Queue & {sends: () => number} {
    let count = 0
    const proxy = new Proxy(queue, {
      get(target, property) {
        if (property === 'sends') return () => count
        if (property === 'send') {
          return async (input: Parameters<Queue['send']>[0]) => {
            count++
            if (failing.has(count) || down()) throw new Error(`injected send failure #${count}`)
            return target.send(input)
          }
        }
        const value = Reflect.get(target, property, target) as unknown
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
      },
    })
    return proxy as Queue & {sends: () => number}
  }

  async function untilAnswered(run: () => Promise<unknown>, answered: () => Promise<boolean>) {
    for (let i = 0; i < 20; i++) {
      await run()
      if (await answered()) return
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    throw new Error('never answered')
  }

  /** Quick in-process retries; `deadlineMs` small makes a response given up on (the request handed back). */
  const retrying = (deadlineMs?: number) => settings({responseBackoff: {baseMs: 50, maxMs: 200}, ...(deadlineMs === undefined ? {} : {responseDeadlineMs: deadlineMs})})

  it('a response the queue refuses a few times is retried in-process until it is delivered (issue 11: results are delivered)', async () => {
    const f = makeFixture(join(root, `case-${++n}`))
    const jobs = await loadListenerJobs(join(f.dir, 'jobs.yml'), ['bang'])
    const {requests, responses} = await f.queues()
    await f.send('slow', 'refused-twice', ['50'])
    const store = openRequestStore({path: ':memory:', queue: requests.url, windowMs: 60_000})
    // sends: 1 started (refused), 2 started, 3 working, 4-5 the final response refused, 6 delivered
    const flaky = failingSends(responses, new Set([1, 4, 5]))
    const result = await listen({requests, responses: flaky, jobs, store, log: silentLogger, settings: retrying()}, {once: true})
    expect(result).toMatchObject({received: 1, succeeded: 1, responsesNotDelivered: 0, released: 0, exitCode: 0, problems: []})
    expect((await f.drainResponses()).map((r) => r.result)).toEqual(['started', 'working', 'success'])
    expect(flaky.sends()).toBe(6)
    const stats = await requests.stats()
    expect(stats.visible + stats.inFlight + stats.dead).toBe(0)
    store.close()
  })

  it('a final response that cannot be sent is sent on the next receive, without running the job again', async () => {
    const f = makeFixture(join(root, `case-${++n}`))
    const jobs = await loadListenerJobs(join(f.dir, 'jobs.yml'), ['bang'])
    const {requests, responses} = await f.queues()
    await f.send('slow', 'final-lost', ['50'])
    const store = openRequestStore({path: ':memory:', queue: requests.url, windowMs: 60_000})
    // sends: 1 started, 2 working, 3-5 the final response and its retries (given up: deadline 0)
    const flaky = failingSends(responses, new Set([3, 4, 5]))
    const got: Response[] = []
    const results: ListenResult[] = []
    await untilAnswered(
      async () => results.push(await listen({requests, responses: flaky, jobs, store, log: silentLogger, settings: retrying(0)}, {once: true})),
      async () => {
        got.push(...(await f.drainResponses()))
        return got.some((r) => r.result === 'success')
      },
    )
    expect(got.map((r) => r.result)).toEqual(['started', 'working', 'success'])
    expect(f.marks().filter((m) => m.what === 'start')).toHaveLength(1)
    // given up (not an attempt, nothing dead), then answered again from the stored response
    expect(results.reduce((sum, r) => sum + r.responsesNotDelivered, 0)).toBeGreaterThanOrEqual(1)
    expect(results.reduce((sum, r) => sum + r.answeredAgain, 0)).toBe(1)
    expect(results.every((r) => r.dead === 0)).toBe(true)
    const stats = await requests.stats()
    expect(stats.visible + stats.inFlight + stats.dead).toBe(0)
    store.close()
  })

  it('a started response that cannot be sent leaves the request for later, unclaimed, and it runs then', async () => {
    const f = makeFixture(join(root, `case-${++n}`))
    const jobs = await loadListenerJobs(join(f.dir, 'jobs.yml'), ['bang'])
    const {requests, responses} = await f.queues()
    await f.send('slow', 'start-lost', ['50'])
    const store = openRequestStore({path: ':memory:', queue: requests.url, windowMs: 60_000})
    const flaky = failingSends(responses, new Set([1, 2, 3]))
    const got: Response[] = []
    await untilAnswered(
      () => listen({requests, responses: flaky, jobs, store, log: silentLogger, settings: retrying(0)}, {once: true}),
      async () => {
        got.push(...(await f.drainResponses()))
        return got.some((r) => r.result === 'success')
      },
    )
    expect(got.map((r) => r.result)).toEqual(['started', 'working', 'success'])
    expect(f.marks().filter((m) => m.what === 'start')).toHaveLength(1)
    store.close()
  })

  it('--once with the response queue down: no job runs, nothing goes dead, the requests stay queued and the run exits 3', async () => {
    const f = makeFixture(join(root, `case-${++n}`))
    const jobs = await loadListenerJobs(join(f.dir, 'jobs.yml'), ['bang'])
    const {requests, responses} = await f.queues()
    for (const id of ['down-1', 'down-2', 'down-3']) await f.send('slow', id, ['50'])
    const store = openRequestStore({path: ':memory:', queue: requests.url, windowMs: 60_000})
    const down = failingSends(responses, new Set(), () => true)
    const result = await listen(
      {requests, responses: down, jobs, store, log: silentLogger, settings: {...retrying(300), maxConcurrentJobs: 3}},
      {once: true, giveUpAfterMs: 1500},
    )
    expect(result).toMatchObject({succeeded: 0, failed: 0, dead: 0, stoppedBy: 'target-down', exitCode: 3})
    expect(result.problems[0]).toMatch(/^3 remaining \(response-queue is down: .*injected send failure/)
    expect(result.targetsDown).toMatchObject([{target: 'response-queue', givenUp: true}])
    expect(f.marks()).toEqual([])
    const stats = await requests.stats()
    expect(stats.visible + stats.inFlight + stats.delayed).toBe(3)
    expect(stats.dead).toBe(0)
    // The queue is back: the same requests run, each once (once the gate's delay on them has passed).
    await waitFor(async () => (await requests.stats()).visible === 3, 10_000, 'the requests to be visible again')
    const later = await listen({requests, responses, jobs, store, log: silentLogger, settings: {...retrying(), maxConcurrentJobs: 3}}, {once: true})
    expect(later).toMatchObject({succeeded: 3, exitCode: 0})
    expect(f.marks().filter((m) => m.what === 'start')).toHaveLength(3)
    store.close()
  })
})

describe('listen() on SQS (aws-sdk-client-mock)', () => {
  const sqs = mockClient(SQSClient)
  afterEach(() => sqs.reset())

  const REQUEST_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/bang-queue'
  const RESPONSE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/bang-response'

  async function setUp(bodies: string[]) {
    const f = makeFixture(join(root, `case-${++n}`))
    sqs.on(GetQueueUrlCommand, {QueueName: 'bang-queue'}).resolves({QueueUrl: REQUEST_URL})
    sqs.on(GetQueueUrlCommand, {QueueName: 'bang-response'}).resolves({QueueUrl: RESPONSE_URL})
    sqs.on(GetQueueAttributesCommand).resolves({Attributes: {}}) // no RedrivePolicy: no dead-letter queue
    sqs.on(SendMessageCommand).callsFake(() => ({MessageId: `m-${Math.random()}`}))
    sqs.on(DeleteMessageCommand).resolves({})
    sqs.on(DeleteMessageBatchCommand).callsFake((input: {Entries: Array<{Id: string}>}) => ({Successful: input.Entries.map((e) => ({Id: e.Id})), Failed: []}))
    sqs.on(ChangeMessageVisibilityCommand).resolves({})
    const pending = bodies.map((body, i) => ({MessageId: `req-${i}`, ReceiptHandle: `rh-${i}`, Body: body, Attributes: {ApproximateReceiveCount: '1'}}))
    sqs.on(ReceiveMessageCommand).callsFake(() => ({Messages: pending.splice(0, 1)}))
    const requests = await openQueue('sqs://bang-queue', {region: 'us-east-1'})
    const responses = await openQueue('sqs://bang-response', {region: 'us-east-1'})
    const jobs = await loadListenerJobs(join(f.dir, 'jobs.yml'), ['bang'])
    const store = openRequestStore({path: ':memory:', queue: requests.url, windowMs: 60_000})
    return {requests, responses, jobs, store}
  }

  it('resolves the queue names with GetQueueUrl, decodes base64 requests, answers in base64, deletes after the final response', async () => {
    const request = Buffer.from("lines:\n  request_id: 'sqs-1'\n  parameters: ['3']\n").toString('base64')
    const {requests, responses, jobs, store} = await setUp([request])
    const summary = await listen({requests, responses, jobs, store, log: silentLogger, settings: settings({responseEncoding: 'base64'})}, {once: true})
    expect(summary).toMatchObject({received: 1, succeeded: 1})

    expect(sqs.commandCalls(GetQueueUrlCommand).map((c) => c.args[0].input.QueueName).sort()).toEqual(['bang-queue', 'bang-response'])
    const sends = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input)
    expect(sends.every((s) => s.QueueUrl === RESPONSE_URL)).toBe(true)
    for (const s of sends) expect(decodeBody(s.MessageBody!).encoding).toBe('base64')
    const decoded = sends.map((s) => decodeResponse(s.MessageBody!))
    expect(decoded.map((r) => r.result)).toEqual(['started', 'working', 'success'])
    expect(decoded[1]?.message).toBe('line 1 of 3\nline 2 of 3\nline 3 of 3')
    expect(decoded.every((r) => r.job_name === 'lines' && r.request_id === 'sqs-1')).toBe(true)

    // deleted (once), and only after the final response went out
    const calls = sqs.calls().map((c) => c.args[0])
    const deleteAt = calls.findIndex((c) => (c instanceof DeleteMessageBatchCommand || c instanceof DeleteMessageCommand) && c.input.QueueUrl === REQUEST_URL)
    const lastSendAt = calls.findLastIndex((c) => c instanceof SendMessageCommand)
    expect(deleteAt).toBeGreaterThan(lastSendAt)
    const deleted = sqs.commandCalls(DeleteMessageBatchCommand).flatMap((c) => c.args[0].input.Entries!.map((e) => e.ReceiptHandle))
    expect([...deleted, ...sqs.commandCalls(DeleteMessageCommand).map((c) => c.args[0].input.ReceiptHandle)]).toEqual(['rh-0'])
    store.close()
    await requests.close()
    await responses.close()
  })

  it('keeps the request hidden while a long job runs (ChangeMessageVisibility heartbeat)', async () => {
    const {requests, responses, jobs, store} = await setUp(["slow:\n  request_id: long\n  parameters: ['1600']\n"])
    const summary = await listen({requests, responses, jobs, store, log: silentLogger, settings: settings({visibilityTimeout: 1})}, {once: true})
    expect(summary).toMatchObject({succeeded: 1})
    const beats = sqs.commandCalls(ChangeMessageVisibilityCommand).map((c) => c.args[0].input)
    expect(beats.length).toBeGreaterThanOrEqual(2)
    for (const beat of beats) expect(beat).toEqual({QueueUrl: REQUEST_URL, ReceiptHandle: 'rh-0', VisibilityTimeout: 1})
    expect(sqs.commandCalls(ReceiveMessageCommand)[0]?.args[0].input).toMatchObject({QueueUrl: REQUEST_URL, VisibilityTimeout: 1})
    store.close()
    await requests.close()
    await responses.close()
  })

  it("a bad request goes to the queue's dead-letter queue (RedrivePolicy) after its failure response", async () => {
    const {requests, responses, jobs, store} = await setUp(['- not\n- a mapping\n'])
    const DLQ_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/bang-queue-dlq'
    sqs.on(GetQueueAttributesCommand).resolves({
      Attributes: {
        QueueArn: 'arn:aws:sqs:us-east-1:123456789012:bang-queue',
        RedrivePolicy: JSON.stringify({deadLetterTargetArn: 'arn:aws:sqs:us-east-1:123456789012:bang-queue-dlq', maxReceiveCount: 5}),
      },
    })
    sqs.on(GetQueueUrlCommand, {QueueName: 'bang-queue-dlq'}).resolves({QueueUrl: DLQ_URL})
    const summary = await listen({requests, responses, jobs, store, log: silentLogger, settings: settings()}, {once: true})
    expect(summary).toMatchObject({received: 1, badRequests: 1})
    const sends = sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input)
    expect(sends.map((s) => s.QueueUrl)).toEqual([RESPONSE_URL, DLQ_URL])
    expect(decodeResponse(sends[0]?.MessageBody ?? '')).toMatchObject({job_name: 'unknown', request_id: 'unknown', result: 'failure'})
    expect(sends[1]?.MessageBody).toBe('- not\n- a mapping\n')
    expect(sqs.commandCalls(DeleteMessageCommand).map((c) => c.args[0].input)).toEqual([{QueueUrl: REQUEST_URL, ReceiptHandle: 'rh-0'}])
    store.close()
    await requests.close()
    await responses.close()
  })

  it('refuses to start on a queue without a dead-letter queue, before receiving anything (issue 11; it used to answer and delete a bad request)', async () => {
    const {requests, responses, store} = await setUp(['this is: [not yaml'])
    store.close()
    await requests.close()
    await responses.close()
    const dir = join(root, `case-${n}`)
    const configPath = join(dir, 'sqs.yml')
    writeFileSync(configPath, 'aws_region: us-east-1\njob_queue_name: bang-queue\nresponse_queue_name: bang-response\njobs_config_path: jobs.yml\nstate_db: ":memory:"\n')
    const run = runListener({flags: {config: configPath}, once: true, log: silentLogger})
    await expect(run).rejects.toThrow(NoDeadLetterQueueError)
    await expect(run).rejects.toMatchObject({exitCode: 2, fix: expect.stringContaining('--dead-letter-queue') as unknown})
    expect(sqs.commandCalls(ReceiveMessageCommand)).toHaveLength(0)
    expect(sqs.commandCalls(SendMessageCommand)).toHaveLength(0)
  })
})

describe('finalResponse', () => {
  const result = {exitCode: 0 as number | null, timedOut: false, aborted: false, lastLines: ['a', 'b'], durationMs: 3210}
  it.each([
    [{}, 'success', 'Job j succeeded (exit code 0) in 3.2 s.\nLast output lines:\na\nb'],
    [{exitCode: 3}, 'failure', 'Job j failed with exit code 3 after 3.2 s.\nLast output lines:\na\nb'],
    [{exitCode: null, signal: 'SIGKILL'}, 'failure', 'Job j failed: killed by signal SIGKILL after 3.2 s.\nLast output lines:\na\nb'],
    [{exitCode: null, timedOut: true, signal: 'SIGTERM'}, 'failure', 'Job j failed: timed out after 3.2 s and was killed (SIGTERM).\nLast output lines:\na\nb'],
    [{exitCode: null, startError: 'bang: command not found', lastLines: []}, 'failure', 'Job j failed: could not start: bang: command not found'],
  ])('%j → %s', (fields, state, message) => {
    expect(finalResponse('j', 'r', {...result, ...fields}, 'plain', 262_144)).toEqual({job_name: 'j', request_id: 'r', result: state, message})
  })
})
