/**
 * AWS SQS through @aws-sdk/client-sqs (imported lazily: commands on the embedded queue never load
 * it). Standard and FIFO (a name ending in .fifo). Batches wherever SQS has a batch call; a batch
 * entry that failed on the server side (SenderFault false) is retried, one the sender caused is
 * reported in a QueueBatchError.
 *
 * SQS cannot tell a stale receipt handle: a delete with an old one "succeeds" and deletes nothing
 * (so it never touches someone else's lease); only a malformed/unknown one is an error.
 */
import type {SQSClient, SendMessageBatchRequestEntry} from '@aws-sdk/client-sqs'

import {CisternError, UsageError, errorMessage} from '../errors.js'
import {type Logger, silentLogger} from '../log.js'
import {QueueBatchError, StaleReceiptError} from './errors.js'
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

/** sqs.<region>.amazonaws.com[.cn], sqs-fips.<region>…, <region>.queue.amazonaws.com (legacy). */
export function regionFromHost(host: string): string | undefined {
  return (
    /(?:^|\.)sqs(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$/.exec(host)?.[1] ??
    /^([a-z]{2}(?:-[a-z]+)+-\d+)\.queue\.amazonaws\.com$/.exec(host)?.[1]
  )
}

/** `arn:aws:sqs:<region>:<account>:<name>` → its parts. */
function parseArn(arn: string): {region: string; account: string; name: string} | undefined {
  const m = /^arn:[^:]+:sqs:([^:]*):(\d+):(.+)$/.exec(arn)
  return m ? {region: m[1]!, account: m[2]!, name: m[3]!} : undefined
}

function errorName(error: unknown): string {
  const e = error as {name?: string; Code?: string; code?: string}
  return e?.name ?? e?.Code ?? e?.code ?? ''
}

/** Turns an SDK error into one operator line with the fix where the operator can fix it. */
export function sqsError(error: unknown, what: string, queue: string): unknown {
  if (error instanceof CisternError) return error
  const name = errorName(error)
  const message = errorMessage(error)
  if (name === 'CredentialsProviderError' || /could not load credentials/i.test(message)) {
    return new UsageError(
      `no AWS credentials for ${what} on ${queue}`,
      'set AWS_PROFILE (or --profile), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where an instance/task role is available',
      error,
    )
  }
  if (/region is missing/i.test(message)) {
    return new UsageError(`no AWS region for ${queue}`, 'set AWS_REGION or --region, or use the full https://sqs.<region>.amazonaws.com/… URL', error)
  }
  if (name === 'QueueDoesNotExist' || name === 'AWS.SimpleQueueService.NonExistentQueue' || /NonExistentQueue|queue does not exist/i.test(message)) {
    return new UsageError(`SQS queue ${queue} does not exist`, 'check the queue URL/name, the account and the region (AWS_REGION)', error)
  }
  if (name === 'AccessDenied' || name === 'AccessDeniedException' || /not authorized|access denied/i.test(message)) {
    return new CisternError(`AWS refused ${what} on ${queue}: ${message}`, {fix: `grant sqs:${what} on the queue to these credentials`, cause: error})
  }
  if (name === 'InvalidClientTokenId' || name === 'UnrecognizedClientException' || name === 'SignatureDoesNotMatch' || name === 'ExpiredToken') {
    return new UsageError(`AWS rejected the credentials for ${queue} (${name})`, 'refresh or fix the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)', error)
  }
  return new CisternError(`SQS ${what} on ${queue} failed: ${name ? name + ': ' : ''}${message}`, {cause: error})
}

function isAbort(error: unknown, signal?: AbortSignal): boolean {
  return Boolean(signal?.aborted) || errorName(error) === 'AbortError'
}

/** Opens an SQS queue (sqs://<name> is resolved with GetQueueUrl now). */
export async function openSqsQueue(url: string, options: OpenQueueOptions = {}): Promise<Queue> {
  const target = parseSqsUrl(url)
  const sdk = await import('@aws-sdk/client-sqs')
  const endpoint = process.env.AWS_ENDPOINT_URL_SQS || process.env.AWS_ENDPOINT_URL || undefined
  const region = target.region ?? options.region
  const client = new sdk.SQSClient({
    ...(region ? {region} : {}),
    ...(endpoint ? {endpoint} : {}),
    // Only an explicit profile narrows the default credential chain (which also reads AWS_PROFILE).
    ...(options.profile ? {profile: options.profile} : {}),
  })
  let queueUrl = target.queueUrl
  if (!queueUrl) {
    try {
      queueUrl = (await client.send(new sdk.GetQueueUrlCommand({QueueName: target.name}))).QueueUrl
    } catch (error) {
      client.destroy()
      throw sqsError(error, 'GetQueueUrl', url)
    }
    if (!queueUrl) {
      client.destroy()
      throw new UsageError(`SQS queue ${url} does not exist`, 'check the queue name and the region (AWS_REGION)')
    }
  }
  if (options.visibilityTimeout !== undefined) checkVisibilityTimeout(options.visibilityTimeout)
  return new SqsQueue(sdk, client, url, queueUrl, target.name.endsWith('.fifo'), options)
}

interface DeadLetterTarget {
  url: string
  arn?: string
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
    private readonly options: OpenQueueOptions,
  ) {
    this.log = (options.log ?? silentLogger).child({queue: queueUrl})
    this.capabilities = {send: true, fifo, maxBodyBytes: SQS_MAX_BODY_BYTES, deadLetter: true, peek: false}
  }

  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw sqsError(error, what, this.queueUrl)
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
      // SQS FIFO needs a group; a message without one shares the queue-wide default group.
      entry.MessageGroupId = message.groupId || 'default'
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
    return {id: out.MessageId!}
  }

  async sendBatch(messages: SendInput[]): Promise<SendResult[]> {
    for (const message of messages) checkSend(message, SQS_HARD_MAX_BODY_BYTES)
    const entries = messages.map((message, index) => this.entry(message, String(index)))
    const results: SendResult[] = new Array(messages.length)
    const failures: BatchFailure[] = []
    for (const batch of chunks(entries)) {
      let pending = batch
      for (let attempt = 1; pending.length > 0; attempt++) {
        const out = await this.call('SendMessageBatch', () =>
          this.client.send(new this.sdk.SendMessageBatchCommand({QueueUrl: this.queueUrl, Entries: pending})),
        )
        for (const ok of out.Successful ?? []) results[Number(ok.Id)] = {id: ok.MessageId!}
        const retry: SendMessageBatchRequestEntry[] = []
        for (const failed of out.Failed ?? []) {
          const index = Number(failed.Id)
          if (!failed.SenderFault && attempt < BATCH_ATTEMPTS) retry.push(entries[index]!)
          else failures.push({index, code: failed.Code ?? 'Failed', message: failed.Message ?? 'send failed'})
        }
        if (retry.length > 0) {
          this.log.debug('retrying failed send batch entries', {count: retry.length, attempt})
          await pause(100 * 2 ** attempt)
        }
        pending = retry
      }
    }
    if (failures.length > 0) throw new QueueBatchError('send', failures.sort((a, b) => a.index - b.index))
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
    let onAbort: (() => void) | undefined
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
      throw sqsError(error, 'ReceiveMessage', this.queueUrl)
    } finally {
      signal.removeEventListener('abort', onAbort!)
      dispose()
    }
  }

  async delete(receiptHandle: string): Promise<void> {
    try {
      await this.client.send(new this.sdk.DeleteMessageCommand({QueueUrl: this.queueUrl, ReceiptHandle: receiptHandle}))
    } catch (error) {
      if (errorName(error) === 'ReceiptHandleIsInvalid') throw new StaleReceiptError(receiptHandle)
      throw sqsError(error, 'DeleteMessage', this.queueUrl)
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
          if (!failed.SenderFault && attempt < BATCH_ATTEMPTS) retry.push(entries[index]!)
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

  async release(receiptHandle: string, delaySeconds = 0): Promise<void> {
    // TODO(queue layer): a release must not count as an attempt (docs/delivery.md).
    await this.changeVisibility(receiptHandle, delaySeconds)
  }

  async changeVisibility(receiptHandle: string, seconds: number): Promise<void> {
    checkVisibilityTimeout(seconds)
    try {
      await this.client.send(
        new this.sdk.ChangeMessageVisibilityCommand({QueueUrl: this.queueUrl, ReceiptHandle: receiptHandle, VisibilityTimeout: seconds}),
      )
    } catch (error) {
      const name = errorName(error)
      if (name === 'ReceiptHandleIsInvalid' || name === 'MessageNotInflight') throw new StaleReceiptError(receiptHandle)
      throw sqsError(error, 'ChangeMessageVisibility', this.queueUrl)
    }
  }

  private attributes(names: string[], queueUrl = this.queueUrl): Promise<Record<string, string>> {
    return this.call('GetQueueAttributes', async () => {
      const out = await this.client.send(new this.sdk.GetQueueAttributesCommand({QueueUrl: queueUrl, AttributeNames: names as never}))
      return (out.Attributes ?? {}) as Record<string, string>
    })
  }

  /** The dead-letter queue: options.deadLetterUrl, else the RedrivePolicy's target (looked up once). */
  private deadLetterQueue(): Promise<DeadLetterTarget | null> {
    this.deadLetterTarget ??= (async () => {
      if (this.options.deadLetterUrl) return {url: this.options.deadLetterUrl}
      const attributes = await this.attributes(['RedrivePolicy', 'QueueArn'])
      if (attributes.QueueArn) this.ownArn ??= Promise.resolve(attributes.QueueArn)
      if (!attributes.RedrivePolicy) return null
      let arn: string | undefined
      try {
        arn = (JSON.parse(attributes.RedrivePolicy) as {deadLetterTargetArn?: string}).deadLetterTargetArn
      } catch {
        return null
      }
      const parts = arn ? parseArn(arn) : undefined
      if (!arn || !parts) return null
      const out = await this.call('GetQueueUrl', () =>
        this.client.send(new this.sdk.GetQueueUrlCommand({QueueName: parts.name, QueueOwnerAWSAccountId: parts.account})),
      )
      return out.QueueUrl ? {url: out.QueueUrl, arn} : null
    })().catch((error: unknown) => {
      this.deadLetterTarget = undefined // a transient failure is looked up again next time
      throw error
    })
    return this.deadLetterTarget
  }

  async deadLetter(message: QueueMessage, reason: string): Promise<'dead-letter-queue' | 'redrive-policy'> {
    const target = await this.deadLetterQueue()
    if (!target) {
      this.log.debug('no dead-letter queue known: leaving the message to the redrive policy', {id: message.id, reason})
      return 'redrive-policy'
    }
    const attributes: Record<string, {DataType: string; StringValue: string}> = {}
    for (const [key, value] of Object.entries(message.attributes)) attributes[key] = {DataType: 'String', StringValue: value}
    // SQS allows 10 message attributes; the reason yields to the message's own ones.
    if (Object.keys(attributes).length < 10) attributes[DEAD_REASON_ATTRIBUTE] = {DataType: 'String', StringValue: reason.slice(0, 1024) || 'dead'}
    const dlqFifo = /\.fifo$/.test(target.url)
    await this.call('SendMessage', () =>
      this.client.send(
        new this.sdk.SendMessageCommand({
          QueueUrl: target.url,
          MessageBody: message.body,
          ...(Object.keys(attributes).length > 0 ? {MessageAttributes: attributes} : {}),
          ...(dlqFifo ? {MessageGroupId: message.groupId || 'default', MessageDeduplicationId: message.id} : {}),
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

  /** Moves the dead-letter queue back: a message move task, else a receive/send/delete loop. */
  async redrive(): Promise<number> {
    const target = await this.deadLetterQueue()
    if (!target) {
      throw new UsageError(`${this.queueUrl} has no dead-letter queue`, 'give it a RedrivePolicy, or open it with deadLetterUrl')
    }
    const waiting = Number((await this.attributes(['ApproximateNumberOfMessages'], target.url)).ApproximateNumberOfMessages ?? 0)
    if (waiting === 0) return 0
    const dlqArn = target.arn ?? (await this.attributes(['QueueArn'], target.url)).QueueArn
    const ownArn = await (this.ownArn ??= this.attributes(['QueueArn']).then((a) => a.QueueArn))
    if (dlqArn) {
      try {
        await this.client.send(new this.sdk.StartMessageMoveTaskCommand({SourceArn: dlqArn, ...(ownArn ? {DestinationArn: ownArn} : {})}))
        return waiting
      } catch (error) {
        const name = errorName(error)
        if (name !== 'UnsupportedOperation' && name !== 'InvalidAction' && !/not (implemented|supported)/i.test(errorMessage(error))) {
          throw sqsError(error, 'StartMessageMoveTask', this.queueUrl)
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
          const {[DEAD_REASON_ATTRIBUTE]: _reason, ...attributes} = m.attributes
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
