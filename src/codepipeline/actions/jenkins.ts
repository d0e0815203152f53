import {z} from 'zod'

import {displayUrl} from '../../core/log.js'
import type {JenkinsActionConfig} from '../config.js'
import {ActionConfigurationError, type ActionHandler, type HandlerOutcome, JobFailure, type JobContext, configurationValue} from '../job.js'
import {type CiAnswer, type CiBuild, CiServer, CiTargets, type Progress, type Step, follow, followOptions, parseJson} from './ci-server.js'

export interface JenkinsHandlerOptions {
  settings: JenkinsActionConfig['settings']
  user: string
  token: string
  /** Shared with the worker's other handlers (one HTTP client, one set of gates); a fresh set by default. */
  targets?: CiTargets
}

/** Where the build is: the queue item first, then the build. */
type JenkinsState = {queueUrl: string; job: string} | {buildUrl: string}

/** job/a/job/b for a job "a/b" in a folder. */
export function jobPath(name: string): string {
  return name
    .split('/')
    .filter(Boolean)
    .map((segment) => `job/${encodeURIComponent(segment)}`)
    .join('/')
}

const FAILED_RESULTS = new Set(['FAILURE', 'UNSTABLE', 'ABORTED', 'NOT_BUILT'])

// What Jenkins answers (only the fields used), and the continuation tokens this handler writes.
const queueItemSchema = z.object({
  cancelled: z.boolean().optional(),
  why: z.string().nullish(),
  executable: z.object({number: z.number(), url: z.string().optional()}).nullish(),
})
const buildSchema = z.object({
  number: z.number().optional(),
  url: z.string().optional(),
  fullDisplayName: z.string().optional(),
  result: z.string().nullish(),
  timestamp: z.number().optional(),
  estimatedDuration: z.number().optional(),
})
const tokenSchema = z.union([
  z.object({buildUrl: z.string(), downSince: z.number().optional()}),
  z.object({queueUrl: z.string(), job: z.string(), downSince: z.number().optional()}),
  // Not started yet: its server was down.
  z.object({downSince: z.number()}),
])

/**
 * Triggers a Jenkins build (user + API token), follows the queue item to the build and reports
 * progress through continuation tokens until the build has a result. Jenkins down or refusing the
 * token holds the job (ci-server.ts); credentials only ever go to the configured URL.
 */
export class JenkinsHandler implements ActionHandler {
  private readonly base: string
  private readonly auth: string
  private readonly server: CiServer

  constructor(private readonly options: JenkinsHandlerOptions) {
    const {settings} = options
    this.base = settings.url.replace(/\/+$/, '')
    this.auth = 'Basic ' + Buffer.from(`${options.user}:${options.token}`).toString('base64')
    this.server = new CiServer('Jenkins', this.base, options.targets ?? new CiTargets(), settings.requestTimeoutSeconds * 1000)
  }

  async run(job: JobContext): Promise<HandlerOutcome> {
    const start = job.continuationToken ? this.resume(job.continuationToken) : {}
    const build: CiBuild<JenkinsState> = {trigger: () => this.trigger(job), check: (state) => this.check(state, job)}
    return follow(this.server, build, start, followOptions(this.options.settings, job.stopping))
  }

  /** Where a continuation token says the build is; one pointing anywhere but the configured Jenkins is refused. */
  private resume(text: string): Progress<JenkinsState> {
    const token = parseToken(text)
    if ('buildUrl' in token || 'queueUrl' in token) {
      const url = 'buildUrl' in token ? token.buildUrl : token.queueUrl
      if (!this.ours(url)) throw new JobFailure('JobFailed', `continuation token does not point at ${this.base}: was the Jenkins URL changed?`)
    }
    const state: JenkinsState | undefined = 'buildUrl' in token ? {buildUrl: token.buildUrl} : 'queueUrl' in token ? {queueUrl: token.queueUrl, job: token.job} : undefined
    return {state, downSince: token.downSince}
  }

  // Only ever send the credentials to the configured Jenkins, whatever a token or a Location says.
  private ours(url: string): boolean {
    return url === this.base || url.startsWith(this.base + '/')
  }

  private request(url: string, job: JobContext, extra: {method?: 'POST'; headers?: Record<string, string>; body?: string} = {}): Promise<CiAnswer> {
    return this.server.request(url, {jobId: job.id, signal: job.deadline, ...extra, headers: {authorization: this.auth, ...extra.headers}})
  }

  private async trigger(job: JobContext): Promise<JenkinsState> {
    const {settings} = this.options
    const name = settings.job ?? configurationValue(job, 'ProjectName')
    if (!name) throw new ActionConfigurationError('no Jenkins job: set settings.job or the ProjectName action configuration property')
    const parameters: Record<string, string> = {...settings.parameters}
    if (settings.forwardConfiguration) {
      for (const [key, value] of Object.entries(job.configuration)) if (key !== 'ProjectName') parameters[key] = value
    }
    const hasParameters = Object.keys(parameters).length > 0
    const url = `${this.base}/${jobPath(name)}/${hasParameters ? 'buildWithParameters' : 'build'}`
    const answer = await this.request(url, job, {
      method: 'POST',
      headers: {'content-type': 'application/x-www-form-urlencoded'},
      body: new URLSearchParams(parameters).toString(),
    })
    if (answer.status === 400) throw new ActionConfigurationError(`Jenkins refused to start ${name} (400): ${answer.text.slice(0, 300)}`)
    if (answer.status === 404) throw this.server.refused(answer, url)
    if (answer.status !== 201 && answer.status !== 200 && answer.status !== 302) throw new JobFailure('JobFailed', `Jenkins answered ${answer.status} when starting ${name}`)
    const location = answer.headers.location ?? ''
    const item = /\/queue\/item\/(\d+)\/?$/.exec(location)?.[1]
    if (!item) throw new JobFailure('JobFailed', `Jenkins started ${name} but gave no queue item (Location: ${displayUrl(location) || 'none'})`)
    job.logger.info('Jenkins build queued', {jenkinsJob: name, queueItem: Number(item)})
    return {queueUrl: `${this.base}/queue/item/${item}/`, job: name}
  }

  private async check(state: JenkinsState, job: JobContext): Promise<Step<JenkinsState>> {
    return 'queueUrl' in state ? this.checkQueue(state, job) : this.checkBuild(state, job)
  }

  private async checkQueue(state: {queueUrl: string; job: string}, job: JobContext): Promise<Step<JenkinsState>> {
    const url = `${state.queueUrl}api/json`
    const answer = await this.request(url, job)
    // Jenkins forgets a queue item a few minutes after it left the queue (or after a restart).
    if (answer.status === 404) throw new JobFailure('JobFailed', `Jenkins no longer knows queue item ${state.queueUrl}: the build cannot be followed`)
    if (answer.status >= 300) throw this.server.refused(answer, url)
    const item = this.server.json(answer, queueItemSchema)
    if (item.cancelled === true) return {done: true, outcome: {status: 'failed', type: 'JobFailed', message: 'the Jenkins build was cancelled while queued'}}
    if (item.executable) {
      // Follow the build under the configured URL (Jenkins' own root URL may differ, e.g. behind a proxy).
      const buildUrl = `${this.base}/${jobPath(state.job)}/${item.executable.number}/`
      job.logger.info('Jenkins build started', {build: item.executable.url ?? buildUrl})
      return this.checkBuild({buildUrl}, job)
    }
    return {done: false, state, summary: `Jenkins: waiting in the queue (${item.why ?? 'queued'})`, percentComplete: 0}
  }

  private async checkBuild(state: {buildUrl: string}, job: JobContext): Promise<Step<JenkinsState>> {
    const url = `${state.buildUrl}api/json?tree=number,url,result,building,timestamp,estimatedDuration,fullDisplayName`
    const answer = await this.request(url, job)
    if (answer.status >= 300) throw this.server.refused(answer, url)
    const build = this.server.json(answer, buildSchema)
    const buildUrl = build.url ?? state.buildUrl
    const label = build.fullDisplayName ?? `build #${String(build.number)}`
    const result = build.result ?? null
    if (result === 'SUCCESS') {
      return {done: true, outcome: {status: 'succeeded', summary: `${label}: SUCCESS`, externalExecutionId: buildUrl, percentComplete: 100}}
    }
    if (result) {
      const message = FAILED_RESULTS.has(result) ? `${label}: ${result}` : `${label}: unexpected result ${result}`
      return {done: true, outcome: {status: 'failed', type: 'JobFailed', message, externalExecutionId: buildUrl}}
    }
    const started = build.timestamp ?? 0
    const estimate = build.estimatedDuration ?? 0
    const percent = started > 0 && estimate > 0 ? Math.min(99, ((Date.now() - started) / estimate) * 100) : undefined
    return {done: false, state, summary: `${label}: building`, percentComplete: percent, externalExecutionId: buildUrl}
  }
}

function parseToken(text: string): z.infer<typeof tokenSchema> {
  const parsed = tokenSchema.safeParse(parseJson(text))
  if (parsed.success) return parsed.data
  throw new JobFailure('JobFailed', 'continuation token is not one this Jenkins handler wrote')
}
