import {createHmac, timingSafeEqual} from 'node:crypto'

import {errorMessage} from '../core/errors.js'

/**
 * GitHub webhook parsing and verification, over the raw request bytes (never a re-serialised
 * body: a single changed byte breaks the signature Jenkins may check again).
 */

/** `sha256=<hex>`: what GitHub puts in X-Hub-Signature-256. */
export function signPayload(secret: string, raw: Buffer | string): string {
  return 'sha256=' + createHmac('sha256', secret).update(raw).digest('hex')
}

const SIGNATURE = /^sha256=([0-9a-f]{64})$/i

/** Constant-time check of X-Hub-Signature-256 against the raw bytes. */
export function verifySignature(secret: string, raw: Buffer, signatureHeader: string | undefined): boolean {
  if (!signatureHeader) return false
  const hex = SIGNATURE.exec(signatureHeader.trim())?.[1]
  if (hex === undefined) return false
  const expected = createHmac('sha256', secret).update(raw).digest()
  const given = Buffer.from(hex, 'hex')
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/** A JSON object as JSON.parse gives it. */
export type JsonObject = Record<string, unknown>

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * `text`: the JSON text that was parsed (the decoded body, or a form's `payload` field). It is valid
 * JSON whose value is `body`, so it can stand for the body in a message without serialising it again.
 */
export type ParsedPayload = {ok: true; body: JsonObject; form: boolean; text: string} | {ok: false; reason: string}

/**
 * The payload as JSON. GitHub sends `application/json`, or `application/x-www-form-urlencoded`
 * with the JSON in the `payload` field when the hook's content type is "form".
 */
export function parsePayload(raw: Buffer, contentType: string | undefined): ParsedPayload {
  const type = mediaType(contentType ?? '')
  if (raw.length === 0) return {ok: false, reason: 'empty body'}
  let text: string
  let form = false
  if (type === 'application/x-www-form-urlencoded') {
    const payload = new URLSearchParams(raw.toString('utf8')).get('payload')
    if (payload === null) return {ok: false, reason: 'form-encoded body without a payload field'}
    text = payload
    form = true
  } else if (type === '' || type === 'application/json' || type.endsWith('+json')) {
    text = raw.toString('utf8')
  } else {
    return {ok: false, reason: `unsupported content type "${type}" (GitHub sends application/json or application/x-www-form-urlencoded)`}
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (error) {
    return {ok: false, reason: `malformed JSON: ${errorMessage(error)}`}
  }
  if (!isJsonObject(body)) return {ok: false, reason: 'the payload is not a JSON object'}
  return {ok: true, body, form, text}
}

/** `application/json; charset=utf-8` → `application/json`. */
function mediaType(contentType: string): string {
  const semicolon = contentType.indexOf(';')
  return (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase()
}

/** What a payload says about itself, where GitHub puts it (every field optional: events differ). */
export interface PayloadFacts {
  /** `repository.full_name`: the queue group of the webhook (each repository keeps its order). */
  repository?: string
  action?: string
  /** The pull request or issue number. */
  number?: number
}

export function payloadFacts(body: JsonObject): PayloadFacts {
  const facts: PayloadFacts = {}
  const repository = body.repository
  if (isJsonObject(repository) && typeof repository.full_name === 'string') facts.repository = repository.full_name
  if (typeof body.action === 'string') facts.action = body.action
  if (typeof body.number === 'number') facts.number = body.number
  return facts
}

/** What identifies a webhook in logs: event, action, repository, number, delivery. */
export function describeWebhook(event: string, body: unknown, delivery: string | undefined): Record<string, unknown> {
  return aboutWebhook(event, isJsonObject(body) ? payloadFacts(body) : {}, delivery)
}

/** describeWebhook from facts already read. */
export function aboutWebhook(event: string, facts: PayloadFacts, delivery: string | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {event}
  if (facts.action !== undefined) out.action = facts.action
  if (facts.repository !== undefined) out.repository = facts.repository
  if (facts.number !== undefined) out.number = facts.number
  if (delivery) out.delivery = delivery
  return out
}

/** A webhook the intake took in: its signature checked, its payload parsed. */
export interface Webhook {
  event: string
  /** X-GitHub-Delivery (a manual redelivery keeps it). */
  delivery?: string
  /** The request bytes exactly as GitHub sent them (and signed). */
  raw: Buffer
  /** The payload's JSON text as received: the body, or a form's `payload` field. */
  text: string
  /** Form-encoded (`payload=…`): the text is not the request bytes. */
  form: boolean
  body: JsonObject
  facts: PayloadFacts
  /** GitHub's headers that travel with it (KEPT_HEADERS, canonical names). */
  headers: Record<string, string>
}
