import {z} from 'zod'

import type {TravisActionConfig} from '../config.js'
import {ActionConfigurationError, type ActionHandler, type HandlerOutcome, JobFailure, type JobContext, configurationValue} from '../job.js'
import {type CiBuild, CiServer, CiTargets, type Progress, type Step, follow, followOptions, parseJson} from './ci-server.js'

export interface TravisHandlerOptions {
  settings: TravisActionConfig['settings']
  token: string
  /** Shared with the worker's other handlers (one HTTP client, one set of gates); a fresh set by default. */
  targets?: CiTargets
}

interface TravisState {
  requestId: string
}

const FAILED_STATES = new Set(['failed', 'errored', 'canceled'])

// What Travis answers (only the fields used), and the continuation tokens this handler writes.
const requestIdSchema = z.union([z.number(), z.string()]).transform(String)
const createdSchema = z.object({request: z.object({id: requestIdSchema})})
const requestSchema = z.object({
  result: z.string().nullish(),
  message: z.string().nullish(),
  builds: z.array(z.object({id: z.number().optional(), number: z.string().optional(), state: z.string().optional()})).optional(),
})
const tokenSchema = z.union([
  z.object({requestId: requestIdSchema, downSince: z.number().optional()}),
  // Not requested yet: its server was down.
  z.object({downSince: z.number()}),
])

/**
 * Triggers a Travis CI build through API v3 (POST /repo/{slug}/requests) and follows the request
 * to its first build's final state; the continuation token carries the request id. Travis down
 * or refusing the token holds the job (ci-server.ts).
 */
export class TravisHandler implements ActionHandler {
  private readonly endpoint: string
  private readonly web: string
  private readonly headers: Record<string, string>
  private readonly server: CiServer

  constructor(private readonly options: TravisHandlerOptions) {
    const {settings} = options
    this.endpoint = settings.endpoint.replace(/\/+$/, '')
    this.web = settings.webUrl.replace(/\/+$/, '')
    this.headers = {'travis-api-version': '3', authorization: `token ${options.token}`, accept: 'application/json'}
    this.server = new CiServer('Travis', this.endpoint, options.targets ?? new CiTargets(), settings.requestTimeoutSeconds * 1000)
  }

  async run(job: JobContext): Promise<HandlerOutcome> {
    const slug = this.slugOf(job)
    const start: Progress<TravisState> = job.continuationToken ? parseToken(job.continuationToken) : {}
    const build: CiBuild<TravisState> = {trigger: () => this.trigger(job, slug), check: (state) => this.check(state, slug, job)}
    return follow(this.server, build, start, followOptions(this.options.settings, job.stopping))
  }

  private slugOf(job: JobContext): string {
    const slug = this.options.settings.repo ?? configurationValue(job, 'Repository')
    if (!slug) throw new ActionConfigurationError('no Travis repository: set settings.repo or the Repository action configuration property')
    if (!/^[^/\s]+\/[^/\s]+$/.test(slug)) throw new ActionConfigurationError(`Travis repository ${JSON.stringify(slug)} is not owner/name`)
    return slug
  }

  private repoUrl(slug: string): string {
    return `${this.endpoint}/repo/${encodeURIComponent(slug)}`
  }

  private async trigger(job: JobContext, slug: string): Promise<TravisState> {
    const branch = this.options.settings.branch ?? configurationValue(job, 'Branch') ?? 'master'
    const url = `${this.repoUrl(slug)}/requests`
    const answer = await this.server.request(url, {
      jobId: job.id,
      method: 'POST',
      signal: job.deadline,
      headers: {...this.headers, 'content-type': 'application/json'},
      body: JSON.stringify({request: {branch, message: `CodePipeline ${job.pipelineName ?? ''} ${job.id}`.trim()}}),
    })
    if (answer.status === 404) throw this.server.refused(answer, url)
    if (answer.status !== 202 && answer.status !== 200 && answer.status !== 201) {
      throw new JobFailure(answer.status === 400 ? 'ConfigurationError' : 'JobFailed', `Travis answered ${answer.status} when requesting a build of ${slug}@${branch}`)
    }
    const parsed = createdSchema.safeParse(parseJson(answer.text))
    if (!parsed.success) throw new JobFailure('JobFailed', 'Travis accepted the request but returned no request id')
    const requestId = parsed.data.request.id
    job.logger.info('Travis build requested', {repo: slug, branch, requestId})
    return {requestId}
  }

  private async check(state: TravisState, slug: string, job: JobContext): Promise<Step<TravisState>> {
    const url = `${this.repoUrl(slug)}/request/${encodeURIComponent(state.requestId)}`
    const answer = await this.server.request(url, {jobId: job.id, signal: job.deadline, headers: this.headers})
    if (answer.status >= 300) throw this.server.refused(answer, url)
    const body = this.server.json(answer, requestSchema)
    if (body.result === 'rejected') {
      const why = body.message ? `: ${body.message}` : ''
      return {done: true, outcome: {status: 'failed', type: 'JobFailed', message: `Travis rejected request ${state.requestId}${why}`}}
    }
    const build = body.builds?.[0]
    if (!build?.state) return {done: false, state, summary: `Travis request ${state.requestId}: waiting for a build`, percentComplete: 0}
    const externalExecutionId = build.id === undefined ? undefined : `${this.web}/github/${slug}/builds/${build.id}`
    const label = `Travis build #${build.number ?? String(build.id)}`
    if (build.state === 'passed') return {done: true, outcome: {status: 'succeeded', summary: `${label}: passed`, externalExecutionId, percentComplete: 100}}
    if (FAILED_STATES.has(build.state)) return {done: true, outcome: {status: 'failed', type: 'JobFailed', message: `${label}: ${build.state}`, externalExecutionId}}
    return {done: false, state, summary: `${label}: ${build.state}`, externalExecutionId}
  }
}

function parseToken(text: string): Progress<TravisState> {
  const parsed = tokenSchema.safeParse(parseJson(text))
  if (!parsed.success) throw new JobFailure('JobFailed', 'continuation token is not one this Travis handler wrote')
  const token = parsed.data
  return {state: 'requestId' in token ? {requestId: token.requestId} : undefined, downSince: token.downSince}
}
