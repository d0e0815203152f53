/**
 * The logic behind `cistern queue …` (the commands only parse flags and print): resolving the
 * queue URL, reading a body, rendering messages, and the purge confirmation.
 */
import {isUtf8} from 'node:buffer'
import {readFile} from 'node:fs/promises'
import {createInterface} from 'node:readline/promises'

import {UsageError, errorMessage} from '../errors.js'
import type {Logger} from '../log.js'
import {openQueue} from './index.js'
import type {Queue, QueueMessage, QueueStats, SendInput, SendResult} from './types.js'
import {chunks} from './validate.js'

export interface OperatorTarget {
  /** The URL argument, else --queue / CISTERN_QUEUE. */
  url?: string
  region?: string
  profile?: string
  log?: Logger
}

/** Opens the queue an operator command names; read-only commands never create anything. */
export async function operatorQueue(target: OperatorTarget, mode: 'create' | 'existing'): Promise<Queue> {
  if (!target.url) {
    throw new UsageError('no queue URL given', 'pass it as the first argument (or set CISTERN_QUEUE), e.g. sqlite:./cistern.db#jobs')
  }
  return openQueue(target.url, {region: target.region, profile: target.profile, mustExist: mode === 'existing', log: target.log})
}

/** A message as the operator commands print it (--json): no Date objects, no empty fields. */
export interface MessageView {
  id: string
  body: string
  receiveCount: number
  /** Receives that counted as attempts (the embedded queue: not the released ones). */
  attempts?: number
  receiptHandle?: string
  sentAt?: string
  groupId?: string
  deduplicationId?: string
  attributes: Record<string, string>
  deleted?: boolean
}

export function messageView(message: QueueMessage): MessageView {
  const view: MessageView = {id: message.id, body: message.body, receiveCount: message.receiveCount, attributes: message.attributes}
  if (message.attempts !== undefined) view.attempts = message.attempts
  if (message.receiptHandle) view.receiptHandle = message.receiptHandle
  if (message.sentAt) view.sentAt = message.sentAt.toISOString()
  if (message.groupId) view.groupId = message.groupId
  if (message.deduplicationId) view.deduplicationId = message.deduplicationId
  return view
}

/** Human rendering: a header line per message, then its body as is. */
export function renderMessages(messages: MessageView[]): string {
  if (messages.length === 0) return 'no messages'
  return messages
    .map((m) => {
      const facts = [`received ${m.receiveCount}×`]
      if (m.attempts !== undefined && m.attempts !== m.receiveCount) facts.push(`${m.attempts} attempt${m.attempts === 1 ? '' : 's'}`)
      if (m.groupId) facts.push(`group ${m.groupId}`)
      if (m.sentAt) facts.push(`sent ${m.sentAt}`)
      for (const [key, value] of Object.entries(m.attributes)) facts.push(`${key}=${value}`)
      if (m.deleted) facts.push('deleted')
      return `── ${m.id} (${facts.join(', ')})\n${m.body}`
    })
    .join('\n')
}

export function renderStats(stats: QueueStats): string {
  const n = (value: number) => (value < 0 ? 'unknown' : String(value))
  const parts = [`visible ${n(stats.visible)}`, `in flight ${n(stats.inFlight)}`, `delayed ${n(stats.delayed)}`, `dead ${n(stats.dead)}`]
  if (stats.oldestAgeSeconds !== undefined) parts.push(`oldest ${stats.oldestAgeSeconds} s`)
  if (stats.nextVisibleAt) parts.push(`next visible ${stats.nextVisibleAt.toISOString()}`)
  return parts.join('  ')
}

export interface BodySource {
  body?: string
  file?: string
  stdin?: NodeJS.ReadableStream & {isTTY?: boolean}
}

/** The body from --body, --file (- is stdin) or piped stdin, byte for byte. */
export async function readBody(source: BodySource): Promise<string> {
  const given = [source.body !== undefined, source.file !== undefined].filter(Boolean).length
  if (given > 1) throw new UsageError('give the body with only one of --body and --file')
  if (source.body !== undefined) return source.body
  const stdin = source.stdin ?? process.stdin
  if (source.file !== undefined && source.file !== '-') {
    let bytes: Buffer
    try {
      bytes = await readFile(source.file)
    } catch (error) {
      throw new UsageError(`cannot read --file ${source.file}: ${errorMessage(error)}`)
    }
    return utf8Text(bytes, `--file ${source.file}`)
  }
  if (stdin.isTTY) throw new UsageError('no message body', 'give --body TEXT, --file PATH, or pipe the body on stdin')
  const parts: Buffer[] = []
  for await (const chunk of stdin) parts.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer))
  return utf8Text(Buffer.concat(parts), 'the body on stdin')
}

/** Queue bodies are text (SQS carries UTF-8): invalid bytes would silently become U+FFFD, so refuse them. */
function utf8Text(bytes: Buffer, where: string): string {
  if (isUtf8(bytes)) return bytes.toString('utf8')
  throw new UsageError(`${where} is not valid UTF-8: a queue message is text`, 'send binary data base64-encoded, e.g. `base64 -w0 FILE | cistern queue send URL`')
}

/** `key=value` flags → attributes. */
export function parseAttributes(pairs: string[] = []): Record<string, string> | undefined {
  if (pairs.length === 0) return undefined
  const out: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new UsageError(`--attribute "${pair}" is not key=value`)
    out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}

/** Sends one message. */
export async function sendMessage(queue: Queue, input: SendInput): Promise<SendResult> {
  assertSendable(queue)
  return queue.send(input)
}

/** Sends every non-empty line as its own message (batched by 10). */
export async function sendLines(queue: Queue, body: string, template: Omit<SendInput, 'body'>): Promise<SendResult[]> {
  assertSendable(queue)
  const bodies = body.split(/\r?\n/).filter((line) => line.length > 0)
  if (bodies.length === 0) throw new UsageError('no message body', 'every line was empty')
  const results: SendResult[] = []
  for (const batch of chunks(bodies)) results.push(...(await queue.sendBatch(batch.map((b) => ({...template, body: b})))))
  return results
}

function assertSendable(queue: Queue): void {
  if (!queue.capabilities.send) throw new UsageError(`${queue.url} cannot be sent to (the API Gateway facade only receives and deletes)`)
}

/** Whether confirm() can ask: it reads stdin and asks on stderr, so both must be a terminal. */
export function canConfirm(): boolean {
  return process.stdin.isTTY && process.stderr.isTTY
}

/** Asks on the terminal; false unless the answer is y/yes. */
export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({input: process.stdin, output: process.stderr})
  try {
    const answer = await rl.question(`${question} [y/N] `)
    return /^y(es)?$/i.test(answer.trim())
  } finally {
    rl.close()
  }
}
