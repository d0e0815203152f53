/**
 * Request decoding and response encoding for the SQS listener, byte-compatible with Bang!'s
 * listener: requests are YAML `{<job_name>: {request_id, parameters: [...]}}`, plain or base64
 * (boto2 wrote base64); responses are YAML `job_name, request_id, result, message`.
 */
import {isMap, isScalar, isSeq, parseDocument, stringify} from 'yaml'
import {z} from 'zod'

import {CisternError, errorMessage} from '../core/errors.js'

export type Encoding = 'plain' | 'base64'

/** Written where a field of a bad request cannot be read (as the original did). */
export const UNKNOWN = 'unknown'

export interface JobRequest {
  jobName: string
  requestId: string
  /** Each parameter exactly as written in the request (scalars kept as their source text). */
  parameters: string[]
}

export type BadRequestKind = 'not-yaml' | 'not-a-mapping' | 'several-jobs' | 'bad-job-body' | 'no-request-id' | 'bad-parameters' | 'unknown-job'

export type ParsedRequest =
  | {ok: true; request: JobRequest; encoding: Encoding}
  | {ok: false; kind: BadRequestKind; reason: string; jobName: string; requestId: string; encoding: Encoding}

export const RESULT_STATES = ['started', 'working', 'success', 'failure'] as const
export type ResultState = (typeof RESULT_STATES)[number]

/** A response as it travels (and as the state database keeps a final one): the original's four keys. */
export const responseSchema = z.object({
  job_name: z.string(),
  request_id: z.string(),
  result: z.enum(RESULT_STATES),
  message: z.string(),
})

export type Response = z.infer<typeof responseSchema>

/** A body on the response queue that is not a response (tools and tests reading the queue). */
export class NotAResponseError extends CisternError {
  constructor(body: string, why: string) {
    super(`not a sqs-listen response (${why}): ${body.slice(0, 80)}`)
    this.name = 'NotAResponseError'
  }
}

const BASE64 = /^[A-Za-z0-9+/\r\n]+={0,2}[\r\n]*$/

/**
 * Detect base64: a YAML request mapping always holds a ':' (outside the base64 alphabet), so a
 * body made only of base64 characters that decodes to valid UTF-8 is base64.
 */
export function decodeBody(body: string): {text: string; encoding: Encoding} {
  const compact = body.trim()
  if (compact.length > 0 && BASE64.test(compact)) {
    const stripped = compact.replace(/[\r\n]/g, '')
    if (stripped.length % 4 === 0) {
      const bytes = Buffer.from(stripped, 'base64')
      try {
        const text = new TextDecoder('utf-8', {fatal: true}).decode(bytes)
        return {text, encoding: 'base64'}
      } catch {
        // not UTF-8: treat as plain text
      }
    }
  }
  return {text: body, encoding: 'plain'}
}

/** Plain scalars YAML reads as null. */
const NULLISH = /^(~|null|Null|NULL|)$/

/** YAML read literally: text, null, a list, a mapping; undefined for an alias (never resolved). */
type Literal = string | null | undefined | Literal[] | Map<string, Literal>

/**
 * YAML → JS with every scalar kept as its literal text (failsafe schema: `0012` stays "0012",
 * `1.0` stays "1.0", `yes` stays "yes"), except plain nulls, which become null.
 */
function literal(node: unknown): Literal {
  if (node == null) return null
  if (isScalar(node)) {
    // The failsafe schema reads every scalar as a string.
    const value = typeof node.value === 'string' ? node.value : ''
    if (node.type === 'PLAIN' && NULLISH.test(value)) return null
    return value
  }
  if (isSeq(node)) return node.items.map((item) => literal(item))
  if (isMap(node)) {
    const out = new Map<string, Literal>()
    for (const pair of node.items) {
      const key = literal(pair.key)
      out.set(typeof key === 'string' ? key : JSON.stringify(key), literal(pair.value))
    }
    return out
  }
  // An alias: resolve nothing, report it as unreadable.
  return undefined
}

/** Decide what a request body asks for, or why it cannot be run. Never throws. */
export function parseRequest(body: string): ParsedRequest {
  const {text, encoding} = decodeBody(body)
  const bad = (kind: BadRequestKind, reason: string, jobName = UNKNOWN, requestId = UNKNOWN): ParsedRequest => ({
    ok: false,
    kind,
    reason,
    jobName,
    requestId,
    encoding,
  })

  let root: Literal
  try {
    const doc = parseDocument(text, {schema: 'failsafe', uniqueKeys: true})
    const syntax = doc.errors.at(0)
    if (syntax) return bad('not-yaml', `the request is not YAML: ${firstLine(syntax.message)}`)
    root = literal(doc.contents)
  } catch (error) {
    return bad('not-yaml', `the request is not YAML: ${firstLine(errorMessage(error))}`)
  }

  if (!(root instanceof Map)) {
    return bad('not-a-mapping', `the request must be a YAML mapping {<job_name>: {request_id, parameters}}, got ${describe(root)}`)
  }
  if (root.size === 0) return bad('not-a-mapping', 'the request is an empty mapping: name one job')
  if (root.size > 1) {
    const names = [...root.keys()]
    // Several jobs in one request: refuse all of them (which one would the request_id answer for?).
    return bad('several-jobs', `the request names ${names.length} jobs (${names.join(', ')}); send one job per request`)
  }

  const [jobName, jobBody] = [...root.entries()][0] ?? [UNKNOWN, undefined]
  if (!(jobBody instanceof Map)) {
    return bad('bad-job-body', `the body of job "${jobName}" must be a mapping with request_id and parameters, got ${describe(jobBody)}`, jobName)
  }
  const requestId = jobBody.get('request_id')
  if (typeof requestId !== 'string' || requestId.trim() === '') {
    return bad('no-request-id', `the request for job "${jobName}" has no request_id`, jobName)
  }
  if (requestId.includes('\0')) return bad('no-request-id', `the request_id of job "${jobName}" contains a NUL character`, jobName)
  const raw = jobBody.get('parameters')
  let parameters: string[] = []
  if (raw != null) {
    if (typeof raw === 'string') {
      parameters = [raw] // a single scalar: one parameter, as a one-item list
    } else if (Array.isArray(raw) && raw.every((item) => typeof item === 'string' || item === null)) {
      parameters = raw.map((item) => item ?? '')
    } else {
      return bad('bad-parameters', `parameters of request ${requestId} must be a list of scalars`, jobName, requestId)
    }
  }
  // Parameters become arguments and environment values, which cannot hold NUL.
  if (parameters.some((value) => value.includes('\0'))) {
    return bad('bad-parameters', `a parameter of request ${requestId} contains a NUL character, which no argument can hold`, jobName, requestId)
  }
  return {ok: true, request: {jobName, requestId, parameters}, encoding}
}

function describe(value: Literal): string {
  if (value === null) return 'nothing (null)'
  if (value === undefined) return 'an alias'
  if (Array.isArray(value)) return 'a list'
  if (value instanceof Map) return 'a mapping'
  return `the scalar "${value.length > 40 ? value.slice(0, 40) + '…' : value}"`
}

function firstLine(text: string): string {
  return (text.split('\n').at(0) ?? text).replace(/:\s*$/, '')
}

/** The YAML text of a response, in the original's key order. */
export function responseYaml(response: Response): string {
  return stringify(
    {job_name: response.job_name, request_id: response.request_id, result: response.result, message: response.message},
    {blockQuote: 'literal', lineWidth: 0},
  )
}

export function encodeResponse(response: Response, encoding: Encoding): string {
  const yaml = responseYaml(response)
  return encoding === 'base64' ? Buffer.from(yaml, 'utf8').toString('base64') : yaml
}

/** Decode a response body (either encoding): for tests and tools reading the response queue. */
export function decodeResponse(body: string): Response {
  const {text} = decodeBody(body)
  const value = literal(parseDocument(text, {schema: 'failsafe'}).contents)
  if (!(value instanceof Map)) throw new NotAResponseError(body, 'not a YAML mapping')
  const parsed = responseSchema.safeParse(Object.fromEntries(value), {reportInput: true})
  if (!parsed.success) throw new NotAResponseError(body, parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; '))
  return parsed.data
}

export function encodedSize(response: Response, encoding: Encoding): number {
  return Buffer.byteLength(encodeResponse(response, encoding), 'utf8')
}

/**
 * Split output lines into as few `working` messages as fit in maxBytes each (encoded). A single
 * line too long for one message is cut, saying so.
 */
export function packLines(base: Omit<Response, 'message'>, lines: string[], encoding: Encoding, maxBytes: number): string[] {
  const size = (candidate: string[]) => encodedSize({...base, message: candidate.join('\n')}, encoding)
  const overhead = size([])
  const factor = encoding === 'base64' ? 4 / 3 : 1
  // Greedy on an estimate (bytes + indent + newline), then checked exactly: a batch YAML had to
  // quote (control characters…) may be bigger than estimated, and is split in halves until it fits.
  const batches: string[][] = []
  let current: string[] = []
  let estimate = overhead
  for (const original of lines) {
    // Exact check only for lines that could be too long even escaped (YAML escapes a byte as at most 6).
    const surelyFits = overhead + (Buffer.byteLength(original, 'utf8') * 6 + 8) * factor <= maxBytes
    const line = surelyFits || size([original]) <= maxBytes ? original : truncateToFit(base, original, encoding, maxBytes)
    const cost = (Buffer.byteLength(line, 'utf8') + 4) * factor
    if (current.length > 0 && estimate + cost > maxBytes) {
      batches.push(current)
      current = []
      estimate = overhead
    }
    current.push(line)
    estimate += cost
  }
  if (current.length > 0) batches.push(current)
  const fitted = (batch: string[]): string[][] => {
    if (batch.length <= 1 || size(batch) <= maxBytes) return [batch]
    const half = Math.ceil(batch.length / 2)
    return [...fitted(batch.slice(0, half)), ...fitted(batch.slice(half))]
  }
  return batches.flatMap(fitted).map((batch) => batch.join('\n'))
}

function truncateToFit(base: Omit<Response, 'message'>, line: string, encoding: Encoding, maxBytes: number): string {
  const marker = ' … [line cut to fit the queue message size]'
  let low = 0
  let high = line.length
  // binary search the longest prefix that fits with the marker
  while (low < high) {
    const mid = Math.ceil((low + high) / 2)
    if (encodedSize({...base, message: line.slice(0, mid) + marker}, encoding) <= maxBytes) low = mid
    else high = mid - 1
  }
  return line.slice(0, low) + marker
}

/**
 * A final message (success/failure) that fits: the head sentence is kept, and as many of the
 * trailing output lines as fit.
 */
export function fitMessage(base: Omit<Response, 'message'>, head: string, tail: string[], encoding: Encoding, maxBytes: number): string {
  const compose = (lines: string[]) => (lines.length > 0 ? `${head}\n${lines.join('\n')}` : head)
  let lines = tail
  while (lines.length > 0 && encodedSize({...base, message: compose(lines)}, encoding) > maxBytes) lines = lines.slice(1)
  const message = compose(lines)
  if (encodedSize({...base, message}, encoding) <= maxBytes) return message
  return truncateToFit(base, head, encoding, maxBytes)
}
