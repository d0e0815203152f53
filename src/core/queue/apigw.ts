/**
 * The status-queue service's API Gateway facade over SQS: `GET /message` receives,
 * `DELETE /message?receiptHandle=…` deletes, `x-api-key` authenticates. It can do nothing else:
 * send/peek/purge/redrive are refused, and changeVisibility/release are no-ops (the message simply
 * comes back after the facade's visibility timeout; the SQS behind it counts every receive).
 *
 * Dead letters cannot go to the SQS redrive policy behind the facade without holding the message's
 * FIFO group (EventBridge puts every event in one group) for up to maxReceiveCount timeouts. So
 * deadLetter() keeps the whole message in an embedded dead-letter store (by default the data dir's
 * cistern.db, queue `apigw-dead.<api>`), then DELETEs it from the facade so its group flows.
 * peekDead() and stats().dead read that store.
 *
 * API Gateway answers 200 even when SQS failed (GET then says `messages: null`; DELETE carries the
 * SQS error in the body), and 403 {"message":"Forbidden"} for a bad key.
 */
import {createHash} from 'node:crypto'

import {CisternError, UsageError, errorMessage} from '../errors.js'
import {type Logger, createLogger, silentLogger} from '../log.js'
import {defaultDbPath} from '../paths.js'
import {registerSecret} from '../secrets.js'
import {QueueBatchError, StaleReceiptError} from './errors.js'
import type {DeadLetterStore} from './sqlite.js'
import type {BatchFailure, OpenQueueOptions, Queue, QueueCapabilities, QueueMessage, QueueStats, ReceiveOptions, SendResult} from './types.js'
import {type SqsMessageShape, fromSqsMessage} from './sqs-message.js'
import {LIMITS, linkSignals, pause, receiveParams} from './validate.js'

/** Each HTTP call gets this long (API Gateway itself gives up at 29 s). */
const REQUEST_TIMEOUT_MS = 30_000
/** Parallel DELETEs in a deleteBatch. */
const DELETE_CONCURRENCY = 5
const POLL_MIN_MS = 250
const POLL_MAX_MS = 2000

/** `apigw+https://…/<stage>/` → the https base URL (no trailing slash). */
export function facadeBase(url: string): string {
  const raw = url.replace(/^apigw\+/, '')
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new UsageError(`"${url}" is not a valid facade URL`, 'use apigw+https://<api>.execute-api.<region>.amazonaws.com/<stage>/')
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new UsageError(`"${url}" is not a valid facade URL`, 'use apigw+https://<api>.execute-api.<region>.amazonaws.com/<stage>/')
  }
  if (parsed.username || parsed.password || parsed.search) {
    throw new UsageError(`the facade URL "${parsed.origin}${parsed.pathname}" must not carry credentials or a query`, 'give the API key in API_KEY')
  }
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`
}

/**
 * `sqlite:<data dir>/cistern.db#apigw-dead.<host>-<stage>`: where the dead letters of the facade at
 * `base` are kept unless OpenQueueOptions.deadLetterUrl names another sqlite: URL.
 */
export function facadeDeadLetterUrl(base: string, env: NodeJS.ProcessEnv = process.env): string {
  const {host, pathname} = new URL(base)
  let slug = `${host}${pathname}`.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/-+$/, '')
  // Queue names are at most 80 characters: a long one keeps its start and a hash of the whole.
  if (slug.length > 68) slug = `${slug.slice(0, 55)}-${createHash('sha256').update(base).digest('hex').slice(0, 12)}`
  return `sqlite:${defaultDbPath(env)}#apigw-dead.${slug}`
}

export async function openFacadeQueue(url: string, options: OpenQueueOptions = {}): Promise<Queue> {
  const base = facadeBase(url)
  const apiKey = options.apiKey ?? process.env.API_KEY
  if (!apiKey) throw new UsageError(`no API key for the facade ${base}`, 'set API_KEY (the x-api-key of the API Gateway usage plan)')
  registerSecret(apiKey)
  const deadLetterUrl = options.deadLetterUrl ?? facadeDeadLetterUrl(base)
  if (!deadLetterUrl.startsWith('sqlite:')) {
    throw new UsageError(`the facade's dead letters are kept in an embedded queue, not at ${deadLetterUrl}`, 'give --dead-letter-queue a sqlite:<path>#<name> URL, or leave it out (the data dir is used)')
  }
  return new FacadeQueue(`apigw+${base}/`, base, apiKey, deadLetterUrl, options.log ?? silentLogger, options.log ?? createLogger({level: 'warn'}))
}

/** The SQS error an API Gateway 200 may carry (JSON or the XML SQS answered with). */
function sqsErrorIn(text: string): {code: string; message: string} | undefined {
  try {
    const json = JSON.parse(text) as Record<string, unknown>
    const error = (json.Error ?? (json.ErrorResponse as Record<string, unknown> | undefined)?.Error) as {Code?: string; Message?: string} | undefined
    if (error && (error.Code || error.Message)) return {code: error.Code ?? 'Error', message: error.Message ?? ''}
    if (typeof json.__type === 'string') {
      const message = json.message ?? json.Message
      return {code: json.__type.split('#').at(-1) ?? json.__type, message: typeof message === 'string' ? message : ''}
    }
    return undefined
  } catch {
    const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1]
    return code ? {code, message: /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? ''} : undefined
  }
}

class FacadeQueue implements Queue {
  readonly kind = 'apigw' as const
  readonly capabilities: QueueCapabilities = {send: false, fifo: false, groups: false, maxBodyBytes: 262_144, deadLetter: true, peek: false}
  private readonly closing = new AbortController()
  /** The dead-letter store, opened on first use (a read does not create it). */
  private store?: DeadLetterStore
  private storeOpening: Promise<unknown> = Promise.resolve()
  /**
   * The facade decides how many messages a GET returns. Those beyond maxMessages wait here for
   * the next receive, while their lease is young enough to be worth handing out.
   */
  private buffer: Array<{message: QueueMessage; at: number}> = []

  constructor(
    readonly url: string,
    private readonly base: string,
    private readonly apiKey: string,
    readonly deadLetterUrl: string,
    private readonly log: Logger,
    private readonly loud: Logger,
  ) {}

  /** The store, opened once (openings queue behind each other); `create` false leaves a missing one missing. */
  private deadLetters(create: boolean): Promise<DeadLetterStore | undefined> {
    const next = this.storeOpening.then(async () => (this.store ??= await this.openStore(create)))
    this.storeOpening = next.catch(() => undefined)
    return next
  }

  private async openStore(create: boolean): Promise<DeadLetterStore | undefined> {
    const {openSqliteQueue} = await import('./sqlite.js')
    try {
      return await openSqliteQueue(this.deadLetterUrl, {mustExist: !create, maxReceiveCount: 0, log: this.log})
    } catch (error) {
      if (!create && error instanceof UsageError) return undefined // nothing kept yet
      throw error
    }
  }

  private async request(method: 'GET' | 'DELETE', path: string, signal?: AbortSignal): Promise<string> {
    const timeout = new AbortController()
    const timer = setTimeout(() => timeout.abort(), REQUEST_TIMEOUT_MS)
    const linked = linkSignals(this.closing.signal, signal, timeout.signal)
    try {
      let response: Response
      try {
        response = await fetch(`${this.base}${path}`, {method, headers: {'x-api-key': this.apiKey, accept: 'application/json'}, signal: linked.signal})
      } catch (error) {
        if (signal?.aborted || this.closing.signal.aborted) throw error
        const why = timeout.signal.aborted ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : errorMessage((error as Error).cause ?? error)
        throw new CisternError(`the facade ${this.base} did not answer ${method} /message: ${why}`, {fix: 'check the URL and the network', cause: error})
      }
      const text = await response.text()
      if (response.status === 403) {
        if (/missing authentication token/i.test(text)) {
          throw new UsageError(`the facade ${this.base} has no ${method} /message (403 Missing Authentication Token)`, 'check the stage in the URL')
        }
        throw new UsageError(`the facade ${this.base} refused the API key (403)`, 'check API_KEY against the API Gateway usage plan')
      }
      if (!response.ok) {
        throw new CisternError(`the facade ${this.base} answered ${method} /message with HTTP ${response.status}: ${text.slice(0, 200)}`)
      }
      return text
    } finally {
      clearTimeout(timer)
      linked.dispose()
    }
  }

  async send(): Promise<SendResult> {
    throw new UsageError('the API Gateway facade cannot send messages (it only receives and deletes)', 'send to the SQS queue behind it instead')
  }

  async sendBatch(): Promise<SendResult[]> {
    return [await this.send()]
  }

  private async fetchMessages(signal: AbortSignal): Promise<QueueMessage[]> {
    const text = await this.request('GET', '/message', signal)
    let json: {ReceiveMessageResponse?: {ReceiveMessageResult?: {messages?: SqsMessageShape[] | null}}} | null
    try {
      json = JSON.parse(text) as typeof json
    } catch {
      throw new CisternError(`the facade ${this.base} answered GET /message with something that is not JSON: ${text.slice(0, 120)}`)
    }
    const result = json?.ReceiveMessageResponse?.ReceiveMessageResult
    if (!result || !('messages' in result)) {
      const error = sqsErrorIn(text)
      throw new CisternError(`the facade ${this.base} answered GET /message without ReceiveMessageResponse${error ? `: ${error.code} ${error.message}` : ''}`)
    }
    // messages: null is an empty queue — or an SQS error API Gateway hid behind a 200.
    return (result.messages ?? []).map(fromSqsMessage)
  }

  async receive(options: ReceiveOptions = {}): Promise<QueueMessage[]> {
    const {maxMessages, waitSeconds} = receiveParams(options, LIMITS.defaultVisibilityTimeout)
    const {signal, dispose} = linkSignals(options.signal, this.closing.signal)
    try {
      return await this.receiveUntil(signal, maxMessages, waitSeconds)
    } finally {
      dispose()
    }
  }

  private async receiveUntil(signal: AbortSignal, maxMessages: number, waitSeconds: number): Promise<QueueMessage[]> {
    const deadline = Date.now() + waitSeconds * 1000
    // Buffered messages whose lease is more than half gone are dropped: they come back on their own.
    const fresh = Date.now() - (LIMITS.defaultVisibilityTimeout * 1000) / 2
    this.buffer = this.buffer.filter((entry) => entry.at > fresh)
    let interval = POLL_MIN_MS
    for (;;) {
      if (this.buffer.length > 0) return this.buffer.splice(0, maxMessages).map((entry) => entry.message)
      if (signal.aborted) return []
      let messages: QueueMessage[]
      try {
        messages = await this.fetchMessages(signal)
      } catch (error) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the signal may abort during the await above
        if (signal.aborted) return []
        throw error
      }
      if (messages.length > 0) {
        const at = Date.now()
        this.buffer.push(...messages.map((message) => ({message, at})))
        continue
      }
      const left = deadline - Date.now()
      if (left <= 0) return []
      await pause(Math.min(interval, left), signal)
      interval = Math.min(interval * 2, POLL_MAX_MS)
    }
  }

  async delete(receiptHandle: string): Promise<void> {
    this.buffer = this.buffer.filter((entry) => entry.message.receiptHandle !== receiptHandle)
    const text = await this.request('DELETE', `/message?receiptHandle=${encodeURIComponent(receiptHandle)}`)
    const error = sqsErrorIn(text)
    if (!error) return
    if (/ReceiptHandleIsInvalid|InvalidParameterValue/i.test(error.code)) throw new StaleReceiptError(receiptHandle)
    throw new CisternError(`the facade ${this.base} could not delete a message: ${error.code} ${error.message}`)
  }

  async deleteBatch(receiptHandles: string[]): Promise<void> {
    const failures: BatchFailure[] = []
    const pending = receiptHandles.entries() // shared by the workers: each takes the next handle
    const worker = async () => {
      for (const [index, handle] of pending) {
        try {
          await this.delete(handle)
        } catch (error) {
          if (error instanceof UsageError && !(error instanceof StaleReceiptError)) throw error // bad key: not per entry
          failures.push({index, code: error instanceof StaleReceiptError ? 'ReceiptHandleIsInvalid' : 'Failed', message: errorMessage(error)})
        }
      }
    }
    await Promise.all(Array.from({length: Math.min(DELETE_CONCURRENCY, receiptHandles.length)}, worker))
    if (failures.length > 0) throw new QueueBatchError('delete', failures.sort((a, b) => a.index - b.index))
  }

  /**
   * Not supported by the facade: a no-op, the message reappears after the facade's own timeout,
   * and the SQS behind it has counted the receive (as on SQS, consumers avoid receiving what they
   * will not attempt).
   */
  async release(receiptHandle: string, delaySeconds = 0): Promise<void> {
    this.buffer = this.buffer.filter((entry) => entry.message.receiptHandle !== receiptHandle)
    await this.changeVisibility(receiptHandle, delaySeconds)
  }

  async changeVisibility(receiptHandle: string, seconds: number): Promise<void> {
    this.log.debug('the API Gateway facade cannot change visibility: the message comes back after its timeout', {seconds, receiptHandle: receiptHandle.slice(0, 12)})
  }

  /** Kept (durably) in the dead-letter store first, then deleted from the facade so its group flows. */
  async deadLetter(message: QueueMessage, reason: string): Promise<'dead-letter-queue' | 'redrive-policy'> {
    const store = await this.deadLetters(true)
    if (!store) throw new CisternError(`the dead-letter store ${this.deadLetterUrl} could not be opened`) // create: true opens or throws
    await store.keepDead(message, reason)
    try {
      await this.delete(message.receiptHandle)
    } catch (error) {
      if (!(error instanceof StaleReceiptError)) throw error
      // Kept, but still in SQS (its lease lapsed): it comes back and is set aside again, kept once.
      this.loud.warn('dead letter kept, but the facade did not delete it (its lease had lapsed): it will be received again', {
        messageId: message.id,
        store: this.deadLetterUrl,
      })
    }
    return 'dead-letter-queue'
  }

  async maxAttempts(): Promise<number | undefined> {
    return undefined // the redrive policy behind the facade is not visible through it
  }

  async peek(): Promise<QueueMessage[]> {
    throw new UsageError('the API Gateway facade cannot show messages without receiving them', 'use "cistern queue receive" (its dead letters: "cistern queue peek --dead")')
  }

  /** The dead letters kept for this facade, the reason in attributes['cistern.deadReason']. */
  async peekDead(max = 10): Promise<QueueMessage[]> {
    const store = await this.deadLetters(false)
    return store ? store.peekDead(max) : []
  }

  /** Only the dead letters are known (the facade cannot count the queue behind it). */
  async stats(): Promise<QueueStats> {
    const store = await this.deadLetters(false)
    return {visible: -1, inFlight: -1, delayed: -1, dead: store ? (await store.stats()).dead : 0}
  }

  async purge(): Promise<number> {
    throw new UsageError('the API Gateway facade cannot purge', 'purge the SQS queue behind it')
  }

  async redrive(): Promise<number> {
    throw new UsageError(
      `the API Gateway facade cannot send, so its dead letters cannot go back through it (they are kept in ${this.deadLetterUrl})`,
      `"cistern queue peek --dead ${this.url} --json" shows them; send their bodies to the SQS queue behind the facade, then empty the store with "cistern queue redrive" and "cistern queue purge" on ${this.deadLetterUrl}`,
    )
  }

  async close(): Promise<void> {
    this.closing.abort()
    this.buffer = []
    await this.storeOpening
    await this.store?.close()
  }
}
