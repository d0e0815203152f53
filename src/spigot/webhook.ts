import {createHmac, timingSafeEqual} from 'node:crypto'

/**
 * GitHub webhook parsing and verification, over the raw request bytes (never a re-serialised
 * body: a single changed byte breaks the signature Jenkins may check again).
 */

/** `sha256=<hex>`: what GitHub puts in X-Hub-Signature-256. */
export function signPayload(secret: string, raw: Buffer | string): string {
  return 'sha256=' + createHmac('sha256', secret).update(raw).digest('hex')
}

/** Constant-time check of X-Hub-Signature-256 against the raw bytes. */
export function verifySignature(secret: string, raw: Buffer, signatureHeader: string | undefined): boolean {
  if (!signatureHeader) return false
  const match = /^sha256=([0-9a-f]{64})$/i.exec(signatureHeader.trim())
  if (!match) return false
  const expected = createHmac('sha256', secret).update(raw).digest()
  const given = Buffer.from(match[1]!, 'hex')
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/** `text`: the JSON text that was parsed (the decoded body, or the form's `payload` field). */
export type ParsedPayload = {ok: true; body: unknown; form: boolean; text: string} | {ok: false; reason: string}

/**
 * The payload as JSON. GitHub sends `application/json`, or `application/x-www-form-urlencoded`
 * with the JSON in the `payload` field when the hook's content type is "form".
 */
export function parsePayload(raw: Buffer, contentType: string | undefined): ParsedPayload {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
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
    return {ok: false, reason: `malformed JSON: ${(error as Error).message}`}
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return {ok: false, reason: 'the payload is not a JSON object'}
  return {ok: true, body, form, text}
}

/** What identifies a webhook in logs: event, action, repository, delivery. */
export function describeWebhook(event: string, body: unknown, delivery: string | undefined): Record<string, unknown> {
  const payload = (body ?? {}) as {action?: unknown; repository?: {full_name?: unknown}; number?: unknown}
  const out: Record<string, unknown> = {event}
  if (typeof payload.action === 'string') out.action = payload.action
  if (typeof payload.repository?.full_name === 'string') out.repository = payload.repository.full_name
  if (typeof payload.number === 'number') out.number = payload.number
  if (delivery) out.delivery = delivery
  return out
}
