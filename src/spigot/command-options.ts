import {Flags} from '@oclif/core'

import {sharedFlags} from '../core/command.js'
import {UsageError} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {openQueue, queueScheme} from '../core/queue/index.js'
import type {Queue} from '../core/queue/types.js'
import {type PrCommenter, createCommenter} from './comments.js'
import type {SpigotConfig} from './config.js'
import {type StateStore, openStateStore, stateBackendFor} from './state.js'

/**
 * Flags the spigot commands share (toggle, status, drain, maintenance; serve may reuse them) and
 * the small builders that turn parsed flags into the services. Names follow the issue:
 * --queue/CISTERN_QUEUE, --jenkins-url/JENKINS_URL, --backend local|apigw, GITHUB_TOKEN.
 */

/** Where the Jenkins targets, routes and queue come from (keys match config.ts SpigotFlags). */
export const jenkinsFlags = {
  queue: sharedFlags.queue('Spigot queue URL (default the embedded sqlite:<data dir>/cistern.db#spigot).'),
  'jenkins-url': Flags.string({env: 'JENKINS_URL', summary: 'Jenkins base URL (user and API token from JENKINS_USER and JENKINS_TOKEN).'}),
  config: sharedFlags.config,
  'health-path': Flags.string({summary: 'Jenkins health-check path (default health/, then login, then api/json on older cores).'}),
  region: sharedFlags.region,
  profile: sharedFlags.profile,
}

/** Where the spigot's ON/OFF lives. */
export const stateFlags = {
  backend: Flags.option({
    options: ['local', 'apigw'] as const,
    env: 'CISTERN_SPIGOT_BACKEND',
    summary: 'State backend: local (the embedded db file) or apigw (the API Gateway stage variable spigot_state). Default apigw when an API is named, else local.',
  })(),
  'api-id': Flags.string({env: 'CISTERN_SPIGOT_API_ID', summary: 'apigw: REST API id of the original spigot.'}),
  'api-name': Flags.string({env: 'CISTERN_SPIGOT_API_NAME', summary: 'apigw: REST API name (looked up with GetRestApis).', exclusive: ['api-id']}),
  stage: Flags.string({env: 'CISTERN_SPIGOT_STAGE', default: 'prod', summary: 'apigw: stage holding the spigot_state variable.'}),
  'drain-rule': Flags.string({
    env: 'CISTERN_SPIGOT_DRAIN_RULE',
    summary: 'EventBridge rule scheduling the original drain Lambda: enabled when the state turns ON, disabled on OFF.',
  }),
  'state-db': Flags.string({env: 'CISTERN_SPIGOT_STATE_DB', summary: 'local: the SQLite file holding the state (default <data dir>/cistern.db).', hidden: true}),
}

/** GitHub pull-request comments (drain: "Jenkins is back"; serve: "queued"). */
export const commentFlags = {
  comment: Flags.boolean({default: false, summary: 'Comment on pull requests when their webhooks are queued (serve) or replayed (drain); token from GITHUB_TOKEN.'}),
  'github-url': Flags.string({env: 'GITHUB_URL', summary: 'GitHub API base URL for comments (GitHub Enterprise: https://<host>/api/v3).'}),
}

export interface StateFlagValues {
  backend?: 'local' | 'apigw'
  'api-id'?: string
  'api-name'?: string
  stage?: string
  'drain-rule'?: string
  'state-db'?: string
  region?: string
  profile?: string
}

export function openStateFrom(flags: StateFlagValues, log: Logger): Promise<StateStore> {
  const backend = stateBackendFor({backend: flags.backend, apiId: flags['api-id'], apiName: flags['api-name']})
  return openStateStore({
    backend,
    dbPath: flags['state-db'],
    apiId: flags['api-id'],
    apiName: flags['api-name'],
    stage: flags.stage,
    region: flags.region,
    profile: flags.profile,
    drainRule: flags['drain-rule'],
    log,
  })
}

/**
 * The spigot queue. An embedded queue is created FIFO (one group per repository keeps replay in
 * order) unless its URL says fifo=false; on SQS the queue's own type (.fifo) decides.
 */
export function openSpigotQueue(
  config: Pick<SpigotConfig, 'queue'>,
  options: {region?: string; profile?: string; visibilityTimeout?: number; log?: Logger},
): Promise<Queue> {
  const embeddedFifo = queueScheme(config.queue) === 'sqlite' && !/[?&]fifo=/.test(config.queue)
  return openQueue(config.queue, {...options, ...(embeddedFifo ? {fifo: true} : {})})
}

export function commenterFrom(flags: {comment?: boolean; 'github-url'?: string}, log: Logger, env: NodeJS.ProcessEnv = process.env): PrCommenter | undefined {
  if (!flags.comment) return undefined
  const token = env.GITHUB_TOKEN
  if (!token) throw new UsageError('--comment needs a GitHub token', 'set GITHUB_TOKEN (a token that may comment on the repositories)')
  return createCommenter({token, baseUrl: flags['github-url'], log})
}

const positiveNumber = Flags.custom<number>({
  parse: async (input) => {
    const value = Number(input)
    if (!Number.isFinite(value) || value <= 0) throw new Error(`expected a positive number, got "${input}"`)
    return value
  },
})

/** Replay tuning shared by drain and maintenance. */
export const drainFlags = {
  concurrency: Flags.integer({default: 4, min: 1, max: 256, summary: 'Deliveries in flight at once.'}),
  rate: positiveNumber({summary: 'At most this many deliveries per second (default unlimited).'}),
  'auto-off': Flags.boolean({default: false, summary: 'When Jenkins is unhealthy, set the spigot OFF (as the original drain Lambda did).'}),
  'delivery-timeout': Flags.integer({default: 30_000, min: 1, summary: 'Milliseconds Jenkins gets to answer one replayed webhook.'}),
  'health-timeout': Flags.integer({default: 5000, min: 1, summary: 'Milliseconds per health check.'}),
  'visibility-timeout': Flags.integer({min: 1, max: 43_200, summary: 'Seconds a received message stays hidden (extended while it is being delivered).'}),
  'retry-delay': Flags.integer({min: 0, max: 900, summary: 'Seconds before a failed message is retried (default: backoff by receive count).'}),
  ...commentFlags,
}

/** The replay tuning of drainFlags, as drain() takes it (drain and maintenance share it). */
export function drainTuningFrom(flags: {
  'auto-off': boolean
  concurrency: number
  rate?: number
  'delivery-timeout': number
  'health-timeout': number
  'visibility-timeout'?: number
  'retry-delay'?: number
  region?: string
  profile?: string
}) {
  return {
    autoOff: flags['auto-off'],
    concurrency: flags.concurrency,
    rate: flags.rate,
    deliveryTimeoutMs: flags['delivery-timeout'],
    healthTimeoutMs: flags['health-timeout'],
    visibilityTimeout: flags['visibility-timeout'],
    retryDelaySeconds: flags['retry-delay'],
    region: flags.region,
    profile: flags.profile,
  }
}
