import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs'
import {afterAll, afterEach, beforeEach, describe, expect, it} from 'vitest'

import {CisternError, UsageError} from '../../../src/core/errors.js'
import {QueueBatchError} from '../../../src/core/queue/errors.js'
import {openQueue, queueScheme} from '../../../src/core/queue/index.js'
import {parseSqsUrl, regionFromHost} from '../../../src/core/queue/sqs.js'
import type {Queue} from '../../../src/core/queue/types.js'
import {SqsSimulator, sqsError} from './sqs-sim.js'

const sim = new SqsSimulator('eu-west-1')
afterAll(() => sim.stop())

// The queue contract runs against SQS through fauxqs (sqs-fauxqs.test.ts); these tests assert the
// exact requests the backend makes, on aws-sdk-client-mock.

describe('sqs queue URLs', () => {
  it('parses the region from the host and keeps the URL', () => {
    expect(parseSqsUrl('https://sqs.us-east-2.amazonaws.com/123456789012/builds.fifo')).toEqual({
      queueUrl: 'https://sqs.us-east-2.amazonaws.com/123456789012/builds.fifo',
      name: 'builds.fifo',
      region: 'us-east-2',
    })
    expect(regionFromHost('eu-central-1.queue.amazonaws.com')).toBe('eu-central-1')
    expect(regionFromHost('sqs.cn-north-1.amazonaws.com.cn')).toBe('cn-north-1')
    expect(regionFromHost('localhost')).toBeUndefined()
    // Emulators' queue URLs (fauxqs: http://sqs.<region>.localhost:<port>/<acct>/<name>).
    expect(regionFromHost('sqs.eu-west-3.localhost')).toBe('eu-west-3')
    expect(parseSqsUrl('http://sqs.us-east-1.localhost:4566/000000000000/jobs.fifo')).toEqual({
      queueUrl: 'http://sqs.us-east-1.localhost:4566/000000000000/jobs.fifo',
      name: 'jobs.fifo',
      region: 'us-east-1',
    })
    expect(queueScheme('http://sqs.us-east-1.localhost:4566/000000000000/jobs')).toBe('sqs')
    expect(parseSqsUrl('sqs://jobs')).toEqual({name: 'jobs'})
    expect(queueScheme('https://sqs.us-east-1.amazonaws.com/1/q')).toBe('sqs')
  })

  it.each(['sqs://bad name', 'sqs://', 'https://sqs.us-east-1.amazonaws.com/'])('rejects %s as a usage error', async (url) => {
    await expect(openQueue(url)).rejects.toBeInstanceOf(UsageError)
  })
})

describe('sqs backend requests', () => {
  let queue: Queue
  const name = 'requests'
  beforeEach(async () => {
    if (!sim.queues.has(sim.urlOf(name))) sim.createQueue(name, {deadLetterName: 'requests-dlq', maxReceiveCount: 3})
    sim.queues.get(sim.urlOf(name))!.messages = []
    sim.queues.get(sim.urlOf('requests-dlq'))!.messages = []
    sim.mock.resetHistory()
    sim.injected.length = 0
    queue = await openQueue(sim.urlOf(name))
  })
  afterEach(async () => {
    await queue.close()
    delete process.env.AWS_ENDPOINT_URL
  })

  it('receive asks for all attributes, the wait, the visibility and the batch size', async () => {
    await queue.receive({maxMessages: 7, waitSeconds: 1, visibilityTimeout: 45})
    const calls = sim.mock.commandCalls(ReceiveMessageCommand)
    expect(calls).toHaveLength(1)
    expect(calls[0]!.args[0].input).toEqual({
      QueueUrl: sim.urlOf(name),
      MaxNumberOfMessages: 7,
      WaitTimeSeconds: 1,
      VisibilityTimeout: 45,
      MessageSystemAttributeNames: ['All'],
      MessageAttributeNames: ['All'],
    })
    // Defaults: 10 messages, no wait, and the queue's own visibility timeout.
    await queue.receive()
    expect(calls.length).toBe(1) // commandCalls is a snapshot
    const second = sim.mock.commandCalls(ReceiveMessageCommand)[1]!.args[0].input
    expect(second).toEqual({QueueUrl: sim.urlOf(name), MaxNumberOfMessages: 10, WaitTimeSeconds: 0, MessageSystemAttributeNames: ['All'], MessageAttributeNames: ['All']})
  })

  it('maps SQS messages: receive count, sent time, group and attributes', async () => {
    await queue.send({body: 'payload', attributes: {'X-GitHub-Event': 'push'}})
    const [m] = await queue.receive()
    expect(m).toMatchObject({body: 'payload', receiveCount: 1, attributes: {'X-GitHub-Event': 'push'}})
    expect(m!.sentAt).toBeInstanceOf(Date)
  })

  it('sends 23 messages in three SendMessageBatch calls of ≤10 and never one request per message', async () => {
    const results = await queue.sendBatch(Array.from({length: 23}, (_, i) => ({body: `m${i}`, delaySeconds: i === 0 ? 5 : undefined})))
    expect(results).toHaveLength(23)
    expect(new Set(results.map((r) => r.id)).size).toBe(23)
    const calls = sim.mock.commandCalls(SendMessageBatchCommand)
    expect(calls.map((c) => c.args[0].input.Entries!.length)).toEqual([10, 10, 3])
    expect(calls[0]!.args[0].input.Entries![0]).toEqual({Id: '0', MessageBody: 'm0', DelaySeconds: 5})
    expect(calls[2]!.args[0].input.Entries!.map((e) => e.Id)).toEqual(['20', '21', '22'])
    expect(sim.mock.commandCalls(SendMessageCommand)).toHaveLength(0)
  })

  it('refuses a body over SQS\'s 1 MiB hard limit before any request; plans for 256 KiB', async () => {
    expect(queue.capabilities.maxBodyBytes).toBe(262_144)
    await expect(queue.sendBatch([{body: 'ok'}, {body: 'x'.repeat(1_048_577)}])).rejects.toBeInstanceOf(UsageError)
    await expect(queue.send({body: ''})).rejects.toBeInstanceOf(UsageError)
    expect(sim.mock.commandCalls(SendMessageBatchCommand)).toHaveLength(0)
    expect(sim.mock.commandCalls(SendMessageCommand)).toHaveLength(0)
  })

  it('deletes 12 handles in DeleteMessageBatch calls of 10 and 2', async () => {
    await queue.sendBatch(Array.from({length: 12}, (_, i) => ({body: `d${i}`})))
    const got = [...(await queue.receive()), ...(await queue.receive())]
    expect(got).toHaveLength(12)
    await queue.deleteBatch(got.map((m) => m.receiptHandle))
    expect(sim.mock.commandCalls(DeleteMessageBatchCommand).map((c) => c.args[0].input.Entries!.length)).toEqual([10, 2])
    expect(sim.mock.commandCalls(DeleteMessageCommand)).toHaveLength(0)
  })

  it('retries batch entries that failed on the server side, and only those', async () => {
    sim.injected.push({op: 'send', id: '3', senderFault: false, code: 'InternalError'})
    const results = await queue.sendBatch(Array.from({length: 5}, (_, i) => ({body: `r${i}`})))
    expect(results.every((r) => r.id)).toBe(true)
    const calls = sim.mock.commandCalls(SendMessageBatchCommand)
    expect(calls.map((c) => c.args[0].input.Entries!.map((e) => e.Id))).toEqual([['0', '1', '2', '3', '4'], ['3']])

    const got = await queue.receive()
    sim.injected.push({op: 'delete', id: '1', senderFault: false, code: 'InternalError'})
    await queue.deleteBatch(got.map((m) => m.receiptHandle))
    const deletes = sim.mock.commandCalls(DeleteMessageBatchCommand)
    expect(deletes.map((c) => c.args[0].input.Entries!.map((e) => e.Id))).toEqual([['0', '1', '2', '3', '4'], ['1']])
    expect(sim.queues.get(sim.urlOf(name))!.messages).toHaveLength(0)
  })

  it('reports sender faults and entries still failing after retries in a QueueBatchError', async () => {
    sim.injected.push({op: 'send', id: '1', senderFault: true, code: 'InvalidMessageContents'})
    for (let i = 0; i < 3; i++) sim.injected.push({op: 'send', id: '2', senderFault: false, code: 'InternalError'})
    const error = await queue.sendBatch([{body: 'a'}, {body: 'b'}, {body: 'c'}]).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(QueueBatchError)
    expect((error as QueueBatchError).failures).toEqual([
      {index: 1, code: 'InvalidMessageContents', message: 'injected'},
      {index: 2, code: 'InternalError', message: 'injected'},
    ])
    // Entry 1 was not retried (the sender's fault); entry 2 was tried three times.
    const ids = sim.mock.commandCalls(SendMessageBatchCommand).map((c) => c.args[0].input.Entries!.map((e) => e.Id))
    expect(ids).toEqual([['0', '1', '2'], ['2'], ['2']])
    expect(sim.queues.get(sim.urlOf(name))!.messages.map((m) => m.Body)).toEqual(['a'])
  })

  it('FIFO: sends MessageGroupId and MessageDeduplicationId, refuses a per-message delay', async () => {
    sim.createQueue('ordered.fifo')
    const fifo = await openQueue(sim.urlOf('ordered.fifo'))
    expect(fifo.capabilities.fifo).toBe(true)
    await fifo.sendBatch([
      {body: 'one', groupId: 'acme/app', deduplicationId: 'delivery-1'},
      {body: 'two', groupId: 'acme/app', deduplicationId: 'delivery-2'},
    ])
    await fifo.send({body: 'three', groupId: 'acme/lib', deduplicationId: 'delivery-3'})
    expect(sim.mock.commandCalls(SendMessageBatchCommand)[0]!.args[0].input.Entries).toEqual([
      {Id: '0', MessageBody: 'one', MessageGroupId: 'acme/app', MessageDeduplicationId: 'delivery-1'},
      {Id: '1', MessageBody: 'two', MessageGroupId: 'acme/app', MessageDeduplicationId: 'delivery-2'},
    ])
    expect(sim.mock.commandCalls(SendMessageCommand)[0]!.args[0].input).toEqual({
      QueueUrl: sim.urlOf('ordered.fifo'),
      MessageBody: 'three',
      MessageGroupId: 'acme/lib',
      MessageDeduplicationId: 'delivery-3',
    })
    await expect(fifo.send({body: 'x', groupId: 'g', delaySeconds: 5})).rejects.toBeInstanceOf(UsageError)
    const [m] = await fifo.receive({maxMessages: 1})
    expect(m).toMatchObject({body: 'one', groupId: 'acme/app', deduplicationId: 'delivery-1'})
    await fifo.close()
  })

  it('deadLetter sends to the RedrivePolicy DLQ with the reason, then deletes; the policy is read once', async () => {
    await queue.sendBatch([{body: 'bad 1', attributes: {k: 'v'}}, {body: 'bad 2'}])
    const got = await queue.receive()
    for (const m of got) expect(await queue.deadLetter(m, `422 for ${m.body}`)).toBe('dead-letter-queue')
    const policyReads = sim.mock.commandCalls(GetQueueAttributesCommand).filter((c) => c.args[0].input.AttributeNames?.includes('RedrivePolicy'))
    expect(policyReads).toHaveLength(1)
    const sends = sim.mock.commandCalls(SendMessageCommand).map((c) => c.args[0].input)
    // The original attributes, then the reason, the queue it came from and when.
    expect(sends.find((s) => s.MessageBody === 'bad 1')).toEqual({
      QueueUrl: sim.urlOf('requests-dlq'),
      MessageBody: 'bad 1',
      MessageAttributes: {
        k: {DataType: 'String', StringValue: 'v'},
        'cistern.deadReason': {DataType: 'String', StringValue: '422 for bad 1'},
        'cistern.deadFrom': {DataType: 'String', StringValue: sim.urlOf(name)},
        'cistern.deadAt': {DataType: 'String', StringValue: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)},
      },
    })
    expect(sim.mock.commandCalls(DeleteMessageCommand)).toHaveLength(2)
    expect(await queue.stats()).toEqual({visible: 0, inFlight: 0, delayed: 0, dead: 2})
    // A move task runs in the background: "started", not "moved 2" (issue 14).
    expect(await queue.redrive()).toBe(-1)
    expect(sim.mock.commandCalls(StartMessageMoveTaskCommand)[0]!.args[0].input).toEqual({
      SourceArn: sim.queues.get(sim.urlOf('requests-dlq'))!.arn,
      DestinationArn: sim.queues.get(sim.urlOf(name))!.arn,
    })
    expect((await queue.stats()).visible).toBe(2)
  })

  it('deadLetter honours an explicit deadLetterUrl without reading the policy', async () => {
    sim.createQueue('explicit-dlq')
    const q = await openQueue(sim.urlOf(name), {deadLetterUrl: sim.urlOf('explicit-dlq')})
    await q.send({body: 'x'})
    const [m] = await q.receive()
    expect(await q.deadLetter(m!, 'why')).toBe('dead-letter-queue')
    expect(sim.queues.get(sim.urlOf('explicit-dlq'))!.messages.map((x) => x.Body)).toEqual(['x'])
    expect(sim.mock.commandCalls(GetQueueAttributesCommand)).toHaveLength(0)
    await q.close()
  })

  // Issue 11 item 4: a message answered 4xx was counted dead, never removed, and POSTed again on
  // every run. Without a dead-letter queue deadLetter() now refuses (the worker says so) and a
  // consumer refuses to start.
  it('without a dead-letter queue, deadLetter refuses with the fix and touches nothing; stats says dead -1', async () => {
    sim.createQueue('no-dlq')
    const q = await openQueue(sim.urlOf('no-dlq'))
    await q.send({body: 'x'})
    const [m] = await q.receive()
    sim.mock.resetHistory()
    const error = await q.deadLetter(m!, 'why').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UsageError)
    expect((error as UsageError).oneLine).toContain(`aws sqs set-queue-attributes --queue-url ${sim.urlOf('no-dlq')} --attributes`)
    expect(sim.mock.commandCalls(SendMessageCommand)).toHaveLength(0)
    expect(sim.mock.commandCalls(DeleteMessageCommand)).toHaveLength(0)
    expect(await q.stats()).toEqual({visible: 0, inFlight: 1, delayed: 0, dead: -1})
    await expect(q.redrive()).rejects.toBeInstanceOf(UsageError)
    expect(await q.maxAttempts!()).toBeUndefined()
    await q.close()
    const refused = await openQueue(sim.urlOf('no-dlq'), {consumer: true}).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(UsageError)
    expect((refused as UsageError).oneLine).toMatch(/has no dead-letter queue .* — give it one \(aws sqs set-queue-attributes/)
  })

  it('a consumer reads the RedrivePolicy once at open: the dead-letter queue and the attempt limit', async () => {
    sim.mock.resetHistory()
    const q = await openQueue(sim.urlOf(name), {consumer: true})
    expect(await q.maxAttempts!()).toBe(3)
    const reads = sim.mock.commandCalls(GetQueueAttributesCommand)
    expect(reads.map((c) => c.args[0].input)).toEqual([{QueueUrl: sim.urlOf(name), AttributeNames: ['RedrivePolicy', 'QueueArn']}])
    await q.send({body: 'x'})
    const [m] = await q.receive()
    await q.deadLetter(m!, 'why')
    expect(sim.mock.commandCalls(GetQueueAttributesCommand)).toHaveLength(1)
    await q.close()
  })

  it('dead letters keep all ten of the message\'s own attributes (the reason yields), and go to a FIFO DLQ with group and dedup id', async () => {
    sim.createQueue('dead-ends.fifo', {deadLetterName: 'dead-ends-dlq.fifo'})
    const q = await openQueue(sim.urlOf('dead-ends.fifo'))
    const attributes = Object.fromEntries(Array.from({length: 10}, (_, i) => [`a${i}`, `v${i}`]))
    await q.send({body: 'crowded', groupId: 'acme/app', deduplicationId: 'd-1', attributes})
    const [m] = await q.receive()
    sim.mock.resetHistory()
    await q.deadLetter(m!, 'why')
    const input = sim.mock.commandCalls(SendMessageCommand)[0]!.args[0].input
    expect(Object.keys(input.MessageAttributes!).sort()).toEqual(Object.keys(attributes).sort())
    expect(input).toMatchObject({QueueUrl: sim.urlOf('dead-ends-dlq.fifo'), MessageGroupId: 'acme/app', MessageDeduplicationId: m!.id})
    expect(sim.mock.commandCalls(DeleteMessageCommand)[0]!.args[0].input).toEqual({QueueUrl: sim.urlOf('dead-ends.fifo'), ReceiptHandle: m!.receiptHandle})
    await q.close()
  })

  it('release is a visibility change (SQS counts every receive)', async () => {
    await queue.send({body: 'x'})
    const [m] = await queue.receive()
    expect(m!.attempts).toBeUndefined()
    await queue.release(m!.receiptHandle, 7)
    expect(sim.mock.commandCalls(ChangeMessageVisibilityCommand).at(-1)!.args[0].input).toEqual({QueueUrl: sim.urlOf(name), ReceiptHandle: m!.receiptHandle, VisibilityTimeout: 7})
  })

  it('redrive falls back to receive/send/delete batches when move tasks are unavailable', async () => {
    await queue.sendBatch([{body: 'a'}, {body: 'b'}])
    for (const m of await queue.receive()) await queue.deadLetter(m, 'r')
    sim.mock.on(StartMessageMoveTaskCommand).rejectsOnce(sqsError('UnsupportedOperation', 'not supported here'))
    expect(await queue.redrive()).toBe(2)
    const back = await queue.receive()
    expect(back.map((m) => m.body).sort()).toEqual(['a', 'b'])
    expect(back[0]!.attributes['cistern.deadReason']).toBeUndefined()
    expect(sim.queues.get(sim.urlOf('requests-dlq'))!.messages).toHaveLength(0)
  })

  it('stats reads the approximate counts; purge is PurgeQueue', async () => {
    await queue.sendBatch([{body: '1'}, {body: '2'}, {body: '3', delaySeconds: 60}])
    await queue.receive({maxMessages: 1})
    expect(await queue.stats()).toEqual({visible: 1, inFlight: 1, delayed: 1, dead: 0})
    expect(await queue.purge()).toBe(-1)
    expect(sim.mock.commandCalls(PurgeQueueCommand)[0]!.args[0].input).toEqual({QueueUrl: sim.urlOf(name)})
  })

  it('changeVisibility maps to ChangeMessageVisibility; a message not in flight is a stale receipt', async () => {
    await queue.send({body: 'x'})
    const [m] = await queue.receive()
    await queue.changeVisibility(m!.receiptHandle, 0)
    expect(sim.mock.commandCalls(ChangeMessageVisibilityCommand)[0]!.args[0].input).toEqual({
      QueueUrl: sim.urlOf(name),
      ReceiptHandle: m!.receiptHandle,
      VisibilityTimeout: 0,
    })
    await expect(queue.changeVisibility(m!.receiptHandle, 10)).rejects.toThrow(/stale/)
  })

  it('sqs://<name> resolves the URL with GetQueueUrl in AWS_REGION', async () => {
    const q = await openQueue('sqs://requests', {region: 'eu-west-1'})
    expect(sim.mock.commandCalls(GetQueueUrlCommand)[0]!.args[0].input).toEqual({QueueName: 'requests'})
    await q.send({body: 'via name'})
    expect(sim.mock.commandCalls(SendMessageCommand)[0]!.args[0].input.QueueUrl).toBe(sim.urlOf(name))
    await q.close()
  })

  it('a queue that does not exist is one usage line naming the queue', async () => {
    const error = await openQueue('sqs://nope', {region: 'eu-west-1'}).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UsageError)
    expect((error as UsageError).oneLine).toMatch(/sqs:\/\/nope does not exist — check/)
    const q = await openQueue(sim.urlOf('missing-by-url'))
    const e2 = await q.stats().catch((e: unknown) => e)
    expect(e2).toBeInstanceOf(UsageError)
    await q.close()
  })

  it('missing credentials are one line with the fix', async () => {
    sim.mock.on(GetQueueAttributesCommand).rejectsOnce(Object.assign(new Error('Could not load credentials from any providers'), {name: 'CredentialsProviderError'}))
    const error = await queue.stats().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CisternError)
    expect((error as CisternError).oneLine).toMatch(/no AWS credentials .* — set AWS_PROFILE/)
    expect((error as CisternError).exitCode).toBe(2)
    // Restore the simulator's behaviour for the next tests.
    sim.mock.reset()
    ;(sim as unknown as {install(): void}).install()
  })

  it('uses the region of the URL host and AWS_ENDPOINT_URL', async () => {
    process.env.AWS_ENDPOINT_URL = 'http://127.0.0.1:4566'
    const q = await openQueue('https://sqs.ap-south-1.amazonaws.com/123456789012/other', {region: 'eu-west-1'})
    const client = (q as unknown as {client: {config: {region: () => Promise<string>; endpoint?: () => Promise<{hostname: string; port?: number}>}}}).client
    expect(await client.config.region()).toBe('ap-south-1')
    const endpoint = await client.config.endpoint!()
    expect(endpoint.hostname).toBe('127.0.0.1')
    expect(endpoint.port).toBe(4566)
    await q.close()
  })

  it('an aborted long poll returns at once with nothing', async () => {
    const controller = new AbortController()
    const started = Date.now()
    setTimeout(() => controller.abort(), 100)
    expect(await queue.receive({waitSeconds: 20, signal: controller.signal})).toEqual([])
    expect(Date.now() - started).toBeLessThan(10_000)
  })
})
