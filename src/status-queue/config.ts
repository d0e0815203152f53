import {z} from 'zod'

import {UsageError} from '../core/errors.js'
import {defaultQueueUrl} from '../core/paths.js'
import {readSecretFile, registerSecret} from '../core/secrets.js'
import {DEFAULT_GITHUB_API} from './github.js'
import {gitHostForApi} from './repo.js'
import {GITHUB_STATES, type StatusOptions, unknownPlaceholders} from './status.js'

const PLACEHOLDERS = '{org}, {pipeline}, {number}, {state}, {status}, {branch}, {message}, {commit}, {short_sha}'

const template = (what: string) =>
  z
    .string()
    .min(1)
    .refine((value) => unknownPlaceholders(value).length === 0, {error: `${what} may use only ${PLACEHOLDERS}`})

/** --context is checked as the config file's `context:` is (issue 14: a typo there was accepted). */
function contextFlag(value: string | undefined): string | undefined {
  const unknown = value === undefined ? [] : unknownPlaceholders(value)
  if (unknown.length > 0) throw new UsageError(`--context "${value}": unknown placeholder {${unknown.join('}, {')}}`, `use only ${PLACEHOLDERS}`)
  return value
}

const httpUrl = z.string().refine((value) => /^https?:\/\/[^/]/.test(value) && URL.canParse(value), {error: 'expected an http(s) URL'})

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
    /** Attempts after which a message that keeps failing is dead-lettered by the worker (0 = the queue's own limit only). */
    maxAttempts: z.number().int().min(0).max(1000).optional(),
    /** --once: no receive after this many seconds (default 300). */
    deadlineSeconds: z.number().int().min(1).max(86_400).optional(),
    /** --once: give GitHub up after this many seconds down with no success (default 30). */
    giveUpAfterSeconds: z.number().int().min(1).max(86_400).optional(),
    /** Where dead letters go when the queue is SQS without a redrive policy (an SQS URL), or the facade (a sqlite: URL). */
    deadLetterQueue: z.string().min(1).optional(),
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
  /** In ms (the duration flag builder's unit). */
  deadline?: number
  /** In ms. */
  'give-up-after'?: number
  'dead-letter-queue'?: string
}

/** Everything the worker needs, resolved: flags > environment > config file > defaults. */
export interface StatusQueueSettings {
  queueUrl: string
  /** Facade API key (API_KEY), when the queue is the facade. */
  apiKey?: string
  concurrency: number
  visibilityTimeout: number
  /** On SIGTERM, how long in-flight statuses get before they are released. */
  stopDeadlineMs: number
  /** --once: no receive after this long. */
  deadlineMs: number
  /** --once: GitHub down this long with no success ends the run (exit 3). */
  giveUpAfterMs: number
  /** Attempts after which a message that keeps failing goes dead (0: the queue's own limit only). */
  maxAttempts: number
  /** SQS dead-letter queue, or the facade's sqlite: dead-letter store. */
  deadLetterUrl?: string
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
}

export function resolveSettings({flags, env, file = {}}: ResolveInput): StatusQueueSettings {
  const githubUrl = (flags['github-url'] ?? env.GITHUB_URL ?? file.github?.url ?? DEFAULT_GITHUB_API).replace(/\/+$/, '')
  if (!/^https?:\/\/[^/]/.test(githubUrl) || !URL.canParse(githubUrl)) {
    throw new UsageError(`GITHUB_URL "${githubUrl}" is not a URL`, 'set it to the API base, e.g. https://api.github.com or https://ghe.example.com/api/v3')
  }

  const tokenFile = flags['github-token-file']
  const token = tokenFile ? readSecretFile(tokenFile, {what: 'GitHub token', source: '--github-token-file'}) : env.GITHUB_ACCESS_TOKEN?.trim()
  if (!token) {
    throw new UsageError(
      'GITHUB_ACCESS_TOKEN is not set',
      'export GITHUB_ACCESS_TOKEN=<a token allowed to create commit statuses (repo:status)> or pass --github-token-file',
    )
  }

  registerSecret(token)
  // An empty variable is unset before this runs (core/settings.ts): `??` chains are right.
  const queueUrl = flags.queue?.trim() ?? facadeUrl(env.API_URL) ?? file.queue ?? defaultQueueUrl('status-queue', env)
  const concurrency = flags.concurrency ?? file.concurrency ?? 16
  const anyHost = flags['any-host'] === true || file.anyHost === true
  const github = file.github ?? {}
  const isDotCom = gitHostForApi(githubUrl) === 'github.com'

  return {
    queueUrl,
    apiKey: env.API_KEY,
    concurrency,
    visibilityTimeout: file.visibilityTimeout ?? 60,
    stopDeadlineMs: (file.drainSeconds ?? 30) * 1000,
    deadlineMs: flags.deadline ?? (file.deadlineSeconds ?? 300) * 1000,
    giveUpAfterMs: flags['give-up-after'] ?? (file.giveUpAfterSeconds ?? 30) * 1000,
    maxAttempts: flags['max-attempts'] ?? file.maxAttempts ?? 10,
    deadLetterUrl: flags['dead-letter-queue'] ?? file.deadLetterQueue,
    githubUrl,
    token,
    hosts: anyHost ? 'any' : [gitHostForApi(githubUrl), ...(file.repoHosts ?? []).map((host) => host.toLowerCase())],
    status: {
      buildkiteUrl: flags['buildkite-url'] ?? file.buildkiteUrl,
      contextTemplate: contextFlag(flags.context) ?? file.context,
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
