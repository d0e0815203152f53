/**
 * `hooks serve`'s settings, resolved once: flags (with their environment variables) > the hooks:
 * section of --config > defaults. The jobs file and the token are read here, at start: a bad one
 * is a usage error naming the file and line (exit 2), not a surprise at the first execution.
 */
import type {JobsConfig} from '../core/jobs.js'
import {UsageError} from '../core/errors.js'
import {readToken} from './client.js'
import type {HooksConfig} from './config.js'
import type {HooksServiceOptions} from './service.js'

export interface ServeFlags {
  store?: string
  port?: number
  host?: string
  'token-file'?: string
  concurrency?: number
  'retry-max'?: number
  'retry-delay'?: number
  lease?: number
  keep?: number
  'body-limit'?: number
  'intake-timeout'?: number
  jobs?: string
  'stop-timeout': number
  config?: string
}

export type ServeSettings = HooksServiceOptions & {stopTimeoutMs: number}

export async function serveSettings(flags: ServeFlags): Promise<ServeSettings> {
  const {hooks: config = {}, jobs: jobsTable} = await loadHooksConfig(flags.config)
  const token = readToken(flags['token-file'] ?? config.tokenFile)
  if (!token) throw new UsageError('no API token for the task API', 'set CISTERN_HOOKS_TOKEN or --token-file (e.g. openssl rand -hex 32 > /etc/cistern/hooks.token)')
  const jobsFile = flags.jobs ?? config.jobs
  const jobs = jobsFile ? await import('../core/jobs.js').then(({loadJobs}) => loadJobs(jobsFile)) : jobsTable
  const {DEFAULT_PORT} = await import('./service.js')
  return {
    store: flags.store ?? config.store,
    port: flags.port ?? config.port ?? DEFAULT_PORT,
    host: flags.host ?? config.host ?? '0.0.0.0',
    token,
    concurrency: flags.concurrency ?? config.concurrency,
    retryMax: flags['retry-max'] ?? config.retryMax,
    retryDelayMs: flags['retry-delay'] ?? config.retryDelayMs,
    leaseMs: flags.lease ?? (config.lease ?? 60) * 1000,
    keep: flags.keep ?? config.keep,
    bodyLimit: flags['body-limit'] ?? config.bodyLimit,
    intakeTimeoutMs: flags['intake-timeout'] ?? (config.intakeTimeout === undefined ? undefined : config.intakeTimeout * 1000),
    jobs,
    stopTimeoutMs: flags['stop-timeout'],
  }
}

async function loadHooksConfig(path: string | undefined): Promise<{hooks?: HooksConfig; jobs?: JobsConfig}> {
  if (!path) return {}
  const [{loadConfig}, {cisternFileSchema}] = await Promise.all([import('../core/config.js'), import('./config.js')])
  return loadConfig(path, cisternFileSchema)
}
