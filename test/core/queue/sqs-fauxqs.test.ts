/**
 * The queue contract against SQS through fauxqs (an independently written emulator, in its own
 * process on a loopback port): standard and FIFO queues, with a redrive policy and without one.
 * Then what only a real SDK talking to a real endpoint shows: an unreachable endpoint.
 */
import {ChangeMessageVisibilityCommand, GetQueueAttributesCommand, ReceiveMessageCommand} from '@aws-sdk/client-sqs'
import {beforeAll, describe, expect, it} from 'vitest'

import {ExitCode, TargetUnhealthyError, UsageError} from '../../../src/core/errors.js'
import {openQueue} from '../../../src/core/queue/index.js'
import type {ContractFeatures} from './contract.js'
import {queueContract} from './contract.js'
import {type Fauxqs, startFauxqs, useFauxqsEnv} from '../../helpers/fauxqs.js'

let emulator: Fauxqs
beforeAll(async () => {
  emulator = await startFauxqs()
  const restore = useFauxqsEnv(emulator)
  return async () => {
    restore()
    await emulator.stop()
  }
})
let counter = 0

const sqs: Omit<ContractFeatures, 'deadLetters' | 'redrive' | 'maxReceiveCount'> = {
  fifo: true,
  delay: true,
  visibility: true,
  staleReceiptErrors: false,
  dedupInQueue: false,
  stats: true,
  purge: true,
  // fauxqs 1.9.2 checks UTF-16 code units against SQS's allowed characters and refuses surrogate
  // pairs (SQS accepts #x10000–#x10FFFF), and accepts any receipt handle in DeleteMessageBatch.
  noAstralCharacters: true,
  acceptsUnknownReceipts: true,
}

queueContract(
  'sqs through fauxqs, with a redrive policy',
  async (options) => {
    const base = `contract-${++counter}`
    const fifo = options.fifo ? '.fifo' : ''
    const {url} = await emulator.createQueue(`${base}${fifo}`, {
      deadLetter: `${base}-dlq${fifo}`,
      maxReceiveCount: options.maxReceiveCount ?? 5,
      visibilityTimeout: options.visibilityTimeout,
    })
    return {queue: await openQueue(url, {visibilityTimeout: options.visibilityTimeout, consumer: options.consumer, log: options.log})}
  },
  {...sqs, maxReceiveCount: true, redrive: true, deadLetters: 'moved'},
)

queueContract(
  'sqs through fauxqs, without a redrive policy',
  async (options) => {
    const {url} = await emulator.createQueue(`bare-${++counter}${options.fifo ? '.fifo' : ''}`, {visibilityTimeout: options.visibilityTimeout})
    return {queue: await openQueue(url, {visibilityTimeout: options.visibilityTimeout, consumer: options.consumer, log: options.log})}
  },
  {...sqs, maxReceiveCount: false, redrive: false, deadLetters: 'refused'},
)

describe('sqs through fauxqs', () => {
  it('a dead letter reaches the dead-letter queue with the reason, the source and the time; redrive brings it back without them', async () => {
    const {url} = await emulator.createQueue('moved', {deadLetter: 'moved-dlq'})
    const queue = await openQueue(url, {consumer: true})
    await queue.send({body: '{"action":"opened"}', attributes: {'X-GitHub-Event': 'pull_request'}})
    const [m] = await queue.receive()
    await queue.deadLetter(m!, 'Jenkins answered 400 for this payload')
    expect((await queue.stats()).dead).toBe(1)
    const dlqUrl = url.replace('/moved', '/moved-dlq')
    const out = await emulator.client.send(new ReceiveMessageCommand({QueueUrl: dlqUrl, MessageAttributeNames: ['All']}))
    expect(out.Messages).toHaveLength(1)
    const moved = out.Messages![0]!
    expect(moved.Body).toBe('{"action":"opened"}')
    const attributes = Object.fromEntries(Object.entries(moved.MessageAttributes!).map(([k, v]) => [k, v.StringValue]))
    expect(attributes).toMatchObject({'X-GitHub-Event': 'pull_request', 'cistern.deadReason': 'Jenkins answered 400 for this payload', 'cistern.deadFrom': url})
    expect(Date.parse(attributes['cistern.deadAt']!)).toBeGreaterThan(Date.now() - 60_000)
    await emulator.client.send(new ChangeMessageVisibilityCommand({QueueUrl: dlqUrl, ReceiptHandle: moved.ReceiptHandle, VisibilityTimeout: 0}))
    // fauxqs has no StartMessageMoveTask: the backend moves them itself.
    expect(await queue.redrive()).toBe(1)
    const [back] = await queue.receive()
    expect(back!.body).toBe('{"action":"opened"}')
    expect(back!.attributes).toEqual({'X-GitHub-Event': 'pull_request'})
    const {Attributes} = await emulator.client.send(new GetQueueAttributesCommand({QueueUrl: dlqUrl, AttributeNames: ['ApproximateNumberOfMessages']}))
    expect(Attributes!.ApproximateNumberOfMessages).toBe('0')
    await queue.close()
  })

  it('--dead-letter-queue (deadLetterUrl) serves a queue without a redrive policy', async () => {
    const {url} = await emulator.createQueue('explicit')
    const {url: dlq} = await emulator.createQueue('explicit-dead')
    const queue = await openQueue(url, {consumer: true, deadLetterUrl: dlq})
    await queue.send({body: 'x'})
    const [m] = await queue.receive()
    expect(await queue.deadLetter(m!, 'why')).toBe('dead-letter-queue')
    expect((await queue.stats()).dead).toBe(1)
    await queue.close()
  })

  it('sqs://<name> resolves through the endpoint', async () => {
    await emulator.createQueue('by-name')
    const queue = await openQueue('sqs://by-name')
    await queue.send({body: 'named'})
    expect((await queue.receive()).map((m) => m.body)).toEqual(['named'])
    await queue.close()
  })

  it('a FIFO queue delivers each group in order, one in flight at a time', async () => {
    const {url} = await emulator.createQueue('ordered.fifo', {deadLetter: 'ordered-dlq.fifo'})
    const queue = await openQueue(url, {visibilityTimeout: 30})
    expect(queue.capabilities).toMatchObject({fifo: true, groups: true})
    await queue.sendBatch(['a0', 'a1', 'a2'].map((body) => ({body, groupId: 'a', deduplicationId: body})))
    const seen: string[] = []
    for (let i = 0; i < 10 && seen.length < 3; i++) {
      const got = await queue.receive({maxMessages: 10})
      seen.push(...got.map((m) => m.body))
      expect(await queue.receive()).toEqual([])
      await queue.deleteBatch(got.map((m) => m.receiptHandle))
    }
    expect(seen).toEqual(['a0', 'a1', 'a2'])
    await queue.close()
  })
})

describe('an unreachable SQS endpoint', () => {
  it('is exit 3 naming the endpoint and the fix, not "failed: Error: connect ECONNREFUSED"', async () => {
    const saved = process.env.AWS_ENDPOINT_URL
    process.env.AWS_ENDPOINT_URL = 'http://127.0.0.1:9'
    try {
      const queue = await openQueue('http://sqs.us-east-1.localhost:9/000000000000/nowhere')
      const error = await queue.receive().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(TargetUnhealthyError)
      expect((error as TargetUnhealthyError).exitCode).toBe(ExitCode.unhealthy)
      expect((error as TargetUnhealthyError).oneLine).toMatch(
        /^cannot reach SQS at http:\/\/127\.0\.0\.1:9 for ReceiveMessage \(ECONNREFUSED: .*\) — check AWS_ENDPOINT_URL\/AWS_ENDPOINT_URL_SQS, the region and the network$/,
      )
      await queue.close()
      const byName = await openQueue('sqs://nowhere').catch((e: unknown) => e)
      expect(byName).toBeInstanceOf(TargetUnhealthyError)
      expect((byName as TargetUnhealthyError).oneLine).toMatch(/cannot reach SQS at http:\/\/127\.0\.0\.1:9 for GetQueueUrl/)
    } finally {
      process.env.AWS_ENDPOINT_URL = saved
    }
  })

  it('a missing region says AWS_REGION first (sqs-listen has no --region)', async () => {
    const saved = {region: process.env.AWS_REGION, endpoint: process.env.AWS_ENDPOINT_URL}
    delete process.env.AWS_REGION
    process.env.AWS_ENDPOINT_URL = emulator.endpoint
    try {
      const error = await openQueue('sqs://anything').catch((e: unknown) => e)
      expect(error).toBeInstanceOf(UsageError)
      expect((error as UsageError).oneLine).toMatch(/no AWS region for SQS GetQueueUrl on sqs:\/\/anything — set AWS_REGION \(or the command's --region\)/)
    } finally {
      process.env.AWS_REGION = saved.region
      process.env.AWS_ENDPOINT_URL = saved.endpoint
    }
  })
})
