/**
 * The spigot's queue message, shared by the spigot (intake, drain, Lambda) and hooks' queue action
 * (format spigot), which fills the spigot's queue. It keeps the original Lambda's shape — the API Gateway
 * mapping-template event `{spigot_state, from_queue, body, headers}` with `body` parsed — so the
 * original `send_from_queue` Lambda can drain what cistern queues and cistern can drain what the
 * original queued. cistern adds the raw request bytes (`raw_body`, base64) so a replay is
 * byte-identical and the X-Hub-Signature(-256) still verifies.
 */
import {CisternError} from './errors.js'

export interface SpigotMessage {
  /** 'ON' or 'OFF' (kept as the sender wrote it). */
  spigot_state: string
  /** 'true' or 'false' (kept as the sender wrote it). */
  from_queue: string
  /** The parsed JSON payload (what the original Lambda re-serialised). */
  body: unknown
  /** The kept GitHub headers, original casing. */
  headers: Record<string, string>
  /** cistern: the request bytes exactly as GitHub sent them, base64. */
  raw_body?: string
  /** cistern: a named Jenkins target when the route table has several. */
  target?: string
  /** cistern: ISO time the webhook reached the spigot. */
  received_at?: string
  /** cistern: S3 pointer when the payload was larger than the queue allows. */
  large_payload?: {bucket: string; key: string; bytes: number}
}

/** Headers the spigot keeps and replays (DESIGN.md). */
export const KEPT_HEADERS = [
  'X-GitHub-Event',
  'X-GitHub-Delivery',
  'X-GitHub-Hook-ID',
  'X-Hub-Signature',
  'X-Hub-Signature-256',
  'Content-Type',
  'User-Agent',
] as const

/** Header lookup that ignores case (API Gateway, fastify and GitHub disagree on casing). */
export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const wanted = name.toLowerCase()
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === wanted) return Array.isArray(value) ? value[0] : value
  }
  return undefined
}

/** The kept headers of a request, with their canonical names. */
export function keptHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of KEPT_HEADERS) {
    const value = header(headers, name)
    if (value !== undefined) out[name] = value
  }
  return out
}

/** The bytes to replay: the raw body when cistern queued it, else the original Lambda's re-serialised body. */
export function replayBytes(message: SpigotMessage): Buffer {
  if (message.raw_body !== undefined) return Buffer.from(message.raw_body, 'base64')
  return Buffer.from(typeof message.body === 'string' ? message.body : JSON.stringify(message.body))
}

/** Parse a queued body; throws (SyntaxError, or a CisternError) on anything that is not a spigot message. */
export function decodeMessage(text: string): SpigotMessage {
  const value = JSON.parse(text) as Partial<SpigotMessage> | null
  if (!value || typeof value !== 'object' || !('body' in value) || !value.headers || typeof value.headers !== 'object') {
    throw new CisternError('not a spigot message: expected {spigot_state, from_queue, body, headers}')
  }
  return value as SpigotMessage
}

/**
 * A webhook taken in by something other than the spigot's intake (hooks' queue action) as a spigot
 * message: the raw bytes kept for a byte-identical replay, the payload parsed when it is JSON.
 */
export function webhookMessage(raw: Buffer, headers: Record<string, string | string[] | undefined>, receivedAt: Date): SpigotMessage {
  const text = raw.toString('utf8')
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // Not JSON: the original Lambda would have refused it; keep the text.
  }
  return {spigot_state: 'OFF', from_queue: 'false', body, headers: keptHeaders(headers), raw_body: raw.toString('base64'), received_at: receivedAt.toISOString()}
}

export function encodeMessage(message: SpigotMessage): string {
  return JSON.stringify(message)
}

/** The FIFO group: the repository's full name, so replay keeps each repository's order. */
export function groupOf(message: SpigotMessage): string {
  const body = message.body as {repository?: {full_name?: string}} | undefined
  return body?.repository?.full_name ?? 'no-repository'
}
