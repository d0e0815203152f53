import {z} from 'zod'

import {errorMessage} from '../core/errors.js'
import {HttpClient} from '../core/http-client.js'
import type {Logger} from '../core/log.js'
import {registerSecret} from '../core/secrets.js'
import {type SpigotMessage, header} from '../core/webhook-message.js'

/**
 * Optional pull-request comments so authors know why their build did not start: one when a
 * pull_request webhook is queued (Jenkins down or the spigot OFF), one when it is replayed.
 * Comments are a courtesy: a failure is logged and never stops intake or drain.
 */
export interface PrCommenter {
  queued(message: SpigotMessage): Promise<void>
  replayed(message: SpigotMessage): Promise<void>
  /** Close its connections to GitHub (the end of a run). */
  close?(): Promise<void>
}

export interface CommenterOptions {
  token: string
  /** GitHub Enterprise: https://<host>/api/v3 (default https://api.github.com). */
  baseUrl?: string
  log: Logger
  /** Per request (default 10 s): a slow GitHub must not hold a drain slot. */
  timeoutMs?: number
}

export const QUEUED_COMMENT =
  ':hourglass: Jenkins is unavailable right now (down or under maintenance), so this pull request event was queued. Testing starts when Jenkins is back.'
export const REPLAYED_COMMENT = ':arrow_forward: Jenkins is back, testing resumes.'

/** The fields of a pull_request payload a comment needs (the payload is GitHub's: parsed, not cast). */
const pullRequestPayload = z.object({
  action: z.string().optional(),
  number: z.number().optional(),
  pull_request: z.object({number: z.number().optional()}).loose().optional(),
  repository: z
    .object({name: z.string().optional(), full_name: z.string().optional(), owner: z.object({login: z.string().optional()}).loose().optional()})
    .loose()
    .optional(),
})

/** Where to comment, or undefined when the message is not a commentable pull_request event. */
export function pullRequestOf(message: SpigotMessage): {owner: string; repo: string; number: number} | undefined {
  if (header(message.headers, 'X-GitHub-Event') !== 'pull_request') return undefined
  const parsed = pullRequestPayload.safeParse(message.body)
  if (!parsed.success || parsed.data.action === 'closed') return undefined
  const body = parsed.data
  const number = body.number ?? body.pull_request?.number
  const [ownerFromName, repoFromName] = (body.repository?.full_name ?? '').split('/')
  const owner = body.repository?.owner?.login ?? ownerFromName
  const repo = body.repository?.name ?? repoFromName
  if (!owner || !repo || number === undefined) return undefined
  return {owner, repo, number}
}

export function createCommenter(options: CommenterOptions): PrCommenter {
  registerSecret(options.token)
  const log = options.log.child({component: 'pr-comments'})
  // The one HTTP client (keep-alive, a deadline per request that cannot be garbage-collected).
  const http = new HttpClient({connections: 4, timeoutMs: options.timeoutMs ?? 10_000})
  let octokit: Promise<import('@octokit/rest').Octokit> | undefined

  const client = () =>
    (octokit ??= import('@octokit/rest').then(
      ({Octokit}) =>
        new Octokit({
          auth: options.token,
          ...(options.baseUrl ? {baseUrl: options.baseUrl.replace(/\/+$/, '')} : {}),
          userAgent: 'cistern-spigot',
          request: {fetch: http.fetch},
          log: {debug: () => undefined, info: () => undefined, warn: (m: string) => log.debug(m), error: (m: string) => log.debug(m)},
        }),
    ))

  async function comment(message: SpigotMessage, text: string, why: string): Promise<void> {
    const target = pullRequestOf(message)
    if (!target) return
    const fields = {repository: `${target.owner}/${target.repo}`, pull: target.number, delivery: header(message.headers, 'X-GitHub-Delivery')}
    try {
      const github = await client()
      await github.rest.issues.createComment({owner: target.owner, repo: target.repo, issue_number: target.number, body: text})
      log.info(`commented on ${fields.repository}#${target.number} (${why})`, fields)
    } catch (error) {
      const status = statusOf(error)
      log.warn(`could not comment on ${fields.repository}#${target.number} (${why}): ${errorMessage(error)}`, {...fields, status})
    }
  }

  return {
    queued: (message) => comment(message, QUEUED_COMMENT, 'queued'),
    replayed: (message) => comment(message, REPLAYED_COMMENT, 'replayed'),
    close: () => http.close(),
  }
}

/** The HTTP status of Octokit's RequestError, if the failure had one. */
function statusOf(error: unknown): number | undefined {
  const status: unknown = typeof error === 'object' && error !== null && 'status' in error ? error.status : undefined
  return typeof status === 'number' ? status : undefined
}
