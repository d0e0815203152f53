/**
 * What GitHub's answer to a request says, read once (pure: no I/O, no clock but the one given).
 * The handler turns it into the message's outcome (verdicts.ts); the probe into the target's health.
 */
import {z} from 'zod'

import type {TargetAnswer} from '../core/delivery.js'
import {transportFailureOf} from '../core/errors.js'
import type {HttpResponse} from '../core/http-client.js'
import {ResponseTooLargeError} from '../core/http-client.js'
import {seconds} from '../core/loop.js'

export type GitHubAnswer =
  /** 2xx with the API's JSON. `exhaustedForSeconds`: the answer also said the rate limit is used up until then. */
  | {kind: 'ok'; status: number; exhaustedForSeconds?: number}
  /** A rate limit (429, or 403 saying so): wait `seconds` (Retry-After, x-ratelimit-reset, or a minute). */
  | {kind: 'rate-limited'; status: number; seconds: number; reason: string}
  /** GitHub is unwell: 5xx, 408, or no answer at all (timeout, refused, reset, DNS, TLS). */
  | {kind: 'unwell'; answer: TargetAnswer}
  /** 401: the token is refused for everything. */
  | {kind: 'bad-token'; reason: string}
  /** 403 that is not a rate limit: the token may not do this here (an organisation's SSO or policy, a missing permission). */
  | {kind: 'forbidden'; reason: string}
  /** A redirect, or an answer that is not the API's JSON: GITHUB_URL does not point at the API. */
  | {kind: 'misdirected'; reason: string}
  /** Another 4xx (404, 422, …): this status is refused, or everything is (the judge tells which). */
  | {kind: 'refused'; answer: TargetAnswer}

/** GitHub's error body: {"message": "…", "errors": [{"message": "…"} | …]}. */
const errorBody = z.object({
  message: z.string().optional(),
  errors: z.array(z.unknown()).optional(),
})

/** Answer headers by lower-case name; any may be missing. */
type Headers = Readonly<Partial<Record<string, string>>>

/** Read the answer to one request. `now` (epoch ms) dates Retry-After and x-ratelimit-reset. */
export function readAnswer(response: HttpResponse, now = Date.now()): GitHubAnswer {
  const {status} = response
  const headers: Headers = response.headers
  const json = /\bjson\b/i.test(headers['content-type'] ?? '')
  if (status >= 200 && status < 300) {
    if (!json) return misdirected(`GitHub answered ${status} with ${describeType(headers)} instead of the API's JSON`)
    const exhausted = headers['x-ratelimit-remaining'] === '0' ? resetInSeconds(headers, now) : undefined
    return exhausted === undefined ? {kind: 'ok', status} : {kind: 'ok', status, exhaustedForSeconds: exhausted}
  }
  if (status >= 300 && status < 400) {
    return misdirected(`GitHub answered ${status} (a redirect to ${headers.location ?? 'nowhere'}) instead of the API's JSON`)
  }
  const message = json ? messageOf(response.body) : ''
  if (status >= 500 || status === 408) return {kind: 'unwell', answer: {status, ...(message ? {detail: message} : {})}}
  const wait = rateLimitSeconds(status, headers, message, now)
  if (wait !== undefined) return {kind: 'rate-limited', status, seconds: Math.max(1, wait), reason: `GitHub rate limit (${status}): ${message || 'no message'}`}
  // The API always answers JSON: an HTML 404/405/406 means GITHUB_URL points at the web UI or a proxy.
  if (!json) return misdirected(`GitHub answered ${status} with a non-JSON page: GITHUB_URL does not look like the GitHub API`)
  if (status === 401) return {kind: 'bad-token', reason: `GitHub rejected the token (401 ${message})`}
  if (status === 403) return {kind: 'forbidden', reason: `GitHub refused the token (403 ${message})`}
  return {kind: 'refused', answer: {status, detail: message || 'no message'}}
}

/**
 * A request to `host` that got no answer: GitHub is unwell (a timeout is said to be one, with how
 * long was waited). Undefined for any other error.
 */
export function unanswered(error: unknown, {timeoutMs, host}: {timeoutMs: number; host: string}): GitHubAnswer | undefined {
  if (error instanceof ResponseTooLargeError) return misdirected(`${error.message}: GITHUB_URL does not look like the GitHub API`)
  const failure = transportFailureOf(error)
  if (!failure) return undefined
  const detail = failure.kind === 'timeout' ? `no answer within ${seconds(timeoutMs)}` : (failure.where ?? host)
  return {kind: 'unwell', answer: {error: failure.kind, detail}}
}

/**
 * Seconds until a rate limit lifts, or undefined when the answer is not a rate limit. GitHub says
 * "rate limit" as 429, or as 403 with x-ratelimit-remaining: 0 (primary) or a message naming a
 * secondary rate limit; Retry-After wins, then x-ratelimit-reset; a secondary limit without either
 * waits a minute, as GitHub advises.
 */
export function rateLimitSeconds(status: number, headers: Headers, message: string, now: number): number | undefined {
  if (status !== 403 && status !== 429) return undefined
  const retryAfter = headers['retry-after']
  const remaining = headers['x-ratelimit-remaining']
  const secondary = /secondary rate limit|abuse/i.test(message)
  const primary = remaining === '0' || /rate limit/i.test(message)
  if (status === 403 && !secondary && !primary && retryAfter === undefined) return undefined
  if (retryAfter !== undefined) {
    const asNumber = Number(retryAfter)
    if (retryAfter.trim() !== '' && Number.isFinite(asNumber)) return Math.ceil(asNumber)
    const date = Date.parse(retryAfter)
    if (Number.isFinite(date)) return Math.ceil((date - now) / 1000)
  }
  if (remaining === '0') {
    const reset = resetInSeconds(headers, now)
    if (reset !== undefined) return reset
  }
  return 60
}

/** Seconds until x-ratelimit-reset (epoch seconds), one more for the clocks' skew. */
function resetInSeconds(headers: Headers, now: number): number | undefined {
  const reset = headers['x-ratelimit-reset']
  return reset !== undefined && Number.isFinite(Number(reset)) ? Math.max(1, Math.ceil(Number(reset) - now / 1000) + 1) : undefined
}

/** GitHub's message and its errors' messages, e.g. "Validation Failed (No commit found for SHA)", at most 300 characters. */
function messageOf(body: Buffer): string {
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return ''
  }
  const fields = errorBody.safeParse(parsed)
  if (!fields.success) return ''
  let message = fields.data.message ?? ''
  const details = (fields.data.errors ?? []).map((item) => {
    const detail = z.object({message: z.string()}).safeParse(item)
    return detail.success ? detail.data.message : JSON.stringify(item)
  })
  if (details.length > 0) message += ` (${details.join('; ')})`
  return message.slice(0, 300)
}

function describeType(headers: Headers): string {
  const type = headers['content-type']
  return type ? `"${type.split(';').at(0) ?? type}"` : 'no content type'
}

function misdirected(reason: string): GitHubAnswer {
  return {kind: 'misdirected', reason}
}
