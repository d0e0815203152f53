import {UsageError} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {openQueue, queueScheme} from '../core/queue/index.js'
import type {Queue} from '../core/queue/types.js'
import type {PrCommenter} from './comments.js'
import type {SpigotConfig} from './config.js'
import type {DrainOptions} from './drain.js'
import {type StateStore, openStateStore, stateBackendFor} from './state.js'

/**
 * The small builders that turn the spigot commands' parsed flags (src/flags/spigot.ts) into the
 * services: the state store, the queue, the PR commenter, the drain's tuning.
 */

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
  options: {region?: string; profile?: string; visibilityTimeout?: number; consumer?: boolean; deadLetterUrl?: string; log?: Logger},
): Promise<Queue> {
  const embeddedFifo = queueScheme(config.queue) === 'sqlite' && !/[?&]fifo=/.test(config.queue)
  return openQueue(config.queue, {...options, ...(embeddedFifo ? {fifo: true} : {})})
}

/** The commenter's module (with zod for the payloads it reads) is loaded only with --comment. */
export async function commenterFrom(
  flags: {comment?: boolean; 'github-url'?: string},
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PrCommenter | undefined> {
  if (!flags.comment) return undefined
  const token = env.GITHUB_TOKEN
  if (!token) throw new UsageError('--comment needs a GitHub token', 'set GITHUB_TOKEN (a token that may comment on the repositories)')
  const {createCommenter} = await import('./comments.js')
  return createCommenter({token, baseUrl: flags['github-url'], log})
}

/** The parsed values of the replay tuning in src/flags/spigot.ts drainFlags. */
export interface DrainTuningFlagValues {
  'auto-off': boolean
  concurrency: number
  rate?: number
  deadline: number
  'give-up-after': number
  'delivery-timeout': number
  'health-timeout': number
  'visibility-timeout'?: number
  'retry-delay'?: number
  region?: string
  profile?: string
}

/** The replay tuning flags (src/flags/spigot.ts drainFlags) as drain() takes them; drain and maintenance share it. */
export function drainTuningFrom(flags: DrainTuningFlagValues): Pick<
  DrainOptions,
  'autoOff' | 'concurrency' | 'rate' | 'deadlineMs' | 'giveUpAfterMs' | 'deliveryTimeoutMs' | 'healthTimeoutMs' | 'visibilityTimeout' | 'retryDelaySeconds' | 'region' | 'profile'
> {
  return {
    autoOff: flags['auto-off'],
    concurrency: flags.concurrency,
    rate: flags.rate,
    deadlineMs: flags.deadline,
    giveUpAfterMs: flags['give-up-after'],
    deliveryTimeoutMs: flags['delivery-timeout'],
    healthTimeoutMs: flags['health-timeout'],
    visibilityTimeout: flags['visibility-timeout'],
    retryDelaySeconds: flags['retry-delay'],
    region: flags.region,
    profile: flags.profile,
  }
}
