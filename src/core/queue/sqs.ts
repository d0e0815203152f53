/**
 * AWS SQS through @aws-sdk/client-sqs (imported lazily: commands on the embedded queue never load
 * it). Standard and FIFO (a name ending in .fifo). Batches wherever SQS has a batch call; a batch
 * entry that failed on the server side (SenderFault false) is retried, one the sender caused is
 * reported in a QueueBatchError.
 *
 * SQS cannot tell a stale receipt handle: a delete with an old one "succeeds" and deletes nothing
 * (so it never touches someone else's lease); only a malformed/unknown one is an error.
 *
 * Attempts: SQS counts every receive (ApproximateReceiveCount) for its redrive policy, whatever we
 * do afterwards, so a release is only a visibility change here and `attempts` stays unset (read it
 * as `receiveCount`). Consumers avoid receiving what they will not attempt (docs/delivery.md).
 *
 * Dead letters are moved by cistern itself: SendMessage to the dead-letter queue (the
 * RedrivePolicy's target, or OpenQueueOptions.deadLetterUrl) with the reason, then DeleteMessage
 * from this queue. Without a dead-letter queue there is nowhere to put one: deadLetter() refuses,
 * and a consumer (`consumer: true`) refuses to open, so a refused message is never left to be
 * delivered again and again.
 */
import type {SQSClient, SendMessageBatchRequestEntry} from '@aws-sdk/client-sqs'

import {awsEndpointFromEnv, awsError, awsErrorName} from '../aws.js'
import {CisternError, UsageError, errorMessage} from '../errors.js'
import {type Logger, silentLogger} from '../log.js'
import {NoDeadLetterQueueError, QueueBatchError, StaleReceiptError} from './errors.js'
import type {
  BatchFailure,
  OpenQueueOptions,
  Queue,
  QueueCapabilities,
  QueueMessage,
  QueueStats,
  ReceiveOptions,
  SendInput,
  SendResult,
} from './types.js'
import {fromSqsMessage} from './sqs-message.js'
import {LIMITS, checkSend, checkVisibilityTimeout, chunks, linkSignals, pause, receiveParams} from './validate.js'

type SqsModule = typeof import('@aws-sdk/client-sqs')

/** SQS's default body limit: what pieces should plan for (offload bigger payloads). */
export const SQS_MAX_BODY_BYTES = 262_144
/** SQS's hard limit; between the two it depends on the queue's MaximumMessageSize, so SQS decides. */
const SQS_HARD_MAX_BODY_BYTES = 1_048_576
/** Attempts for batch entries that failed on the server's side. */
const BATCH_ATTEMPTS = 3
/** The reason a message was dead-lettered travels as this message attribute. */
export const DEAD_REASON_ATTRIBUTE = 'cistern.deadReason'
/** …the queue it came from, and when (ISO 8601), as these. */
export const DEAD_FROM_ATTRIBUTE = 'cistern.deadFrom'
export const DEAD_AT_ATTRIBUTE = 'cistern.deadAt'
/** SQS carries at most 10 message attributes. */
const MAX_ATTRIBUTES = 10
/** A connect that takes longer is an unreachable endpoint; a request idle longer (past the 20 s long poll) a hung one. */
const CONNECT_TIMEOUT_MS = 5_000
const REQUEST_TIMEOUT_MS = 35_000

export interface SqsTarget {
  /** Queue URL when known; else resolved from `name` with GetQueueUrl. */
  queueUrl?: string
  name: string
  region?: string
}

/** `https://sqs.<region>.amazonaws.com/<acct>/<name>` or `sqs://<name>`. */
export function parseSqsUrl(url: string): SqsTarget {
  if (url.startsWith('sqs://')) {
    const name = url.slice('sqs://'.length).replace(/\/+$/, '')
    if (!/^[A-Za-z0-9_-]{1,80}(\.fifo)?$/.test(name)) {
      throw new UsageError(`"${name}" in "${url}" is not an SQS queue name`, 'use sqs://<name> with 1–80 letters, digits, "-" or "_" (and .fifo for FIFO)')
    }
    return {name}
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new UsageError(`"${url}" is not a valid SQS queue URL`, 'use https://sqs.<region>.amazonaws.com/<account>/<name>')
  }
  const parts = parsed.pathname.split('/').filter(Boolean)
  const name = parts.at(-1)
  if (!name || parts.length < 2) {
    throw new UsageError(`"${url}" has no /<account>/<name> path`, 'use https://sqs.<region>.amazonaws.com/<account>/<name>')
  }
  return {queueUrl: `${parsed.origin}/${parts.join('/')}`, name, region: regionFromHost(parsed.hostname)}
}

/**
 * sqs.<region>.amazonaws.com[.cn], sqs-fips.<region>…, <region>.queue.amazonaws.com (legacy), and
 * the sqs.<region>.<host> that emulators put in their queue URLs (fauxqs: sqs.us-east-1.localhost).
 */
export function regionFromHost(host: string): string | undefined {
  return (
    /(?:^|\.)sqs(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$/.exec(host)?.[1] ??
    /^([a-z]{2}(?:-[a-z]+)+-\d+)\.queue\.amazonaws\.com$/.exec(host)?.[1] ??
    /^sqs\.([a-z]{2}(?:-[a-z]+)+-\d+)\./.exec(host)?.[1]
  )
}

/** The RedrivePolicy attribute (JSON; maxReceiveCount may be a string) → the DLQ's ARN and the limit. */
function parseRedrivePolicy(text: string | undefined): {arn: string; maxReceiveCount?: number} | undefined {
  if (!text) return undefined
  try {
    const policy = JSON.parse(text) as {deadLetterTargetArn?: unknown; maxReceiveCount?: unknown}
    if (typeof policy.deadLetterTargetArn !== 'string') return undefined
    const max = Number(policy.maxReceiveCount)
    return {arn: policy.deadLetterTargetArn, ...(Number.isInteger(max) && max > 0 ? {maxReceiveCount: max} : {})}
  } catch {
    return undefined
  }
}

/** SQS FIFO needs a group: a message without one (or with an empty one) shares the queue-wide default group. */
function fifoGroup(groupId: string | undefined): string {
  return groupId === undefined || groupId === '' ? 'default' : groupId
}

/** SQS always answers a send with the message's id; the SDK types it optional. */
function messageId(id: string | undefined): string {
  if (id === undefined) throw new CisternError('SQS accepted a message without giving its id')
  return id
}

/** `arn:aws:sqs:<region>:<account>:<name>` → its parts. */
function parseArn(arn: string): {region: string; account: string; name: string} | undefined {
  const [, region, account, name] = /^arn:[^:]+:sqs:([^:]*):(\d+):(.+)$/.exec(arn) ?? []
  return region === undefined || account === undefined || name === undefined ? undefined : {region, account, name}
}

/** An SQS call that failed → one operator line (the mapping lives in core/aws.ts). */
export function sqsError(error: unknown, action: string, queue: string, endpoint?: string): CisternError {
  return awsError(error, {service: 'SQS', action, resource: queue, endpoint})
}

function isAbort(error: unknown, signal?: AbortSignal): boolean {
  return Boolean(signal?.aborted) || awsErrorName(error) === 'AbortError'
}

/**
 * Opens an SQS queue (sqs://<name> is resolved with GetQueueUrl now). With `consumer: true` the
 * dead-letter queue is looked up now too, and a queue without one is refused (exit 2).
 */
export async function openSqsQueue(url: string, options: OpenQueueOptions = {}): Promise<Queue> {
  const target = parseSqsUrl(url)
  const sdk = await import('@aws-sdk/client-sqs')
  const configured = awsEndpointFromEnv('SQS')
  const region = target.region ?? options.region
  const client = new sdk.SQSClient({
    ...(region ? {region} : {}),
    ...(configured ? {endpoint: configured} : {}),
    // Only an explicit profile narrows the default credential chain (which also reads AWS_PROFILE).
    ...(options.profile ? {profile: options.profile} : {}),
    requestHandler: {connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS},
  })
  const endpoint = configured ?? (target.queueUrl ? new URL(target.queueUrl).origin : region ? `https://sqs.${region}.amazonaws.com` : undefined)
  let queueUrl = target.queueUrl
  if (!queueUrl) {
    try {
      queueUrl = (await client.send(new sdk.GetQueueUrlCommand({QueueName: target.name}))).QueueUrl
    } catch (error) {
      client.destroy()
      throw sqsError(error, 'GetQueueUrl', url, endpoint)
    }
    if (!queueUrl) {
      client.destroy()
      throw new UsageError(`SQS queue ${url} does not exist`, 'check the queue name and the region (AWS_REGION)')
    }
  }
  if (options.visibilityTimeout !== undefined) checkVisibilityTimeout(options.visibilityTimeout)
  const queue = new SqsQueue(sdk, client, url, queueUrl, target.name.endsWith('.fifo'), endpoint, options)
  if (options.consumer) {
    try {
      await queue.requireDeadLetterQueue()
    } catch (error) {
      await queue.close()
      throw error
    }
  }
  return queue
}

interface DeadLetterTarget {
  url: string
  arn?: string
  /** The RedrivePolicy's maxReceiveCount (absent for an explicit deadLetterUrl without a policy). */
  maxReceiveCount?: number
}

class SqsQueue implements Queue {
  readonly kind = 'sqs' as const
  readonly capabilities: QueueCapabilities
  private readonly log: Logger
  /** RedrivePolicy lookup, cached: undefined = not looked up yet, null = none. */
  private deadLetterTarget?: Promise<DeadLetterTarget | null>
  private ownArn?: Promise<string | undefined>
  private readonly closing = new AbortController()

  constructor(
    private readonly sdk: SqsModule,
    private readonly client: SQSClient,
    readonly url: string,
    private readonly queueUrl: string,
    private readonly fifo: boolean,
    private readonly endpoint: string | undefined,
    private readonly options: OpenQueueOptions,
  ) {
    this.log = (options.log ?? silentLogger).child({queue: queueUrl})
    this.capabilities = {send: true, fifo, groups: fifo, maxBodyBytes: SQS_MAX_BODY_BYTES, deadLetter: true, peek: false}
  }

  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw sqsError(error, what, this.queueUrl, this.endpoint)
    }
  }

  private entry(message: SendInput, id: string): SendMessageBatchRequestEntry {
    const entry: SendMessageBatchRequestEntry = {Id: id, MessageBody: message.body}
    if (message.attributes && Object.keys(message.attributes).length > 0) {
      entry.MessageAttributes = Object.fromEntries(
        Object.entries(message.attributes).map(([key, value]) => [key, {DataType: 'String', StringValue: value}]),
      )
    }
    if (this.fifo) {
      entry.MessageGroupId = fifoGroup(message.groupId)
      if (message.deduplicationId) entry.MessageDeduplicationId = message.deduplicationId
      if (message.delaySeconds) throw new UsageError('SQS FIFO queues have no per-message delay', 'drop delaySeconds or set DelaySeconds on the queue')
    } else {
      if (message.delaySeconds !== undefined) entry.DelaySeconds = message.delaySeconds
      if (message.groupId) entry.MessageGroupId = message.groupId
    }
    return entry
  }

  async send(message: SendInput): Promise<SendResult> {
    checkSend(message, SQS_HARD_MAX_BODY_BYTES)
    const {Id: _id, ...entry} = this.entry(message, '0')
    const out = await this.call('SendMessage', () => this.client.send(new this.sdk.SendMessageCommand({QueueUrl: this.queueUrl, ...entry})))
    return {id: messageId(out.MessageId)}
  }

  async sendBatch(messages: SendInput[]): Promise<SendResult[]> {
    for (const message of messages) checkSend(message, SQS_HARD_MAX_BODY_BYTES)
    const entries = messages.map((message, index) => this.entry(message, String(index)))
    const results: SendResult[] = new Array<SendResult>(messages.length)
    const failures: BatchFailure[] = []
    for (const batch of chunks(entries)) {
      let pending = batch
      for (let attempt = 1; pending.length > 0; attempt++) {
        const out = await this.call('SendMessageBatch', () =>
          this.client.send(new this.sdk.SendMessageBatchCommand({QueueUrl: this.queueUrl, Entries: pending})),
        )
        for (const ok of out.Successful ?? []) results[Number(ok.Id)] = {id: messageId(ok.MessageId)}
        const retry: SendMessageBatchRequestEntry[] = []
        for (const failed of out.Failed ?? []) {
          const index = Number(failed.Id)
          const entry = pending.find((e) => e.Id === failed.Id)
          if (entry && !failed.SenderFault && attempt < BATCH_ATTEMPTS) retry.push(entry)
          else failures.push({index, code: failed.Code ?? 'Failed', message: failed.Message ?? 'send failed'})
        }
        if (retry.length > 0) {
          this.log.debug('retrying failed send batch entries', {count: retry.length, attempt})
          await pause(100 * 2 ** attempt)
        }
        pending = retry
      }
    }
    if (failures.length > 0) throw new QueueBatchError('send', failures.sort((a, b) => a.index - b.index), results)
    return results
  }

  async receive(options: ReceiveOptions = {}): Promise<QueueMessage[]> {
    const {maxMessages, waitSeconds} = receiveParams(options, this.options.visibilityTimeout ?? LIMITS.defaultVisibilityTimeout)
    const visibility = options.visibilityTimeout ?? this.options.visibilityTimeout
    const {signal, dispose} = linkSignals(options.signal, this.closing.signal)
    if (signal.aborted) return []
    const command = new this.sdk.ReceiveMessageCommand({
      QueueUrl: this.queueUrl,
      MaxNumberOfMessages: maxMessages,
      WaitTimeSeconds: waitSeconds,
      ...(visibility !== undefined ? {VisibilityTimeout: checkVisibilityTimeout(visibility)} : {}),
      MessageSystemAttributeNames: ['All'],
      MessageAttributeNames: ['All'],
    })
    // The SDK aborts the HTTP request; the race makes the stop prompt whatever the transport does.
    let onAbort = (): void => undefined
    const aborted = new Promise<'aborted'>((resolve) => {
      onAbort = () => resolve('aborted')
      signal.addEventListener('abort', onAbort, {once: true})
    })
    try {
      const out = await Promise.race([this.client.send(command, {abortSignal: signal}), aborted])
      if (out === 'aborted') return []
      return (out.Messages ?? []).map(fromSqsMessage)
    } catch (error) {
      if (isAbort(error, signal)) return []
      throw sqsError(error, 'ReceiveMessage', this.queueUrl, this.endpoint)
    } finally {
      signal.removeEventListener('abort', onAbort)
      dispose()
    }
  }

  async delete(receiptHandle: string): Promise<void> {
    try {
      await this.client.send(new this.sdk.DeleteMessageCommand({QueueUrl: this.queueUrl, ReceiptHandle: receiptHandle}))
    } catch (error) {
      if (awsErrorName(error) === 'ReceiptHandleIsInvalid') throw new StaleReceiptError(receiptHandle)
      throw sqsError(error, 'DeleteMessage', this.queueUrl, this.endpoint)
    }
  }

  async deleteBatch(receiptHandles: string[]): Promise<void> {
    const entries = receiptHandles.map((handle, index) => ({Id: String(index), ReceiptHandle: handle}))
    const failures: BatchFailure[] = []
    for (const batch of chunks(entries)) {
      let pending = batch
      for (let attempt = 1; pending.length > 0; attempt++) {
        const out = await this.call('DeleteMessageBatch', () =>
          this.client.send(new this.sdk.DeleteMessageBatchCommand({QueueUrl: this.queueUrl, Entries: pending})),
        )
        const retry: typeof entries = []
        for (const failed of out.Failed ?? []) {
          const index = Number(failed.Id)
          const entry = pending.find((e) => e.Id === failed.Id)
          if (entry && !failed.SenderFault && attempt < BATCH_ATTEMPTS) retry.push(entry)
          else failures.push({index, code: failed.Code ?? 'Failed', message: failed.Message ?? 'delete failed'})
        }
        if (retry.length > 0) {
          this.log.debug('retrying failed delete batch entries', {count: retry.length, attempt})
          await pause(100 * 2 ** attempt)
        }
        pending = retry
      }
    }
    if (failures.length > 0) throw new QueueBatchError('delete', failures.sort((a, b) => a.index - b.index))
  }

  /** A visibility change: SQS has already counted the receive toward its redrive policy (see the top of this file). */
  async release(receiptHandle: string, delaySeconds = 0): Promise<void> {
    await this.changeVisibility(receiptHandle, delaySeconds)
  }

  async changeVisibility(receiptHandle: string, seconds: number): Promise<void> {
    checkVisibilityTimeout(seconds)
    try {
      await this.client.send(
        new this.sdk.ChangeMessageVisibilityCommand({QueueUrl: this.queueUrl, ReceiptHandle: receiptHandle, VisibilityTimeout: seconds}),
      )
    } catch (error) {
      const name = awsErrorName(error)
      if (name === 'ReceiptHandleIsInvalid' || name === 'MessageNotInflight') throw new StaleReceiptError(receiptHandle)
      throw sqsError(error, 'ChangeMessageVisibility', this.queueUrl, this.endpoint)
    }
  }

  private attributes(names: string[], queueUrl = this.queueUrl): Promise<Record<string, string>> {
    return this.call('GetQueueAttributes', async () => {
      const out = await this.client.send(new this.sdk.GetQueueAttributesCommand({QueueUrl: queueUrl, AttributeNames: names as never}))
      return out.Attributes ?? {}
    })
  }

  /** The dead-letter queue: options.deadLetterUrl, else the RedrivePolicy's target (looked up once). */
  private deadLetterQueue(): Promise<DeadLetterTarget | null> {
    this.deadLetterTarget ??= (async () => {
      if (this.options.deadLetterUrl) return {url: this.options.deadLetterUrl}
      const attributes = await this.attributes(['RedrivePolicy', 'QueueArn'])
      if (attributes.QueueArn) this.ownArn ??= Promise.resolve(attributes.QueueArn)
      const policy = parseRedrivePolicy(attributes.RedrivePolicy)
      const parts = policy ? parseArn(policy.arn) : undefined
      if (!policy || !parts) return null
      const out = await this.call('GetQueueUrl', () =>
        this.client.send(new this.sdk.GetQueueUrlCommand({QueueName: parts.name, QueueOwnerAWSAccountId: parts.account})),
      )
      return out.QueueUrl ? {url: out.QueueUrl, arn: policy.arn, maxReceiveCount: policy.maxReceiveCount} : null
    })().catch((error: unknown) => {
      this.deadLetterTarget = undefined // a transient failure is looked up again next time
      throw error
    })
    return this.deadLetterTarget
  }

  /** The fix an operator needs when this queue has no dead-letter queue. */
  private noDeadLetterQueue(what: string): NoDeadLetterQueueError {
    return new NoDeadLetterQueueError(
      `${this.queueUrl} has no dead-letter queue (no RedrivePolicy), so ${what}`,
      `give it one (aws sqs set-queue-attributes --queue-url ${this.queueUrl} --attributes '{"RedrivePolicy":"{\\"deadLetterTargetArn\\":\\"<DLQ ARN>\\",\\"maxReceiveCount\\":\\"5\\"}"}') or pass --dead-letter-queue URL`,
    )
  }

  /** Looks the dead-letter queue up now; none is a usage error (exit 2) with the fix. */
  async requireDeadLetterQueue(): Promise<void> {
    if (!(await this.deadLetterQueue())) throw this.noDeadLetterQueue('a worker cannot set a message aside and refuses to start')
  }

  async maxAttempts(): Promise<number | undefined> {
    return (await this.deadLetterQueue().catch(() => null))?.maxReceiveCount
  }

  /** SendMessage to the dead-letter queue with the reason, then DeleteMessage here. */
  async deadLetter(message: QueueMessage, reason: string): Promise<'dead-letter-queue' | 'redrive-policy'> {
    const target = await this.deadLetterQueue()
    if (!target) throw this.noDeadLetterQueue('a message cannot be set aside; it stays in the queue')
    const attributes: Record<string, {DataType: string; StringValue: string}> = {}
    for (const [key, value] of Object.entries(message.attributes)) {
      if (key !== DEAD_REASON_ATTRIBUTE && key !== DEAD_FROM_ATTRIBUTE && key !== DEAD_AT_ATTRIBUTE) attributes[key] = {DataType: 'String', StringValue: value}
    }
    // The message's own attributes come first (a redrive puts them back); ours fill what is left of SQS's 10.
    const ours: Array<[string, string]> = [
      [DEAD_REASON_ATTRIBUTE, reason.slice(0, 1024) || 'dead'],
      [DEAD_FROM_ATTRIBUTE, this.queueUrl],
      [DEAD_AT_ATTRIBUTE, new Date().toISOString()],
    ]
    for (const [key, value] of ours) if (Object.keys(attributes).length < MAX_ATTRIBUTES) attributes[key] = {DataType: 'String', StringValue: value}
    const dlqFifo = target.url.endsWith('.fifo')
    await this.call('SendMessage', () =>
      this.client.send(
        new this.sdk.SendMessageCommand({
          QueueUrl: target.url,
          MessageBody: message.body,
          MessageAttributes: attributes,
          // The same message dead-lettered twice (a retried call) is stored once in a FIFO DLQ.
          ...(dlqFifo ? {MessageGroupId: fifoGroup(message.groupId), MessageDeduplicationId: message.id} : {}),
        }),
      ),
    )
    await this.delete(message.receiptHandle)
    return 'dead-letter-queue'
  }

  async peek(): Promise<QueueMessage[]> {
    throw new UsageError('SQS cannot show messages without receiving them', 'use "cistern queue receive" (they come back after the visibility timeout)')
  }

  async stats(): Promise<QueueStats> {
    const attributes = await this.attributes([
      'ApproximateNumberOfMessages',
      'ApproximateNumberOfMessagesNotVisible',
      'ApproximateNumberOfMessagesDelayed',
    ])
    let dead = -1
    const target = await this.deadLetterQueue().catch(() => null)
    if (target) {
      const dlq = await this.attributes(['ApproximateNumberOfMessages'], target.url).catch(() => undefined)
      if (dlq?.ApproximateNumberOfMessages !== undefined) dead = Number(dlq.ApproximateNumberOfMessages)
    }
    return {
      visible: Number(attributes.ApproximateNumberOfMessages ?? -1),
      inFlight: Number(attributes.ApproximateNumberOfMessagesNotVisible ?? -1),
      delayed: Number(attributes.ApproximateNumberOfMessagesDelayed ?? -1),
      dead,
    }
  }

  async purge(): Promise<number> {
    await this.call('PurgeQueue', () => this.client.send(new this.sdk.PurgeQueueCommand({QueueUrl: this.queueUrl})))
    return -1
  }

  /** Moves the dead-letter queue back: a message move task (returns -1: started), else a receive/send/delete loop. */
  async redrive(): Promise<number> {
    const target = await this.deadLetterQueue()
    if (!target) throw this.noDeadLetterQueue('there is nothing to redrive')
    const waiting = Number((await this.attributes(['ApproximateNumberOfMessages'], target.url)).ApproximateNumberOfMessages ?? 0)
    if (waiting === 0) return 0
    const dlqArn = target.arn ?? (await this.attributes(['QueueArn'], target.url)).QueueArn
    const ownArn = await (this.ownArn ??= this.attributes(['QueueArn']).then((a) => a.QueueArn))
    if (dlqArn) {
      try {
        await this.client.send(new this.sdk.StartMessageMoveTaskCommand({SourceArn: dlqArn, ...(ownArn ? {DestinationArn: ownArn} : {})}))
        // AWS moves them in the background: how many have moved is not known yet.
        return -1
      } catch (error) {
        const name = awsErrorName(error)
        if (name !== 'UnsupportedOperation' && name !== 'InvalidAction' && !/not (implemented|supported)/i.test(errorMessage(error))) {
          throw sqsError(error, 'StartMessageMoveTask', this.queueUrl, this.endpoint)
        }
        this.log.debug('StartMessageMoveTask unavailable: moving messages one batch at a time', {error: errorMessage(error)})
      }
    }
    return this.moveBack(target.url)
  }

  private async moveBack(dlqUrl: string): Promise<number> {
    let moved = 0
    // Bounded: at most the messages that were there, plus slack for the approximate count.
    for (let round = 0; round < 10_000; round++) {
      const out = await this.call('ReceiveMessage', () =>
        this.client.send(
          new this.sdk.ReceiveMessageCommand({
            QueueUrl: dlqUrl,
            MaxNumberOfMessages: 10,
            WaitTimeSeconds: 0,
            VisibilityTimeout: 60,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
          }),
        ),
      )
      const messages = (out.Messages ?? []).map(fromSqsMessage)
      if (messages.length === 0) break
      await this.sendBatch(
        messages.map((m) => {
          const {[DEAD_REASON_ATTRIBUTE]: _reason, [DEAD_FROM_ATTRIBUTE]: _from, [DEAD_AT_ATTRIBUTE]: _at, ...attributes} = m.attributes
          return {body: m.body, attributes, groupId: m.groupId, deduplicationId: this.fifo ? `${m.id}-redrive` : undefined}
        }),
      )
      await this.call('DeleteMessageBatch', () =>
        this.client.send(
          new this.sdk.DeleteMessageBatchCommand({QueueUrl: dlqUrl, Entries: messages.map((m, i) => ({Id: String(i), ReceiptHandle: m.receiptHandle}))}),
        ),
      )
      moved += messages.length
    }
    return moved
  }

  async close(): Promise<void> {
    this.closing.abort()
    this.client.destroy()
  }
}
