import {isUtf8} from 'node:buffer'
import {createHash} from 'node:crypto'

import {DEFAULT_TARGET} from './config.js'
import type {LargePayloadPointer} from './large-payload.js'
import type {Webhook} from './webhook.js'

/**
 * The queue message of a webhook for one Jenkins target (docs/spigot.md, "Queue messages"): the
 * original Lambda's `{spigot_state, from_queue, body, headers}` plus cistern's `received_at`,
 * `raw_body` and `target`, written as text directly.
 *
 * - `body` is the payload's JSON text as received, spliced in: it parsed, so it is valid JSON with
 *   the same value. The original send_from_queue reads the same object; nothing is serialised again.
 * - `raw_body` (base64) holds the bytes GitHub signed unless the body alone gives them back: a
 *   replay of a message without it sends JSON.stringify(body), which for GitHub's compact JSON is
 *   the same bytes. Keeping raw_body always costs more than checking (BENCHMARKS.md, spigot intake:
 *   the message twice the size costs the embedded queue ~20 µs a webhook more than the check), so
 *   the check stays, and is skipped where the text shows it cannot hold (a line break: pretty-printed).
 */
export interface MessageFields {
  state: string
  fromQueue: string
  /** ISO time the webhook reached the spigot. */
  receivedAt: string
  target: string
}

/** The message with the parsed body, or with `body: null` (too big for the queue twice over). */
export function encodeQueuedWebhook(webhook: Webhook, fields: MessageFields, options: {body?: boolean} = {}): string {
  if (options.body === false) return `${head(fields, 'null', webhook)},"raw_body":"${webhook.raw.toString('base64')}",${tail(fields)}`
  if (bodyGivesBackTheBytes(webhook)) return `${head(fields, webhook.text, webhook)},${tail(fields)}`
  return `${head(fields, webhook.text, webhook)},"raw_body":"${webhook.raw.toString('base64')}",${tail(fields)}`
}

const givesBack = new WeakMap<Webhook, boolean>()

/**
 * JSON.stringify(body) is the exact request bytes: the payload is not form-encoded, has no line
 * break (JSON.stringify writes none, so a pretty-printed payload is known without serialising),
 * serialises to its own text, and is valid UTF-8 (invalid bytes decode to U+FFFD, which would
 * compare equal but replay as other bytes). Worked out once per webhook, whatever its targets.
 */
export function bodyGivesBackTheBytes(webhook: Webhook): boolean {
  let gives = givesBack.get(webhook)
  if (gives === undefined) {
    const {text} = webhook
    gives = !webhook.form && !text.includes('\n') && JSON.stringify(webhook.body) === text && isUtf8(webhook.raw)
    givesBack.set(webhook, gives)
  }
  return gives
}

/** The message for a payload stored in S3: the pointer instead of the bytes. */
export function encodeLargePayloadMessage(webhook: Webhook, fields: MessageFields, pointer: LargePayloadPointer): string {
  return `${head(fields, 'null', webhook)},"large_payload":${JSON.stringify(pointer)},${tail(fields)}`
}

function head(fields: MessageFields, body: string, webhook: Webhook): string {
  return `{"spigot_state":${JSON.stringify(fields.state)},"from_queue":${JSON.stringify(fields.fromQueue)},"body":${body},"headers":${JSON.stringify(webhook.headers)},"received_at":${JSON.stringify(fields.receivedAt)}`
}

function tail(fields: MessageFields): string {
  return `"target":${JSON.stringify(fields.target)}}`
}

/** True when `text` is at most `limit` bytes as UTF-8 (counted only when it may not be). */
export function fitsIn(text: string, limit: number): boolean {
  return text.length * 3 <= limit || Buffer.byteLength(text) <= limit
}

/** The group of webhooks without a repository (organisation events …). */
export const NO_REPOSITORY = 'no-repository'
/** SQS: up to 128 of the characters `!`…`~`. */
const GROUP_MAX = 128

/**
 * The message group: the repository's full name, so each repository's webhooks are replayed in
 * order; for a target other than the default, `<repository>@<target>`, so one Jenkins that is
 * down holds back only its own copies. (The default target keeps the plain name, as before.)
 */
export function groupFor(repository: string | undefined, target: string): string {
  const base = repository ?? NO_REPOSITORY
  const group = target === DEFAULT_TARGET ? base : `${base}@${target}`
  const safe = group.replace(/[^!-~]/g, '_')
  if (safe.length <= GROUP_MAX) return safe
  // GitHub allows 39 + 1 + 100 characters: keep it unique within SQS's limit.
  return `${safe.slice(0, GROUP_MAX - 17)}~${createHash('sha256').update(group).digest('hex').slice(0, 16)}`
}

/** `X-GitHub-Delivery:<target>`: a redelivery still waiting is not queued twice (per target). */
export function deduplicationFor(webhook: Webhook, target: string): string {
  return `${webhook.delivery ?? fingerprint(webhook.raw)}:${target}`.slice(0, 128)
}

/** A webhook without X-GitHub-Delivery is known by its bytes. */
export function fingerprint(raw: Buffer): string {
  return 'sha256-' + createHash('sha256').update(raw).digest('hex').slice(0, 48)
}
