import {ConfigError, UsageError} from '../core/errors.js'
import {defaultQueueUrl} from '../core/paths.js'
import {readSecretFile, registerSecret} from '../core/secrets.js'
import {unsetEmptyVariables} from '../core/settings.js'
import type {SpigotFileConfig} from './config-file.js'

/** A Jenkins the spigot forwards to. `url` always ends with '/'. */
export interface JenkinsTarget {
  name: string
  url: string
  user?: string
  token?: string
}

/** Where one GitHub event goes: a path relative to each target's URL. */
export interface RouteRule {
  path: string
  targets: string[]
}

export interface SpigotConfig {
  queue: string
  /** The first is 'default' (from --jenkins-url / JENKINS_URL). */
  targets: JenkinsTarget[]
  /** GitHub event name → rule. */
  routes: Record<string, RouteRule>
  /**
   * An event with no rule of its own: forwarded by the `'*'` rule ('forward', the default: Jenkins
   * got every event while the hook pointed at it), 202 and a warning ('accept') or 400 ('reject').
   */
  unrouted: Unrouted
  /** The drain's health-check path (default: /health/, then /login, then /api/json). */
  healthPath?: string
  /** Intake's forward timeout: GitHub gives up after 10 s (GHES 30 s), so keep it short. */
  forwardTimeoutMs: number
  webhookSecret?: string
  largePayloadBucket?: string
}

export const UNROUTED = ['forward', 'accept', 'reject'] as const
export type Unrouted = (typeof UNROUTED)[number]

export const DEFAULT_FORWARD_TIMEOUT_MS = 3000
export const DEFAULT_TARGET = 'default'

/** The routes of the original spigot's Jenkins (GitHub plugin + GitHub pull request builder). */
export const DEFAULT_ROUTES: Readonly<Record<string, RouteRule>> = Object.freeze({
  push: {path: 'github-webhook/', targets: [DEFAULT_TARGET]},
  pull_request: {path: 'ghprbhook/', targets: [DEFAULT_TARGET]},
  issue_comment: {path: 'ghprbhook/', targets: [DEFAULT_TARGET]},
})

/** The flags spigot commands share; keys are the oclif flag names, so a command passes `flags` as is. */
export interface SpigotFlags {
  queue?: string
  'jenkins-url'?: string
  config?: string
  'webhook-secret-file'?: string
  'large-payload-bucket'?: string
  /** Milliseconds. */
  'forward-timeout'?: number
  'health-path'?: string
  unrouted?: Unrouted
}

export const SECTION = 'spigot'

/**
 * Flags > environment > config file (--config / CISTERN_CONFIG, section `spigot`) > defaults.
 * A missing Jenkins URL is a UsageError naming --jenkins-url / JENKINS_URL, unless jenkinsOptional.
 */
export async function resolveSpigotConfig(
  flags: SpigotFlags,
  given: NodeJS.ProcessEnv = process.env,
  options: {jenkinsOptional?: boolean} = {},
): Promise<SpigotConfig> {
  // The commands' environment has its empty variables unset already; the Lambda's has not.
  const env = {...given}
  unsetEmptyVariables(env)
  const configPath = flags.config ?? env.CISTERN_CONFIG
  const file = configPath ? await loadSection(configPath) : {}
  const source = configPath ?? 'config'

  const jenkinsUrl = flags['jenkins-url'] ?? env.JENKINS_URL ?? file.jenkinsUrl
  if (!jenkinsUrl && !options.jenkinsOptional) {
    throw new UsageError('no Jenkins URL', 'pass --jenkins-url https://jenkins.example.com/ or set JENKINS_URL (or spigot.jenkinsUrl in the config file)')
  }
  // Empty variables are unset before parsing (core/settings.ts): `??` and plain reads are right.
  const user = env.JENKINS_USER
  const token = env.JENKINS_TOKEN
  registerSecret(token)
  // Read-only commands (status) work without a Jenkins: they then report none configured.
  const targets: JenkinsTarget[] = jenkinsUrl ? [{name: DEFAULT_TARGET, url: normaliseJenkinsUrl(jenkinsUrl, '--jenkins-url'), user, token}] : []
  for (const extra of file.targets ?? []) {
    if (targets.some((t) => t.name === extra.name)) {
      throw new ConfigError(`${source}: spigot.targets: the target name "${extra.name}" is used twice`, configPath, undefined, 'spigot.targets')
    }
    const extraToken = extra.tokenEnv ? env[extra.tokenEnv] : undefined
    if (extra.tokenEnv && !extraToken) {
      throw new ConfigError(`${source}: spigot.targets.${extra.name}.tokenEnv: the environment variable ${extra.tokenEnv} is not set`, configPath, undefined, 'spigot.targets')
    }
    registerSecret(extraToken)
    targets.push({name: extra.name, url: normaliseJenkinsUrl(extra.url, `spigot.targets.${extra.name}.url`), user: extra.user, token: extraToken})
  }

  const routes = new Map<string, RouteRule>(Object.entries(DEFAULT_ROUTES).map(([event, rule]) => [event, {path: rule.path, targets: [...rule.targets]}]))
  for (const [event, rule] of Object.entries(file.routes ?? {})) {
    if (rule === null) {
      if (event === '*') {
        const why = 'null would leave events without a rule nowhere to go; set spigot.unrouted: accept (202, not forwarded) or reject (400) instead'
        throw new ConfigError(`${source}: spigot.routes.*: ${why}`, configPath, undefined, 'spigot.routes.*')
      }
      routes.delete(event)
      continue
    }
    const path = typeof rule === 'string' ? rule : rule.path
    const names = typeof rule === 'string' ? [DEFAULT_TARGET] : (rule.targets ?? [DEFAULT_TARGET])
    for (const name of names) {
      if (!targets.some((t) => t.name === name)) {
        throw new ConfigError(
          `${source}: spigot.routes.${event}.targets: unknown target "${name}" (known: ${targets.map((t) => t.name).join(', ')})`,
          configPath,
          undefined,
          `spigot.routes.${event}.targets`,
        )
      }
    }
    routes.set(event, {path: path.replace(/^\/+/, ''), targets: names})
  }

  const unrouted = flags.unrouted ?? parseUnrouted(env.CISTERN_SPIGOT_UNROUTED) ?? file.unrouted ?? 'forward'
  const forwardTimeoutMs = flags['forward-timeout'] ?? file.forwardTimeoutMs ?? DEFAULT_FORWARD_TIMEOUT_MS
  if (!Number.isInteger(forwardTimeoutMs) || forwardTimeoutMs < 1) {
    throw new UsageError(`--forward-timeout must be a positive number of milliseconds, got ${forwardTimeoutMs}`)
  }

  const secretFile = flags['webhook-secret-file'] ?? file.webhookSecretFile
  const secretSource = flags['webhook-secret-file'] ? '--webhook-secret-file' : `spigot.webhookSecretFile in ${source}`
  const webhookSecret = secretFile ? readSecretFile(secretFile, {what: 'webhook secret', source: secretSource}) : env.GITHUB_WEBHOOK_SECRET
  registerSecret(webhookSecret)

  return {
    queue: flags.queue ?? env.CISTERN_QUEUE ?? file.queue ?? defaultQueueUrl('spigot', env),
    targets,
    routes: Object.fromEntries(routes),
    unrouted,
    healthPath: flags['health-path'] ?? file.healthPath,
    forwardTimeoutMs,
    webhookSecret,
    largePayloadBucket: flags['large-payload-bucket'] ?? env.CISTERN_LARGE_PAYLOAD_BUCKET ?? file.largePayloadBucket,
  }
}

/** The target by name; the default target when no name (messages queued by the original Lambda). */
export function targetNamed(config: SpigotConfig, name: string | undefined): JenkinsTarget | undefined {
  if (!name) return config.targets[0]
  return config.targets.find((t) => t.name === name)
}

/** Parse and check a Jenkins base URL, ending it with '/' so relative route paths resolve under it. */
export function normaliseJenkinsUrl(value: string, where = '--jenkins-url'): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new UsageError(`${where}: "${value}" is not a URL`, 'use the Jenkins base URL, e.g. https://jenkins.example.com/')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${where}: "${value}" is not an http(s) URL`, 'use the Jenkins base URL, e.g. https://jenkins.example.com/')
  }
  if (url.username || url.password) {
    throw new UsageError(`${where}: credentials in the URL are not allowed`, 'set JENKINS_USER and JENKINS_TOKEN instead')
  }
  url.search = ''
  url.hash = ''
  if (!url.pathname.endsWith('/')) url.pathname += '/'
  return url.toString()
}

function parseUnrouted(value: string | undefined): Unrouted | undefined {
  if (!value) return undefined
  const known = UNROUTED.find((option) => option === value)
  if (!known) throw new UsageError(`CISTERN_SPIGOT_UNROUTED must be ${UNROUTED.join(', ')}, got "${value}"`)
  return known
}

/** Only a config file needs zod and yaml (~170 modules): without one, status and drain start without them. */
async function loadSection(path: string): Promise<SpigotFileConfig> {
  const {loadSpigotSection} = await import('./config-file.js')
  return loadSpigotSection(path)
}
