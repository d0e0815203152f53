/**
 * A small in-memory SQS behind aws-sdk-client-mock, so the queue contract runs against the SQS
 * backend. It keeps the SQS behaviours the backend depends on: visibility and fresh receipt
 * handles, a delete with an old (but once valid) handle succeeding without deleting, a malformed
 * handle failing, ApproximateReceiveCount, per-message delay, FIFO groups (a group is blocked while
 * any of its messages is in flight) and the 5-minute dedup window, RedrivePolicy → DLQ, batch
 * per-entry failures, long polls, PurgeQueue and StartMessageMoveTask.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SQSClient,
  SendMessageBatchCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs'
import {type AwsClientStub, mockClient} from 'aws-sdk-client-mock'
import {createHash, randomBytes, randomUUID} from 'node:crypto'

import {type StandIn, standIn} from '../../helpers/http.js'

const md5 = (text: string) => createHash('md5').update(text, 'utf8').digest('hex')

interface SimMessage {
  MessageId: string
  Body: string
  MessageAttributes?: Record<string, {DataType: string; StringValue?: string}>
  groupId?: string
  dedupId?: string
  sentAt: number
  visibleAt: number
  receipt?: string
  receiveCount: number
  seq: number
}

export interface SimQueue {
  name: string
  url: string
  arn: string
  fifo: boolean
  redrive?: {deadLetterTargetArn: string; maxReceiveCount: number}
  messages: SimMessage[]
  issued: Set<string>
  dedup: Map<string, {id: string; at: number}>
}

export function sqsError(name: string, message = name, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), {name, $fault: 'client', $metadata: {httpStatusCode: 400}, ...extra})
}

const ACCOUNT = '123456789012'

export class SqsSimulator {
  readonly mock: AwsClientStub<SQSClient>
  readonly queues = new Map<string, SimQueue>()
  private seq = 0
  private closed = false
  /** Batch entry ids to fail once each: `{op, id, senderFault}`. */
  readonly injected: Array<{op: 'send' | 'delete'; id: string; senderFault: boolean; code: string}> = []

  constructor(readonly region = 'eu-west-1') {
    this.mock = mockClient(SQSClient)
    this.install()
  }

  createQueue(name: string, options: {deadLetterName?: string; maxReceiveCount?: number} = {}): SimQueue {
    const queue: SimQueue = {
      name,
      url: `https://sqs.${this.region}.amazonaws.com/${ACCOUNT}/${name}`,
      arn: `arn:aws:sqs:${this.region}:${ACCOUNT}:${name}`,
      fifo: name.endsWith('.fifo'),
      messages: [],
      issued: new Set(),
      dedup: new Map(),
    }
    if (options.deadLetterName) {
      const dlq = this.queues.get(this.urlOf(options.deadLetterName)) ?? this.createQueue(options.deadLetterName)
      queue.redrive = {deadLetterTargetArn: dlq.arn, maxReceiveCount: options.maxReceiveCount ?? 5}
    }
    this.queues.set(queue.url, queue)
    return queue
  }

  urlOf(name: string): string {
    return `https://sqs.${this.region}.amazonaws.com/${ACCOUNT}/${name}`
  }

  stop(): void {
    this.closed = true
    this.mock.restore()
  }

  private queue(url: string): SimQueue {
    const queue = this.queues.get(url)
    if (!queue) throw sqsError('QueueDoesNotExist', 'The specified queue does not exist.')
    return queue
  }

  private byArn(arn: string): SimQueue {
    const queue = [...this.queues.values()].find((q) => q.arn === arn)
    if (!queue) throw sqsError('ResourceNotFoundException', `no queue ${arn}`)
    return queue
  }

  /** Puts a message as SendMessage would; returns its id (the original's id for a FIFO duplicate). */
  put(queue: SimQueue, input: {MessageBody?: string; DelaySeconds?: number; MessageGroupId?: string; MessageDeduplicationId?: string; MessageAttributes?: SimMessage['MessageAttributes']}): string {
    if (!input.MessageBody) throw sqsError('InvalidParameterValue', 'The request must contain the parameter MessageBody.')
    if (queue.fifo && !input.MessageGroupId) throw sqsError('MissingParameter', 'The request must contain the parameter MessageGroupId.')
    if (queue.fifo && input.DelaySeconds) throw sqsError('InvalidParameterValue', 'DelaySeconds is not supported per message on FIFO queues')
    const now = Date.now()
    if (queue.fifo && input.MessageDeduplicationId) {
      const seen = queue.dedup.get(input.MessageDeduplicationId)
      if (seen && now - seen.at < 300_000) return seen.id
    }
    const message: SimMessage = {
      MessageId: randomUUID(),
      Body: input.MessageBody,
      MessageAttributes: input.MessageAttributes,
      groupId: input.MessageGroupId,
      dedupId: input.MessageDeduplicationId,
      sentAt: now,
      visibleAt: now + (input.DelaySeconds ?? 0) * 1000,
      receiveCount: 0,
      seq: ++this.seq,
    }
    queue.messages.push(message)
    if (queue.fifo && input.MessageDeduplicationId) queue.dedup.set(input.MessageDeduplicationId, {id: message.MessageId, at: now})
    return message.MessageId
  }

  private inFlight(m: SimMessage, now: number): boolean {
    return m.receipt !== undefined && m.visibleAt > now
  }

  receiveNow(queue: SimQueue, max: number, visibility: number) {
    const now = Date.now()
    const picked: SimMessage[] = []
    const blocked = new Set<string>()
    if (queue.fifo) for (const m of queue.messages) if (this.inFlight(m, now)) blocked.add(m.groupId!)
    for (const m of [...queue.messages].sort((a, b) => a.seq - b.seq)) {
      if (picked.length >= max) break
      if (queue.fifo && blocked.has(m.groupId!)) continue
      if (m.visibleAt > now) {
        if (queue.fifo) blocked.add(m.groupId!) // nothing overtakes an invisible message of its group
        continue
      }
      if (queue.redrive && m.receiveCount >= queue.redrive.maxReceiveCount) {
        queue.messages.splice(queue.messages.indexOf(m), 1)
        const dlq = this.byArn(queue.redrive.deadLetterTargetArn)
        dlq.messages.push({...m, receipt: undefined, visibleAt: now, receiveCount: 0, seq: ++this.seq})
        continue
      }
      m.receiveCount++
      m.receipt = `${m.MessageId}#${randomBytes(9).toString('base64url')}`
      m.visibleAt = now + visibility * 1000
      queue.issued.add(m.receipt)
      picked.push(m)
    }
    return picked.map((m) => ({
      MessageId: m.MessageId,
      ReceiptHandle: m.receipt,
      Body: m.Body,
      MD5OfBody: md5(m.Body),
      Attributes: {
        ApproximateReceiveCount: String(m.receiveCount),
        SentTimestamp: String(m.sentAt),
        ...(m.groupId ? {MessageGroupId: m.groupId} : {}),
        ...(m.dedupId ? {MessageDeduplicationId: m.dedupId} : {}),
      },
      ...(m.MessageAttributes ? {MessageAttributes: m.MessageAttributes} : {}),
    }))
  }

  /** SQS: the current handle deletes; an older one that SQS issued succeeds and deletes nothing. */
  deleteOne(queue: SimQueue, handle: string): void {
    if (!queue.issued.has(handle)) throw sqsError('ReceiptHandleIsInvalid', `The input receipt handle "${handle}" is not a valid receipt handle.`)
    const index = queue.messages.findIndex((m) => m.receipt === handle)
    if (index >= 0) queue.messages.splice(index, 1)
  }

  private takeInjected(op: 'send' | 'delete', id: string) {
    const index = this.injected.findIndex((f) => f.op === op && f.id === id)
    return index >= 0 ? this.injected.splice(index, 1)[0] : undefined
  }

  counts(queue: SimQueue) {
    const now = Date.now()
    return {
      ApproximateNumberOfMessages: String(queue.messages.filter((m) => m.visibleAt <= now).length),
      ApproximateNumberOfMessagesNotVisible: String(queue.messages.filter((m) => this.inFlight(m, now)).length),
      ApproximateNumberOfMessagesDelayed: String(queue.messages.filter((m) => m.receipt === undefined && m.visibleAt > now).length),
    }
  }

  /** The simulated SQS operations by name (`SendMessage`, …): the mock and the HTTP endpoint both call these. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each operation reads its own request shape (the SDK's input or the parsed JSON body)
  readonly handlers: Record<string, (input: any) => unknown> = {}

  private install(): void {
    const handlers = this.handlers
    handlers.GetQueueUrl = (input: {QueueName: string}) => {
      const url = this.urlOf(input.QueueName)
      this.queue(url)
      return {QueueUrl: url}
    }
    handlers.SendMessage = (input) => ({MessageId: this.put(this.queue(input.QueueUrl), input), MD5OfMessageBody: md5(input.MessageBody ?? '')})
    handlers.SendMessageBatch = (input: {QueueUrl: string; Entries: Array<{Id: string} & Parameters<SqsSimulator['put']>[1]>}) => {
      if (input.Entries.length > 10) throw sqsError('TooManyEntriesInBatchRequest')
      const queue = this.queue(input.QueueUrl)
      const Successful: Array<{Id: string; MessageId: string; MD5OfMessageBody: string}> = []
      const Failed: Array<{Id: string; SenderFault: boolean; Code: string; Message: string}> = []
      for (const entry of input.Entries) {
        const fault = this.takeInjected('send', entry.Id)
        if (fault) {
          Failed.push({Id: entry.Id, SenderFault: fault.senderFault, Code: fault.code, Message: 'injected'})
          continue
        }
        try {
          Successful.push({Id: entry.Id, MessageId: this.put(queue, entry), MD5OfMessageBody: md5(entry.MessageBody ?? '')})
        } catch (error) {
          Failed.push({Id: entry.Id, SenderFault: true, Code: (error as Error).name, Message: (error as Error).message})
        }
      }
      return {Successful, Failed}
    }
    handlers.ReceiveMessage = async (input) => {
      const queue = this.queue(input.QueueUrl)
      const max = input.MaxNumberOfMessages ?? 1
      if (max < 1 || max > 10) throw sqsError('InvalidParameterValue', 'MaxNumberOfMessages must be 1-10')
      const deadline = Date.now() + (input.WaitTimeSeconds ?? 0) * 1000
      for (;;) {
        const got = this.receiveNow(queue, max, input.VisibilityTimeout ?? 30)
        if (got.length > 0 || Date.now() >= deadline || this.closed) return {Messages: got.length ? got : undefined}
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }
    handlers.DeleteMessage = (input) => {
      this.deleteOne(this.queue(input.QueueUrl), input.ReceiptHandle)
      return {}
    }
    handlers.DeleteMessageBatch = (input: {QueueUrl: string; Entries: Array<{Id: string; ReceiptHandle: string}>}) => {
      if (input.Entries.length > 10) throw sqsError('TooManyEntriesInBatchRequest')
      const queue = this.queue(input.QueueUrl)
      const Successful: Array<{Id: string}> = []
      const Failed: Array<{Id: string; SenderFault: boolean; Code: string; Message: string}> = []
      for (const entry of input.Entries) {
        const fault = this.takeInjected('delete', entry.Id)
        if (fault) {
          Failed.push({Id: entry.Id, SenderFault: fault.senderFault, Code: fault.code, Message: 'injected'})
          continue
        }
        try {
          this.deleteOne(queue, entry.ReceiptHandle)
          Successful.push({Id: entry.Id})
        } catch (error) {
          Failed.push({Id: entry.Id, SenderFault: true, Code: (error as Error).name, Message: (error as Error).message})
        }
      }
      return {Successful, Failed}
    }
    handlers.ChangeMessageVisibility = (input) => {
      const queue = this.queue(input.QueueUrl)
      if (!queue.issued.has(input.ReceiptHandle)) throw sqsError('ReceiptHandleIsInvalid')
      const message = queue.messages.find((m) => m.receipt === input.ReceiptHandle)
      if (!message || !this.inFlight(message, Date.now())) throw sqsError('MessageNotInflight')
      message.visibleAt = Date.now() + input.VisibilityTimeout * 1000
      return {}
    }
    handlers.GetQueueAttributes = (input: {QueueUrl: string; AttributeNames?: string[]}) => {
      const queue = this.queue(input.QueueUrl)
      const all: Record<string, string> = {
        ...this.counts(queue),
        QueueArn: queue.arn,
        ...(queue.redrive ? {RedrivePolicy: JSON.stringify(queue.redrive)} : {}),
        ...(queue.fifo ? {FifoQueue: 'true'} : {}),
      }
      const names = input.AttributeNames ?? []
      const Attributes = names.includes('All') ? all : Object.fromEntries(Object.entries(all).filter(([key]) => names.includes(key)))
      return {Attributes}
    }
    handlers.PurgeQueue = (input) => {
      this.queue(input.QueueUrl).messages = []
      return {}
    }
    handlers.StartMessageMoveTask = (input: {SourceArn: string; DestinationArn?: string}) => {
      const source = this.byArn(input.SourceArn)
      const destination = input.DestinationArn
        ? this.byArn(input.DestinationArn)
        : [...this.queues.values()].find((q) => q.redrive?.deadLetterTargetArn === source.arn)!
      const now = Date.now()
      for (const m of source.messages.splice(0)) {
        destination.messages.push({...m, receipt: undefined, visibleAt: now, receiveCount: 0, seq: ++this.seq})
      }
      return {TaskHandle: 'task-1'}
    }
    const commands = {
      ChangeMessageVisibility: ChangeMessageVisibilityCommand,
      DeleteMessageBatch: DeleteMessageBatchCommand,
      DeleteMessage: DeleteMessageCommand,
      GetQueueAttributes: GetQueueAttributesCommand,
      GetQueueUrl: GetQueueUrlCommand,
      PurgeQueue: PurgeQueueCommand,
      ReceiveMessage: ReceiveMessageCommand,
      SendMessageBatch: SendMessageBatchCommand,
      SendMessage: SendMessageCommand,
      StartMessageMoveTask: StartMessageMoveTaskCommand,
    }
    for (const [name, command] of Object.entries(commands)) {
      this.mock.on(command as typeof SendMessageCommand).callsFake((input: unknown) => handlers[name]!(input))
    }
  }
}

const LEGACY_CODES: Record<string, string> = {
  QueueDoesNotExist: 'AWS.SimpleQueueService.NonExistentQueue',
  ReceiptHandleIsInvalid: 'ReceiptHandleIsInvalid',
  MessageNotInflight: 'AWS.SimpleQueueService.MessageNotInflight',
}

/**
 * The simulator behind a loopback HTTP endpoint speaking SQS's JSON protocol
 * (`X-Amz-Target: AmazonSQS.<Operation>`), for AWS_ENDPOINT_URL in CLI subprocess tests.
 */
export async function sqsEndpoint(sim: SqsSimulator): Promise<StandIn> {
  return standIn(async (req, res) => {
    const operation = String(req.headers['x-amz-target'] ?? '').replace(/^AmazonSQS\./, '')
    const handler = sim.handlers[operation]
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, {'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': randomUUID(), ...headers})
      res.end(JSON.stringify(body))
    }
    if (!handler) {
      reply(400, {__type: 'com.amazonaws.sqs#InvalidAction', message: `unknown operation ${operation}`})
      return
    }
    try {
      reply(200, (await handler(JSON.parse(req.body.toString('utf8') || '{}'))) ?? {})
    } catch (error) {
      const name = (error as Error).name
      reply(400, {__type: `com.amazonaws.sqs#${name}`, message: (error as Error).message}, {
        'x-amzn-query-error': `${LEGACY_CODES[name] ?? name};Sender`,
      })
    }
  })
}
