import type {TravisActionConfig} from '../config.js'
import {ActionConfigurationError, type ActionHandler, type HandlerOutcome, JobFailure, type JobContext} from '../job.js'
import {Unreachable, call, follow, parseJson} from './http.js'

export interface TravisHandlerOptions {
  settings: TravisActionConfig['settings']
  token: string
}

interface TravisState {
  requestId: string
}

const FAILED_STATES = new Set(['failed', 'errored', 'canceled'])

/**
 * Triggers a Travis CI build through API v3 (POST /repo/{slug}/requests) and follows the request
 * to its first build's final state; the continuation token carries the request id.
 */
export function travisHandler(options: TravisHandlerOptions): ActionHandler {
  const {settings} = options
  const endpoint = settings.endpoint.replace(/\/+$/, '')
  const web = settings.webUrl.replace(/\/+$/, '')
  const headers = {'travis-api-version': '3', authorization: `token ${options.token}`, accept: 'application/json'}
  const timeoutMs = settings.requestTimeoutSeconds * 1000

  const slugOf = (job: JobContext) => {
    const slug = settings.repo ?? job.configuration.Repository
    if (!slug) throw new ActionConfigurationError('no Travis repository: set settings.repo or the Repository action configuration property')
    if (!/^[^/\s]+\/[^/\s]+$/.test(slug)) throw new ActionConfigurationError(`Travis repository ${JSON.stringify(slug)} is not owner/name`)
    return slug
  }
  const repoUrl = (slug: string) => `${endpoint}/repo/${encodeURIComponent(slug)}`

  async function trigger(job: JobContext, slug: string): Promise<TravisState> {
    const branch = settings.branch ?? job.configuration.Branch ?? 'master'
    let result
    try {
      result = await call(`${repoUrl(slug)}/requests`, {
        what: 'Travis',
        method: 'POST',
        timeoutMs,
        signal: job.deadline,
        headers: {...headers, 'content-type': 'application/json'},
        body: JSON.stringify({request: {branch, message: `CodePipeline ${job.pipelineName ?? ''} ${job.id}`.trim()}}),
      })
    } catch (error) {
      if (error instanceof Unreachable) throw new JobFailure('SystemUnavailable', error.message)
      throw error
    }
    if (result.status !== 202 && result.status !== 200 && result.status !== 201) {
      throw new JobFailure(result.status === 400 ? 'ConfigurationError' : 'JobFailed', `Travis answered ${result.status} when requesting a build of ${slug}@${branch}`)
    }
    const body = parseJson(result, 'Travis')
    const id = (body.request as {id?: unknown} | undefined)?.id
    if (typeof id !== 'number' && typeof id !== 'string') throw new JobFailure('JobFailed', 'Travis accepted the request but returned no request id')
    job.logger.info('Travis build requested', {repo: slug, branch, requestId: id})
    return {requestId: String(id)}
  }

  async function check(state: TravisState, slug: string, job: JobContext) {
    const body = parseJson(
      await call(`${repoUrl(slug)}/request/${encodeURIComponent(state.requestId)}`, {what: 'Travis', timeoutMs, signal: job.deadline, headers}),
      'Travis',
    )
    if (body.result === 'rejected') {
      const why = typeof body.message === 'string' ? `: ${body.message}` : ''
      return {done: true as const, outcome: {status: 'failed', type: 'JobFailed', message: `Travis rejected request ${state.requestId}${why}`} satisfies HandlerOutcome}
    }
    const builds = Array.isArray(body.builds) ? (body.builds as Array<{id?: number; number?: string; state?: string}>) : []
    const build = builds[0]
    if (!build || typeof build.state !== 'string') {
      return {done: false as const, state, summary: `Travis request ${state.requestId}: waiting for a build`, percentComplete: 0}
    }
    const url = build.id === undefined ? undefined : `${web}/github/${slug}/builds/${build.id}`
    const label = `Travis build #${build.number ?? build.id}`
    if (build.state === 'passed') {
      return {done: true as const, outcome: {status: 'succeeded', summary: `${label}: passed`, externalExecutionId: url, percentComplete: 100} satisfies HandlerOutcome}
    }
    if (FAILED_STATES.has(build.state)) {
      return {done: true as const, outcome: {status: 'failed', type: 'JobFailed', message: `${label}: ${build.state}`, externalExecutionId: url} satisfies HandlerOutcome}
    }
    return {done: false as const, state, summary: `${label}: ${build.state}`, externalExecutionId: url}
  }

  return {
    async run(job: JobContext): Promise<HandlerOutcome> {
      const slug = slugOf(job)
      let state: TravisState
      let errors = 0
      if (job.continuationToken) {
        const token = parseToken(job.continuationToken)
        state = {requestId: token.requestId}
        errors = token.errors ?? 0
      } else {
        state = await trigger(job, slug)
      }
      return follow(state, errors, {check: (s) => check(s, slug, job), token: (s, e) => JSON.stringify(e > 0 ? {...s, errors: e} : s)}, {
        waitMs: settings.waitSeconds * 1000,
        intervalMs: settings.checkIntervalSeconds * 1000,
        stopping: job.stopping,
        what: 'Travis',
      })
    },
  }
}

function parseToken(text: string): {requestId: string; errors?: number} {
  try {
    const value = JSON.parse(text) as {requestId?: unknown; errors?: number}
    if (value && (typeof value.requestId === 'string' || typeof value.requestId === 'number')) {
      return {requestId: String(value.requestId), errors: typeof value.errors === 'number' ? value.errors : 0}
    }
  } catch {
    // fall through
  }
  throw new JobFailure('JobFailed', 'continuation token is not one this Travis handler wrote')
}
