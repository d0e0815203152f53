import {displayUrl} from '../../core/log.js'
import type {JenkinsActionConfig} from '../config.js'
import {ActionConfigurationError, type ActionHandler, type HandlerOutcome, JobFailure, type JobContext} from '../job.js'
import {type CallOptions, Unreachable, call, follow, parseJson} from './http.js'

export interface JenkinsHandlerOptions {
  settings: JenkinsActionConfig['settings']
  user: string
  token: string
}

/** What a continuation token carries: where the build is (queue item first, then the build). */
type JenkinsState = {queueUrl: string; job: string; buildUrl?: undefined} | {buildUrl: string; queueUrl?: undefined}
type JenkinsToken = {queueUrl?: string; job?: string; buildUrl?: string; errors?: number}

/** job/a/job/b for a job "a/b" in a folder. */
export function jobPath(name: string): string {
  return name
    .split('/')
    .filter(Boolean)
    .map((segment) => `job/${encodeURIComponent(segment)}`)
    .join('/')
}

const FAILED_RESULTS = new Set(['FAILURE', 'UNSTABLE', 'ABORTED', 'NOT_BUILT'])

/**
 * Triggers a Jenkins build (user + API token), follows the queue item to the build and reports
 * progress through continuation tokens until the build has a result.
 */
export function jenkinsHandler(options: JenkinsHandlerOptions): ActionHandler {
  const {settings} = options
  const base = settings.url.replace(/\/+$/, '')
  const auth = 'Basic ' + Buffer.from(`${options.user}:${options.token}`).toString('base64')
  const timeoutMs = settings.requestTimeoutSeconds * 1000

  const request = (url: string, job: JobContext, extra: Partial<CallOptions> = {}) =>
    call(url, {what: 'Jenkins', timeoutMs, signal: job.deadline, ...extra, headers: {authorization: auth, ...extra.headers}})

  // Only ever send the credentials to the configured Jenkins, whatever a token or a Location says.
  const ours = (url: string) => url === base || url.startsWith(base + '/')

  async function trigger(job: JobContext): Promise<JenkinsState> {
    const name = settings.job ?? job.configuration.ProjectName
    if (!name) throw new ActionConfigurationError('no Jenkins job: set settings.job or the ProjectName action configuration property')
    const parameters: Record<string, string> = {...settings.parameters}
    if (settings.forwardConfiguration) {
      for (const [key, value] of Object.entries(job.configuration)) if (key !== 'ProjectName') parameters[key] = value
    }
    const hasParameters = Object.keys(parameters).length > 0
    const url = `${base}/${jobPath(name)}/${hasParameters ? 'buildWithParameters' : 'build'}`
    let result
    try {
      result = await request(url, job, {
        method: 'POST',
        headers: {'content-type': 'application/x-www-form-urlencoded'},
        body: new URLSearchParams(parameters).toString(),
      })
    } catch (error) {
      if (error instanceof Unreachable) throw new JobFailure('SystemUnavailable', error.message)
      throw error
    }
    if (result.status === 400) {
      throw new ActionConfigurationError(`Jenkins refused to start ${name} (400): ${result.text.slice(0, 300)}`)
    }
    if (result.status !== 201 && result.status !== 200 && result.status !== 302) {
      throw new JobFailure('JobFailed', `Jenkins answered ${result.status} when starting ${name}`)
    }
    const location = result.headers.get('location') ?? ''
    const item = /\/queue\/item\/(\d+)\/?$/.exec(location)
    if (!item) throw new JobFailure('JobFailed', `Jenkins started ${name} but gave no queue item (Location: ${displayUrl(location) || 'none'})`)
    job.logger.info('Jenkins build queued', {jenkinsJob: name, queueItem: Number(item[1])})
    return {queueUrl: `${base}/queue/item/${item[1]}/`, job: name}
  }

  async function check(state: JenkinsState, job: JobContext) {
    if (state.queueUrl) {
      const item = parseJson(
        await request(`${state.queueUrl}api/json`, job).catch((error: unknown) => {
          // Jenkins forgets a queue item a few minutes after it left the queue (or after a restart).
          if (error instanceof JobFailure && error.type === 'ConfigurationError') {
            throw new JobFailure('JobFailed', `Jenkins no longer knows queue item ${state.queueUrl}: the build cannot be followed`)
          }
          throw error
        }),
        'Jenkins',
      )
      if (item.cancelled === true) {
        return {done: true as const, outcome: {status: 'failed', type: 'JobFailed', message: 'the Jenkins build was cancelled while queued'} satisfies HandlerOutcome}
      }
      const executable = item.executable as {number?: number; url?: string} | null | undefined
      if (executable && typeof executable.number === 'number') {
        // Follow the build under the configured URL (Jenkins' own root URL may differ, e.g. behind a proxy).
        const buildUrl = `${base}/${jobPath(state.job)}/${executable.number}/`
        job.logger.info('Jenkins build started', {build: executable.url ?? buildUrl})
        return check({buildUrl}, job)
      }
      const why = typeof item.why === 'string' ? item.why : 'queued'
      return {done: false as const, state, summary: `Jenkins: waiting in the queue (${why})`, percentComplete: 0}
    }
    const build = parseJson(
      await request(`${state.buildUrl}api/json?tree=number,url,result,building,timestamp,estimatedDuration,fullDisplayName`, job),
      'Jenkins',
    )
    const url = typeof build.url === 'string' ? build.url : state.buildUrl
    const label = typeof build.fullDisplayName === 'string' ? build.fullDisplayName : `build #${String(build.number)}`
    const result = typeof build.result === 'string' ? build.result : null
    if (result === 'SUCCESS') {
      return {done: true as const, outcome: {status: 'succeeded', summary: `${label}: SUCCESS`, externalExecutionId: url, percentComplete: 100} satisfies HandlerOutcome}
    }
    if (result && FAILED_RESULTS.has(result)) {
      return {done: true as const, outcome: {status: 'failed', type: 'JobFailed', message: `${label}: ${result}`, externalExecutionId: url} satisfies HandlerOutcome}
    }
    if (result) {
      return {done: true as const, outcome: {status: 'failed', type: 'JobFailed', message: `${label}: unexpected result ${result}`, externalExecutionId: url} satisfies HandlerOutcome}
    }
    const started = Number(build.timestamp)
    const estimate = Number(build.estimatedDuration)
    const percent = started > 0 && estimate > 0 ? Math.min(99, ((Date.now() - started) / estimate) * 100) : undefined
    return {done: false as const, state, summary: `${label}: building`, percentComplete: percent, externalExecutionId: url}
  }

  return {
    async run(job: JobContext): Promise<HandlerOutcome> {
      let state: JenkinsState
      let errors = 0
      if (job.continuationToken) {
        const token = parseToken(job.continuationToken)
        const url = token.buildUrl ?? token.queueUrl
        if (!url || !ours(url)) throw new JobFailure('JobFailed', `continuation token does not point at ${base}: was the Jenkins URL changed?`)
        if (!token.buildUrl && typeof token.job !== 'string') throw new JobFailure('JobFailed', 'continuation token is not one this Jenkins handler wrote')
        state = token.buildUrl ? {buildUrl: token.buildUrl} : {queueUrl: token.queueUrl!, job: token.job!}
        errors = token.errors ?? 0
      } else {
        state = await trigger(job)
      }
      return follow(state, errors, {check: (s) => check(s, job), token: (s, e) => JSON.stringify(e > 0 ? {...s, errors: e} : s)}, {
        waitMs: settings.waitSeconds * 1000,
        intervalMs: settings.checkIntervalSeconds * 1000,
        stopping: job.stopping,
        what: 'Jenkins',
      })
    },
  }
}

function parseToken(text: string): JenkinsToken {
  try {
    const value = JSON.parse(text) as JenkinsToken
    if (value && (typeof value.buildUrl === 'string' || typeof value.queueUrl === 'string')) return value
  } catch {
    // fall through
  }
  throw new JobFailure('JobFailed', 'continuation token is not one this Jenkins handler wrote')
}
