import {readFileSync} from 'node:fs'

import {z} from 'zod'

import {UsageError} from '../core/errors.js'
import {defaultQueueUrl} from '../core/paths.js'
import {DEFAULT_GITHUB_API} from './github.js'
import {gitHostForApi} from './repo.js'
import {GITHUB_STATES, type StatusOptions, unknownPlaceholders} from './status.js'

const template = (what: string) =>
  z
    .string()
    .min(1)
    .refine((value) => unknownPlaceholders(value).length === 0, {
      message: `${what} may use only {org}, {pipeline}, {number}, {state}, {status}, {branch}, {message}, {commit}, {short_sha}`,
    })

const httpUrl = z.string().refine((value) => /^https?:\/\/[^/]/.test(value) && URL.canParse(value), {message: 'expected an http(s) URL'})

/** The `status-queue:` section of cistern.yml. Flags and environment variables override it. */
export const statusQueueSection = z
  .object({
    queue: z.string().min(1).optional(),
    concurrency: z.number().int().min(1).max(100).optional(),
    anyHost: z.boolean().optional(),
    /** Extra repository hosts that belong to this GitHub (e.g. a separate SSH host name). */
    repoHosts: z.array(z.string().min(1)).optional(),
    buildkiteUrl: httpUrl.optional(),
    context: template('context').optional(),
    description: template('description').optional(),
    /** Buildkite state → GitHub state overrides, e.g. {canceled: failure}. */
    states: z.record(z.string(), z.enum(GITHUB_STATES)).optional(),
    /** Receives after which a message that keeps failing is dead-lettered by the worker (0 = leave it to the queue). */
    maxAttempts: z.number().int().min(0).max(1000).optional(),
    visibilityTimeout: z.number().int().min(1).max(43_200).optional(),
    /** On SIGTERM, how long in-flight statuses get before they are released (match systemd TimeoutStopSec). */
    drainSeconds: z.number().int().min(1).max(3600).optional(),
    github: z
      .object({
        url: httpUrl.optional(),
        concurrency: z.number().int().min(1).max(100).optional(),
        writesPerMinute: z.number().int().min(0).optional(),
        retries: z.number().int().min(0).max(10).optional(),
        retryBaseMs: z.number().int().min(1).max(60_000).optional(),
        inlineWaitMaxSeconds: z.number().int().min(0).max(60).optional(),
        maxRetryDelaySeconds: z.number().int().min(1).max(43_200).optional(),
        requestTimeoutMs: z.number().int().min(100).max(300_000).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
export type StatusQueueSection = z.infer<typeof statusQueueSection>

/** A whole cistern.yml: other pieces' sections are theirs to validate. */
export const cisternFileSchema = z.object({'status-queue': statusQueueSection.optional()}).loose()

export interface StatusQueueFlags {
  queue?: string
  concurrency?: number
  'any-host'?: boolean
  'github-url'?: string
  'github-token-file'?: string
  'buildkite-url'?: string
  context?: string
  'max-attempts'?: number
}

/** Everything the worker needs, resolved: flags > environment > config file > defaults. */
export interface StatusQueueSettings {
  queueUrl: string
  /** Facade API key (API_KEY), when the queue is the facade. */
  apiKey?: string
  concurrency: number
  visibilityTimeout: number
  drainDeadlineMs: number
  maxAttempts: number
  githubUrl: string
  token: string
  /** Repository hosts accepted, or 'any'. */
  hosts: string[] | 'any'
  status: StatusOptions
  github: {
    concurrency: number
    writesPerMinute: number
    retries: number
    retryBaseMs: number
    inlineWaitMaxSeconds: number
    maxRetryDelaySeconds: number
    requestTimeoutMs: number
  }
}

export interface ResolveInput {
  flags: StatusQueueFlags
  env: NodeJS.ProcessEnv
  file?: StatusQueueSection
  /** Reads a secret file (the token file); injected for tests. */
  readFile?: (path: string) => string
}

export function resolveSettings({flags, env, file = {}, readFile}: ResolveInput): StatusQueueSettings {
  const githubUrl = (flags['github-url'] ?? env.GITHUB_URL ?? file.github?.url ?? DEFAULT_GITHUB_API).replace(/\/+$/, '')
  if (!/^https?:\/\/[^/]/.test(githubUrl) || !URL.canParse(githubUrl)) {
    throw new UsageError(`GITHUB_URL "${githubUrl}" is not a URL`, 'set it to the API base, e.g. https://api.github.com or https://ghe.example.com/api/v3')
  }

  let token = env.GITHUB_ACCESS_TOKEN?.trim()
  if (flags['github-token-file']) {
    try {
      token = (readFile ?? defaultReadFile)(flags['github-token-file']).trim()
    } catch (error) {
      throw new UsageError(`cannot read --github-token-file ${flags['github-token-file']}: ${(error as Error).message}`, 'point it at a file holding the token')
    }
  }
  if (!token) {
    throw new UsageError(
      'GITHUB_ACCESS_TOKEN is not set',
      'export GITHUB_ACCESS_TOKEN=<a token allowed to create commit statuses (repo:status)> or pass --github-token-file',
    )
  }

  const queueUrl = flags.queue?.trim() || facadeUrl(env.API_URL) || file.queue || defaultQueueUrl('status-queue', env)
  const concurrency = flags.concurrency ?? file.concurrency ?? 16
  const anyHost = flags['any-host'] || file.anyHost || false
  const github = file.github ?? {}
  const isDotCom = gitHostForApi(githubUrl) === 'github.com'

  return {
    queueUrl,
    apiKey: env.API_KEY || undefined,
    concurrency,
    visibilityTimeout: file.visibilityTimeout ?? 60,
    drainDeadlineMs: (file.drainSeconds ?? 30) * 1000,
    maxAttempts: flags['max-attempts'] ?? file.maxAttempts ?? 10,
    githubUrl,
    token,
    hosts: anyHost ? 'any' : [gitHostForApi(githubUrl), ...(file.repoHosts ?? []).map((host) => host.toLowerCase())],
    status: {
      buildkiteUrl: flags['buildkite-url'] ?? file.buildkiteUrl,
      contextTemplate: flags.context ?? file.context,
      descriptionTemplate: file.description,
      states: file.states,
    },
    github: {
      concurrency: github.concurrency ?? concurrency,
      // github.com counts statuses as content creation (80 a minute per user); GHE has no such limit by default.
      writesPerMinute: github.writesPerMinute ?? (isDotCom ? 80 : 0),
      retries: github.retries ?? 2,
      retryBaseMs: github.retryBaseMs ?? 1000,
      inlineWaitMaxSeconds: github.inlineWaitMaxSeconds ?? 5,
      maxRetryDelaySeconds: github.maxRetryDelaySeconds ?? 900,
      requestTimeoutMs: github.requestTimeoutMs ?? 30_000,
    },
  }
}

/** The original worker's API_URL (the facade stage URL) as a queue URL. */
export function facadeUrl(apiUrl: string | undefined): string | undefined {
  if (!apiUrl?.trim()) return undefined
  const url = apiUrl.trim()
  const withScheme = url.startsWith('apigw+') ? url : `apigw+${url}`
  return withScheme.endsWith('/') ? withScheme : `${withScheme}/`
}

function defaultReadFile(path: string): string {
  return readFileSync(path, 'utf8')
}
