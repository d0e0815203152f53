import {type SpigotMessage, decodeMessage, replayBytes} from '../core/webhook-message.js'

/**
 * A queued spigot message read for replay (issue 15: no per-message work that is not needed).
 * The drain needs the headers, the target and the bytes to POST, not the payload as objects: a
 * 7 KB push costs ~60 µs to JSON.parse and ~40 µs to JSON.stringify back, more than the rest of
 * its replay. So the message's members are read without parsing the `body` member, and its bytes
 * are taken as they are written when that is what a replay sends:
 *
 *   raw_body          the base64 of the bytes GitHub signed (decoded, as always);
 *   cistern's message (it has `received_at`): `body` is written with JSON.stringify, so its text
 *                     IS JSON.stringify(body), the bytes a replay sends;
 *   anything else     (the original Lambda's messages) JSON.stringify(JSON.parse(body)), as before.
 *
 * The body is parsed only when something asks for it (a pull-request comment, a dry run).
 */
export interface QueuedWebhook {
  /** Every member but the parsed body: headers, target, large_payload, raw_body, received_at. */
  message: Omit<SpigotMessage, 'body'>
  /** The bytes to POST (not for a large_payload message: those are in S3). */
  bytes(): Buffer
  /** The payload, parsed on first use. */
  body(): unknown
}

/** Throws (a plain Error, its message the reason) when the text is not a spigot message. */
export function readQueuedWebhook(text: string): QueuedWebhook {
  const split = readLayout(text)
  if (!split) return decoded(decodeMessage(text))
  const {bodyText, message} = split
  let body: {value: unknown} | undefined
  const parsedBody = () => (body ??= {value: JSON.parse(bodyText) as unknown}).value
  return {
    message,
    bytes: () => {
      if (message.raw_body !== undefined) return Buffer.from(message.raw_body, 'base64')
      if (message.received_at !== undefined) return Buffer.from(bodyText)
      return replayBytes({...message, body: parsedBody()})
    },
    body: parsedBody,
  }
}

/** The message's text without its body (a null in its place), and the body's text. */
interface Split {
  rest: string
  bodyText: string
}

/** The members but the body, checked as decodeMessage checks them, and the body's text; undefined: not readable so. */
function readLayout(text: string): {message: Omit<SpigotMessage, 'body'>; bodyText: string} | undefined {
  for (const layout of [cisternLayout, anyLayout]) {
    const split = layout(text)
    if (!split) continue
    try {
      // The placeholder body keeps decodeMessage's check that there is one.
      const {body: _placeholder, ...message} = decodeMessage(split.rest)
      return {message, bodyText: split.bodyText}
    } catch {
      // Not this layout after all: the next one (or JSON.parse of the whole, whose error names the problem).
    }
  }
  return undefined
}

const CISTERN_START = '{"spigot_state":'
const BODY_KEY = ',"body":'
const HEADERS_KEY = ',"headers":{'

/**
 * How cistern writes a message (encodeMessage, the intake's encodeWithBodyText): spigot_state,
 * from_queue, body, headers, then the rest. `,"body":` first appears as the body's own key (the
 * members before it are strings, where a quote is always escaped), and `,"headers":{` last appears
 * as the headers' key (nothing after it holds one): two string searches find the body, not a scan
 * of its 7 KB. Anything unexpected falls back to the scan.
 */
function cisternLayout(text: string): Split | undefined {
  if (!text.startsWith(CISTERN_START)) return undefined
  const bodyKey = text.indexOf(BODY_KEY)
  const headersKey = text.lastIndexOf(HEADERS_KEY)
  if (bodyKey < 0 || headersKey <= bodyKey + BODY_KEY.length) return undefined
  return {rest: `${text.slice(0, bodyKey)},"body":null${text.slice(headersKey)}`, bodyText: text.slice(bodyKey + BODY_KEY.length, headersKey)}
}

/** Any other layout (the original Lambda's, written by Python): a scan of the top-level members. */
function anyLayout(text: string): Split | undefined {
  const members = topLevelMembers(text)
  const bodyText = members?.get('body')
  if (!members || bodyText === undefined) return undefined
  const rest: string[] = []
  for (const [key, value] of members) if (key !== 'body') rest.push(`${JSON.stringify(key)}:${value}`)
  return {rest: `{${[...rest, '"body":null'].join(',')}}`, bodyText}
}

function decoded(message: SpigotMessage): QueuedWebhook {
  return {message, bytes: () => replayBytes(message), body: () => message.body}
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COLON = 0x3a
const COMMA = 0x2c

/**
 * The members of a top-level JSON object, each value as its JSON text (the last of a repeated key
 * wins, as JSON.parse does); undefined when the text is not one JSON object (the caller falls back
 * to JSON.parse, whose error then names the problem).
 */
export function topLevelMembers(text: string): Map<string, string> | undefined {
  const members = new Map<string, string>()
  let i = skipSpace(text, 0)
  if (text.charCodeAt(i) !== 0x7b) return undefined
  i = skipSpace(text, i + 1)
  if (text.charCodeAt(i) === 0x7d) return skipSpace(text, i + 1) === text.length ? members : undefined
  for (;;) {
    if (text.charCodeAt(i) !== QUOTE) return undefined
    const keyStart = i
    const keyEnd = stringEnd(text, keyStart)
    if (keyEnd < 0) return undefined
    const written = text.slice(keyStart + 1, keyEnd - 1)
    // A key with escapes is rare: let JSON decode it.
    const key = written.includes('\\') ? (JSON.parse(text.slice(keyStart, keyEnd)) as string) : written
    i = skipSpace(text, keyEnd)
    if (text.charCodeAt(i) !== COLON) return undefined
    const start = skipSpace(text, i + 1)
    const end = valueEnd(text, start)
    if (end < 0) return undefined
    members.set(key, text.slice(start, end))
    i = skipSpace(text, end)
    const next = text.charCodeAt(i)
    if (next === COMMA) {
      i = skipSpace(text, i + 1)
      continue
    }
    if (next === 0x7d) return skipSpace(text, i + 1) === text.length ? members : undefined
    return undefined
  }
}

function skipSpace(text: string, from: number): number {
  let i = from
  for (;;) {
    const c = text.charCodeAt(i)
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i
    i++
  }
}

/** Index after the closing quote of the string that opens at `start`; -1 if it does not close. */
function stringEnd(text: string, start: number): number {
  let i = start + 1
  for (;;) {
    const quote = text.indexOf('"', i)
    if (quote < 0) return -1
    let backslashes = 0
    for (let j = quote - 1; text.charCodeAt(j) === BACKSLASH; j--) backslashes++
    if (backslashes % 2 === 0) return quote + 1
    i = quote + 1
  }
}

/** Index after the JSON value that starts at `start`; -1 if it does not end well. */
function valueEnd(text: string, start: number): number {
  const first = text.charCodeAt(start)
  if (first === QUOTE) return stringEnd(text, start)
  if (first !== 0x7b && first !== 0x5b) {
    // A number, true, false or null: up to the next delimiter.
    let i = start
    for (let c = text.charCodeAt(i); i < text.length && c !== COMMA && c !== 0x7d && c !== 0x5d && c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09; c = text.charCodeAt(++i));
    return i > start ? i : -1
  }
  let depth = 0
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      const end = stringEnd(text, i)
      if (end < 0) return -1
      i = end - 1
    } else if (c === 0x7b || c === 0x5b) depth++
    else if (c === 0x7d || c === 0x5d) {
      depth--
      if (depth === 0) return i + 1
    }
  }
  return -1
}
