import type {CodePipelineClient} from '@aws-sdk/client-codepipeline'

import {TargetGates} from '../core/delivery.js'
import {ConfigError, UsageError} from '../core/errors.js'
import {type JobsConfig, loadJobs} from '../core/jobs.js'
import type {Logger} from '../core/log.js'
import {registerEnvironmentSecrets, registerSecret} from '../core/secrets.js'
import {CiTargets} from './actions/ci-server.js'
import {CommandHandler} from './actions/command.js'
import {JenkinsHandler} from './actions/jenkins.js'
import {TravisHandler} from './actions/travis.js'
import type {S3Factory} from './artifacts.js'
import {type ActionConfig, type WorkerConfig, actionKey} from './config.js'
import {type WorkerAction, type WorkerSummary, runWorker} from './poller.js'

export interface BuildOptions {
  env?: NodeJS.ProcessEnv
  region?: string
  s3Factory?: S3Factory
  /** What the CI handlers share (one HTTP client, the gates); a fresh set by default. */
  targets?: CiTargets
}

function secretFromEnv(env: NodeJS.ProcessEnv, name: string, what: string, source?: string): string {
  const value = env[name]
  if (!value) {
    throw new ConfigError(`${name} is not set: export ${what} in the environment (systemd: EnvironmentFile=)`, source)
  }
  registerSecret(value)
  return value
}

/**
 * A handler per configured action type; every missing job, credential or setting is a ConfigError
 * (exit 2). Every secret the environment holds is registered first (JENKINS_TOKEN, TRAVIS_TOKEN, AWS
 * keys…, configured or not), so no log line, job output or result can carry one.
 */
export async function buildActions(config: WorkerConfig, options: BuildOptions = {}): Promise<WorkerAction[]> {
  const env = options.env ?? process.env
  registerEnvironmentSecrets(env)
  const targets = options.targets ?? new CiTargets()
  const needsJobs = config.actions.some((action) => action.handler === 'command')
  const none: JobsConfig = new Map()
  const jobs = !needsJobs ? none : config.jobs ? await loadJobs(config.jobs) : (config.sharedJobs ?? none)
  const jobsSource = config.jobs ?? `the jobs: table of ${config.source ?? 'the config'}`
  return config.actions.map((action): WorkerAction => ({config: action, handler: handlerFor(action)}))

  function handlerFor(action: ActionConfig): WorkerAction['handler'] {
    switch (action.handler) {
      case 'command': {
        if (action.settings.job && !jobs.has(action.settings.job)) {
          throw new ConfigError(`${actionKey(action)}: job ${JSON.stringify(action.settings.job)} is not defined in ${jobsSource}`, config.source)
        }
        return new CommandHandler({settings: action.settings, jobs, region: options.region, s3Factory: options.s3Factory})
      }
      case 'jenkins': {
        const user = env[action.settings.userEnv]
        if (!user) throw new ConfigError(`${action.settings.userEnv} is not set: export the Jenkins user name in the environment`, config.source)
        const token = secretFromEnv(env, action.settings.tokenEnv, "the Jenkins user's API token", config.source)
        registerSecret(Buffer.from(`${user}:${token}`).toString('base64'))
        return new JenkinsHandler({settings: action.settings, user, token, targets})
      }
      case 'travis': {
        const token = secretFromEnv(env, action.settings.tokenEnv, 'a Travis API token', config.source)
        return new TravisHandler({settings: action.settings, token, targets})
      }
    }
  }
}

export interface StartOptions extends Omit<BuildOptions, 'targets'> {
  logger: Logger
  signal?: AbortSignal
  once?: boolean
  /** One-shot: no poll starts after this long (ms). */
  deadlineMs?: number
  /** One-shot: a target down this long with no success is given up (ms). */
  giveUpAfterMs?: number
  profile?: string
  /** For tests: an existing client (aws-sdk-client-mock stubs its send). */
  client?: CodePipelineClient
}

/** Builds the client and handlers from a config and runs the poll loop until stopped (or one pass). */
export async function startWorker(config: WorkerConfig, options: StartOptions): Promise<WorkerSummary> {
  const region = options.region ?? config.region
  // The client this call creates is this call's to destroy; a given one (a test's mock) is not.
  let created: CodePipelineClient | undefined
  const client = options.client ?? (created = await codePipelineClient(region, options.profile))
  const resolvedRegion = region ?? (await client.config.region().catch(() => undefined))
  const gates = new TargetGates({once: options.once, giveUpAfterMs: options.giveUpAfterMs, log: options.logger})
  const targets = new CiTargets({gates})
  try {
    const actions = await buildActions(config, {...options, region: resolvedRegion, targets})
    options.logger.info('codepipeline worker started', {
      actionTypes: actions.map((action) => actionKey(action.config)),
      concurrency: config.concurrency,
      once: Boolean(options.once),
    })
    return await runWorker({
      client,
      actions,
      gates,
      concurrency: config.concurrency,
      pollInterval: config.pollInterval,
      stopTimeout: config.stopTimeout,
      logger: options.logger,
      signal: options.signal,
      once: options.once,
      deadlineMs: options.deadlineMs,
      giveUpAfterMs: options.giveUpAfterMs,
    })
  } finally {
    // Idle keep-alive connections to CodePipeline, Jenkins and Travis close with the worker.
    await targets.close()
    created?.destroy()
  }
}

async function codePipelineClient(region: string | undefined, profile: string | undefined): Promise<CodePipelineClient> {
  const {CodePipelineClient} = await import('@aws-sdk/client-codepipeline')
  const client = new CodePipelineClient({...(region ? {region} : {}), ...(profile ? {profile} : {})})
  try {
    await client.config.region()
  } catch {
    throw new UsageError('no AWS region', 'pass --region, set AWS_REGION or put region: in the codepipeline-worker config')
  }
  return client
}
