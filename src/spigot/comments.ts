import {errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {registerSecret} from '../core/log.js'
import {type SpigotMessage, header} from '../core/webhook-message.js'

/**
 * Optional pull-request comments so authors know why their build did not start: one when a
 * pull_request webhook is queued (Jenkins down or the spigot OFF), one when it is replayed.
 * Comments are a courtesy: a failure is logged and never stops intake or drain.
 */
export interface PrCommenter {
  queued(message: SpigotMessage): Promise<void>
  replayed(message: SpigotMessage): Promise<void>
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

/** Where to comment, or undefined when the message is not a commentable pull_request event. */
export function pullRequestOf(message: SpigotMessage): {owner: string; repo: string; number: number} | undefined {
  if (header(message.headers, 'X-GitHub-Event') !== 'pull_request') return undefined
  const body = message.body as
    | {action?: string; number?: number; pull_request?: {number?: number}; repository?: {name?: string; full_name?: string; owner?: {login?: string}}}
    | undefined
  if (!body || typeof body !== 'object' || body.action === 'closed') return undefined
  const number = body.number ?? body.pull_request?.number
  const [ownerFromName, repoFromName] = (body.repository?.full_name ?? '').split('/')
  const owner = body.repository?.owner?.login ?? ownerFromName
  const repo = body.repository?.name ?? repoFromName
  if (!owner || !repo || typeof number !== 'number') return undefined
  return {owner, repo, number}
}

export function createCommenter(options: CommenterOptions): PrCommenter {
  registerSecret(options.token)
  const log = options.log.child({component: 'pr-comments'})
  const timeoutMs = options.timeoutMs ?? 10_000
  let octokit: Promise<import('@octokit/rest').Octokit> | undefined

  const client = () =>
    (octokit ??= import('@octokit/rest').then(
      ({Octokit}) =>
        new Octokit({
          auth: options.token,
          ...(options.baseUrl ? {baseUrl: options.baseUrl.replace(/\/+$/, '')} : {}),
          userAgent: 'cistern-spigot',
          log: {debug() {}, info() {}, warn: (m: string) => log.debug(m), error: (m: string) => log.debug(m)},
        }),
    ))

  async function comment(message: SpigotMessage, text: string, why: string): Promise<void> {
    const target = pullRequestOf(message)
    if (!target) return
    const fields = {repository: `${target.owner}/${target.repo}`, pull: target.number, delivery: header(message.headers, 'X-GitHub-Delivery')}
    try {
      const github = await client()
      await github.rest.issues.createComment({
        owner: target.owner,
        repo: target.repo,
        issue_number: target.number,
        body: text,
        request: {signal: AbortSignal.timeout(timeoutMs)},
      })
      log.info(`commented on ${fields.repository}#${target.number} (${why})`, fields)
    } catch (error) {
      const status = (error as {status?: number}).status
      log.warn(`could not comment on ${fields.repository}#${target.number} (${why}): ${errorMessage(error)}`, {...fields, status})
    }
  }

  return {
    queued: (message) => comment(message, QUEUED_COMMENT, 'queued'),
    replayed: (message) => comment(message, REPLAYED_COMMENT, 'replayed'),
  }
}
