/**
 * The listener's `.sqslistener` file: Bang!'s keys, read as the original did (same defaults),
 * plus cistern's additions. Relative paths in it resolve against the file's own directory.
 */
import {homedir} from 'node:os'
import {dirname, isAbsolute, join, resolve} from 'node:path'
import {z} from 'zod'

import {loadConfig} from '../core/config.js'
import {UsageError} from '../core/errors.js'
import {defaultDbPath} from '../core/paths.js'

const seconds = (what: string) => z.number({error: `${what}: expected a number of seconds`}).nonnegative()

export const listenerSchema = z
  .object({
    // Bang!'s keys (defaults are the original constructor's).
    aws_region: z.string().min(1).optional(),
    job_queue_name: z.string().min(1).optional(),
    response_queue_name: z.string().min(1).optional(),
    polling_interval: seconds('polling_interval').default(2),
    jobs_config_path: z.string().min(1).default('/home/bang-dispatcher/jobs.yml'),
    logging_config_path: z.string().min(1).optional(),
    // cistern additions.
    job_queue_url: z.string().min(1).optional(),
    response_queue_url: z.string().min(1).optional(),
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
  /** Queue URLs as openQueue takes them (names become sqs://<name>). */
  requestQueueUrl: string
  responseQueueUrl: string
  pollingIntervalSeconds: number
  jobsPath: string
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
  /** Keys of the file this version does not know (warned about). */
  unknownKeys: string[]
}

const KNOWN = new Set(Object.keys(listenerSchema.shape))

export function defaultConfigPath(): string {
  return join(homedir(), '.sqslistener')
}

/** Expand `~/` and resolve relative paths against the config file's directory. */
export function resolvePath(path: string, baseDir: string): string {
  if (path === '~') return homedir()
  if (path.startsWith('~/')) return join(homedir(), path.slice(2))
  return isAbsolute(path) ? path : resolve(baseDir, path)
}

export async function loadListenerConfig(path: string): Promise<ListenerConfig> {
  const file = resolvePath(path, process.cwd())
  const raw = await loadConfig(file, listenerSchema)
  return toListenerConfig(raw, file)
}

export function toListenerConfig(raw: ListenerFile, file: string): ListenerConfig {
  const base = dirname(file)
  const queueUrl = (urlKey: string, url: string | undefined, name: string | undefined, fallbackName: string) => {
    if (url && name) throw new UsageError(`${file}: both ${urlKey} and ${urlKey.replace('_url', '_name')} are set`, 'keep one of them')
    if (url) return url.startsWith('sqlite:') ? sqliteUrl(url, base) : url
    return `sqs://${name ?? fallbackName}`
  }
  const requestQueueUrl = queueUrl('job_queue_url', raw.job_queue_url, raw.job_queue_name, 'bang-queue')
  const responseQueueUrl = queueUrl('response_queue_url', raw.response_queue_url, raw.response_queue_name, 'bang-response')
  if (requestQueueUrl === responseQueueUrl) {
    throw new UsageError(`${file}: the job queue and the response queue are the same (${requestQueueUrl})`, 'responses would be read back as requests: use two queues')
  }
  return {
    file,
    region: raw.aws_region,
    requestQueueUrl,
    responseQueueUrl,
    pollingIntervalSeconds: raw.polling_interval,
    jobsPath: resolvePath(raw.jobs_config_path, base),
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
    unknownKeys: Object.keys(raw).filter((key) => !KNOWN.has(key)),
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
