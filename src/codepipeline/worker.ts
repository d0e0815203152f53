import type {CodePipelineClient} from '@aws-sdk/client-codepipeline'

import {ConfigError, UsageError} from '../core/errors.js'
import {type JobsConfig, loadJobs} from '../core/jobs.js'
import {type Logger, registerSecret} from '../core/log.js'
import {commandHandler} from './actions/command.js'
import {jenkinsHandler} from './actions/jenkins.js'
import {travisHandler} from './actions/travis.js'
import type {S3Factory} from './artifacts.js'
import {type WorkerConfig, actionKey} from './config.js'
import {type WorkerAction, type WorkerSummary, runWorker} from './poller.js'

export interface BuildOptions {
  env?: NodeJS.ProcessEnv
  region?: string
  s3Factory?: S3Factory
}

function secretFromEnv(env: NodeJS.ProcessEnv, name: string, what: string, source?: string): string {
  const value = env[name]
  if (!value) {
    throw new ConfigError(`${name} is not set: export ${what} in the environment (systemd: EnvironmentFile=)`, source)
  }
  registerSecret(value)
  return value
}

/** A handler per configured action type; every missing job, credential or setting is a ConfigError (exit 2). */
export async function buildActions(config: WorkerConfig, options: BuildOptions = {}): Promise<WorkerAction[]> {
  const env = options.env ?? process.env
  const needsJobs = config.actions.some((action) => action.handler === 'command')
  const jobs: JobsConfig = !needsJobs ? new Map() : config.jobs ? await loadJobs(config.jobs) : (config.sharedJobs ?? new Map())
  const jobsSource = config.jobs ?? `the jobs: table of ${config.source ?? 'the config'}`
  return config.actions.map((action) => {
    switch (action.handler) {
      case 'command': {
        if (action.settings.job && !jobs.has(action.settings.job)) {
          throw new ConfigError(`${actionKey(action)}: job ${JSON.stringify(action.settings.job)} is not defined in ${jobsSource}`, config.source)
        }
        return {config: action, handler: commandHandler({settings: action.settings, jobs, region: options.region, s3Factory: options.s3Factory})}
      }
      case 'jenkins': {
        const user = env[action.settings.userEnv]
        if (!user) throw new ConfigError(`${action.settings.userEnv} is not set: export the Jenkins user name in the environment`, config.source)
        const token = secretFromEnv(env, action.settings.tokenEnv, "the Jenkins user's API token", config.source)
        registerSecret(Buffer.from(`${user}:${token}`).toString('base64'))
        return {config: action, handler: jenkinsHandler({settings: action.settings, user, token})}
      }
      case 'travis': {
        const token = secretFromEnv(env, action.settings.tokenEnv, 'a Travis API token', config.source)
        return {config: action, handler: travisHandler({settings: action.settings, token})}
      }
    }
  })
}

export interface StartOptions extends BuildOptions {
  logger: Logger
  signal?: AbortSignal
  once?: boolean
  profile?: string
  /** For tests: an existing client (the mock). */
  client?: Pick<CodePipelineClient, 'send'>
}

/** Builds the client and handlers from a config and runs the poll loop until stopped (or one round). */
export async function startWorker(config: WorkerConfig, options: StartOptions): Promise<WorkerSummary> {
  const region = options.region ?? config.region
  let client = options.client
  if (!client) {
    const {CodePipelineClient} = await import('@aws-sdk/client-codepipeline')
    const created = new CodePipelineClient({...(region ? {region} : {}), ...(options.profile ? {profile: options.profile} : {})})
    try {
      await created.config.region()
    } catch {
      throw new UsageError('no AWS region', 'pass --region, set AWS_REGION or put region: in the codepipeline-worker config')
    }
    client = created
  }
  const resolvedRegion = region ?? (await regionOf(client))
  const actions = await buildActions(config, {...options, region: resolvedRegion})
  options.logger.info('codepipeline worker started', {
    actionTypes: actions.map((action) => actionKey(action.config)),
    concurrency: config.concurrency,
    once: Boolean(options.once),
  })
  return runWorker({
    client,
    actions,
    concurrency: config.concurrency,
    pollInterval: config.pollInterval,
    stopTimeout: config.stopTimeout,
    logger: options.logger,
    signal: options.signal,
    once: options.once,
  })
}

async function regionOf(client: Pick<CodePipelineClient, 'send'>): Promise<string | undefined> {
  const config = (client as {config?: {region?: () => Promise<string>}}).config
  try {
    return config?.region ? await config.region() : undefined
  } catch {
    return undefined
  }
}
