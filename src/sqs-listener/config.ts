/**
 * The listener's settings: Bang!'s `.sqslistener` keys, read as the original did (same defaults),
 * plus cistern's additions, from a `.sqslistener` file or the `sqs-listen:` section of a
 * cistern.yml; flags and their environment variables win over the file (core/settings.ts: an
 * empty variable is unset). Relative paths resolve against the file's own directory.
 */
import {homedir} from 'node:os'
import {dirname, isAbsolute, join, resolve} from 'node:path'
import {z} from 'zod'

import {loadConfig} from '../core/config.js'
import {UsageError} from '../core/errors.js'
import {jobsSchema, type JobsConfig} from '../core/jobs.js'
import {defaultDbPath} from '../core/paths.js'
import {queueScheme} from '../core/queue/index.js'

/** The section of cistern.yml the listener reads. */
export const SECTION = 'sqs-listen'
/** Bang!'s default jobs file, when the config names none (and a cistern.yml has no jobs: table). */
const BANG_JOBS_PATH = '/home/bang-dispatcher/jobs.yml'

const seconds = (what: string) => z.number({error: `${what}: expected a number of seconds`}).nonnegative()

export const listenerSchema = z
  .object({
    // Bang!'s keys (defaults are the original constructor's).
    aws_region: z.string().min(1).optional(),
    job_queue_name: z.string().min(1).optional(),
    response_queue_name: z.string().min(1).optional(),
    polling_interval: seconds('polling_interval').default(2),
    // Default /home/bang-dispatcher/jobs.yml; in a cistern.yml, its jobs: table when it has one.
    jobs_config_path: z.string().min(1).optional(),
    logging_config_path: z.string().min(1).optional(),
    // cistern additions.
    job_queue_url: z.string().min(1).optional(),
    response_queue_url: z.string().min(1).optional(),
    dead_letter_queue_url: z
      .string()
      .refine((value) => /^https?:\/\/\S+$/.test(value), {error: 'expected an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)'})
      .optional(),
    max_concurrent_jobs: z.number().int().min(1).max(100).default(1),
    visibility_timeout: z.number().int().min(1).max(43_200).default(60),
    job_timeout: z.number().positive().optional(),
    response_encoding: z.enum(['plain', 'base64']).default('base64'),
    bang_command: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).default('bang'),
    stop_timeout: seconds('stop_timeout').default(60),
    completed_window: seconds('completed_window').default(86_400),
    state_db: z.string().min(1).optional(),
    working_lines: z.number().int().min(1).max(10_000).default(50),
    working_interval: z.number().positive().default(2),
  })
  .loose()

export type ListenerFile = z.infer<typeof listenerSchema>

export interface ListenerConfig {
  file: string
  region?: string
  /** AWS shared-config profile (--profile / AWS_PROFILE). */
  profile?: string
  /** Queue URLs as openQueue takes them (names become sqs://<name>). */
  requestQueueUrl: string
  responseQueueUrl: string
  /** Where bad requests go on an SQS job queue without a RedrivePolicy. */
  deadLetterUrl?: string
  pollingIntervalSeconds: number
  /** The jobs file, or where the shared table came from (`cistern.yml#jobs`): named in "unknown job" answers. */
  jobsPath: string
  /** cistern.yml's jobs: table, when its sqs-listen section names no jobs file. */
  sharedJobs?: JobsConfig
  loggingPath?: string
  maxConcurrentJobs: number
  visibilityTimeout: number
  jobTimeoutSeconds?: number
  responseEncoding: 'plain' | 'base64'
  bangCommand: string[]
  stopTimeoutSeconds: number
  completedWindowSeconds: number
  /** SQLite file holding the completed-request window, or ':memory:'. */
  stateDb: string
  workingLines: number
  workingIntervalMs: number
  /** Keys of the file this version does not know (warned about), as the file names them (`sqs-listen.x` in a cistern.yml). */
  unknownKeys: string[]
}

const KNOWN = new Set(Object.keys(listenerSchema.shape))

/** A cistern.yml as the listener reads it: its section and the shared jobs table; other sections belong to other pieces. */
const cisternFileSchema = z.object({[SECTION]: listenerSchema, jobs: jobsSchema.optional()}).loose()

/** What the command line gives (each flag with its environment variable, as oclif read them). */
export interface ListenerFlags {
  /** --config / CONFIG_PATH: a .sqslistener, or a cistern.yml with an sqs-listen: section. */
  config?: string
  /** --concurrency: overrides max_concurrent_jobs. */
  concurrency?: number
  /** --region / AWS_REGION: overrides aws_region. */
  region?: string
  /** --profile / AWS_PROFILE. */
  profile?: string
  /** --dead-letter-queue: overrides dead_letter_queue_url. */
  deadLetterQueue?: string
}

export function defaultConfigPath(): string {
  return join(homedir(), '.sqslistener')
}

/** Expand `~/` and resolve relative paths against the config file's directory. */
export function resolvePath(path: string, baseDir: string): string {
  if (path === '~') return homedir()
  if (path.startsWith('~/')) return join(homedir(), path.slice(2))
  return isAbsolute(path) ? path : resolve(baseDir, path)
}

/**
 * Flag > environment > config file > default. The file is --config (or CONFIG_PATH, what Bang!'s
 * /etc/default/bang-dispatcher set), else CISTERN_CONFIG when that cistern.yml has an sqs-listen:
 * section, else ~/.sqslistener.
 */
export async function resolveListenerConfig(flags: ListenerFlags, env: NodeJS.ProcessEnv = process.env): Promise<ListenerConfig> {
  const path = flags.config ?? env.CONFIG_PATH ?? (await cisternConfigWithSection(env.CISTERN_CONFIG)) ?? defaultConfigPath()
  const config = await loadListenerConfig(path)
  const deadLetterUrl = flags.deadLetterQueue ?? config.deadLetterUrl
  if (deadLetterUrl && queueScheme(config.requestQueueUrl) !== 'sqs') {
    throw new UsageError(`a dead-letter queue (${deadLetterUrl}) is for an SQS job queue; ${config.requestQueueUrl} keeps its dead letters itself`, 'leave --dead-letter-queue / dead_letter_queue_url out')
  }
  return {
    ...config,
    maxConcurrentJobs: flags.concurrency ?? config.maxConcurrentJobs,
    region: flags.region ?? config.region,
    ...(flags.profile ? {profile: flags.profile} : {}),
    ...(deadLetterUrl ? {deadLetterUrl} : {}),
  }
}

/** CISTERN_CONFIG, when it names a cistern.yml with an sqs-listen: section. */
async function cisternConfigWithSection(path: string | undefined): Promise<string | undefined> {
  if (!path) return undefined
  const file = resolvePath(path, process.cwd())
  return hasSection(await loadConfig(file, z.unknown())) ? file : undefined
}

function hasSection(data: unknown): boolean {
  return typeof data === 'object' && data !== null && !Array.isArray(data) && SECTION in data
}

/** A .sqslistener, or the sqs-listen: section of a cistern.yml (with its jobs: table). */
export async function loadListenerConfig(path: string): Promise<ListenerConfig> {
  const file = resolvePath(path, process.cwd())
  if (!hasSection(await loadConfig(file, z.unknown()))) return toListenerConfig(await loadConfig(file, listenerSchema), file)
  const whole = await loadConfig(file, cisternFileSchema)
  return toListenerConfig(whole[SECTION], file, {section: SECTION, ...(whole.jobs ? {sharedJobs: whole.jobs} : {})})
}

export function toListenerConfig(raw: ListenerFile, file: string, within: {section?: string; sharedJobs?: JobsConfig} = {}): ListenerConfig {
  const base = dirname(file)
  const key = (name: string) => (within.section ? `${within.section}.${name}` : name)
  const queueUrl = (urlKey: string, url: string | undefined, name: string | undefined, fallbackName: string) => {
    if (url && name) throw new UsageError(`${file}: both ${key(urlKey)} and ${key(urlKey.replace('_url', '_name'))} are set`, 'keep one of them')
    if (url) return url.startsWith('sqlite:') ? sqliteUrl(url, base) : url
    return `sqs://${name ?? fallbackName}`
  }
  const requestQueueUrl = queueUrl('job_queue_url', raw.job_queue_url, raw.job_queue_name, 'bang-queue')
  const responseQueueUrl = queueUrl('response_queue_url', raw.response_queue_url, raw.response_queue_name, 'bang-response')
  if (requestQueueUrl === responseQueueUrl) {
    throw new UsageError(`${file}: the job queue and the response queue are the same (${requestQueueUrl})`, 'responses would be read back as requests: use two queues')
  }
  const sharedJobs = raw.jobs_config_path === undefined ? within.sharedJobs : undefined
  return {
    file,
    ...(raw.aws_region ? {region: raw.aws_region} : {}),
    requestQueueUrl,
    responseQueueUrl,
    ...(raw.dead_letter_queue_url ? {deadLetterUrl: raw.dead_letter_queue_url} : {}),
    pollingIntervalSeconds: raw.polling_interval,
    jobsPath: sharedJobs ? `${file} (jobs:)` : resolvePath(raw.jobs_config_path ?? BANG_JOBS_PATH, base),
    ...(sharedJobs ? {sharedJobs} : {}),
    loggingPath: raw.logging_config_path ? resolvePath(raw.logging_config_path, base) : undefined,
    maxConcurrentJobs: raw.max_concurrent_jobs,
    visibilityTimeout: raw.visibility_timeout,
    jobTimeoutSeconds: raw.job_timeout,
    responseEncoding: raw.response_encoding,
    bangCommand: typeof raw.bang_command === 'string' ? raw.bang_command.split(/\s+/).filter(Boolean) : raw.bang_command,
    stopTimeoutSeconds: raw.stop_timeout,
    completedWindowSeconds: raw.completed_window,
    stateDb: raw.state_db === ':memory:' ? ':memory:' : raw.state_db ? resolvePath(raw.state_db, base) : defaultDbPath(),
    workingLines: raw.working_lines,
    workingIntervalMs: Math.round(raw.working_interval * 1000),
    unknownKeys: Object.keys(raw)
      .filter((name) => !KNOWN.has(name))
      .map(key),
  }
}

/** `sqlite:relative/q.db#name` resolves against the config file's directory. */
function sqliteUrl(url: string, base: string): string {
  const rest = url.slice('sqlite:'.length)
  const hash = rest.indexOf('#')
  const path = hash === -1 ? rest : rest.slice(0, hash)
  if (path === '' || path === ':memory:') return url
  return `sqlite:${resolvePath(path, base)}${hash === -1 ? '' : rest.slice(hash)}`
}
