import type {BuildInfo} from './event.js'

/** The four states GitHub accepts for a commit status. */
export const GITHUB_STATES = ['error', 'failure', 'pending', 'success'] as const
export type GitHubState = (typeof GITHUB_STATES)[number]

/**
 * Buildkite build state → GitHub commit status state. `canceled`, `canceling`, `not_run` and
 * `skipped` are `error` by default (the build said nothing about the commit); operators who prefer
 * `failure` override them in cistern.yml (`status-queue.states`).
 */
export const DEFAULT_STATE_MAP: Readonly<Record<string, GitHubState>> = {
  passed: 'success',
  failed: 'failure',
  canceled: 'error',
  cancelled: 'error',
  canceling: 'error',
  not_run: 'error',
  skipped: 'error',
  blocked: 'pending',
  creating: 'pending',
  scheduled: 'pending',
  started: 'pending',
  running: 'pending',
  // A job failed but others still run, and a retry may still pass: not final yet.
  failing: 'pending',
}

/** How the default description phrases each state ("Build #42 is blocked"). */
const PHRASES: Readonly<Record<string, string>> = {
  passed: 'passed',
  failed: 'failed',
  canceled: 'was canceled',
  cancelled: 'was canceled',
  canceling: 'is being canceled',
  not_run: 'was not run',
  skipped: 'was skipped',
  blocked: 'is blocked',
  creating: 'is being created',
  scheduled: 'is scheduled',
  started: 'has started',
  running: 'is running',
  failing: 'is failing',
}

/** GitHub rejects a description longer than 140 characters (422). */
export const MAX_DESCRIPTION = 140

export const TEMPLATE_FIELDS = ['org', 'pipeline', 'number', 'state', 'status', 'branch', 'message', 'commit', 'short_sha'] as const
export type TemplateField = (typeof TEMPLATE_FIELDS)[number]

export interface StatusOptions {
  /** Buildkite web base for target_url (Buildkite on a custom domain); default https://buildkite.com. */
  buildkiteUrl?: string
  /** Default `buildkite/{pipeline}`. */
  contextTemplate?: string
  /** Default `Build #{number} {status}`. */
  descriptionTemplate?: string
  /** Overrides of DEFAULT_STATE_MAP (e.g. {canceled: 'failure'}). */
  states?: Readonly<Record<string, GitHubState>>
}

export interface CommitStatus {
  state: GitHubState
  target_url: string
  description: string
  context: string
}

export const DEFAULT_BUILDKITE_URL = 'https://buildkite.com'
export const DEFAULT_CONTEXT_TEMPLATE = 'buildkite/{pipeline}'
export const DEFAULT_DESCRIPTION_TEMPLATE = 'Build #{number} {status}'

export function githubStateFor(buildState: string, overrides: StatusOptions['states'] = {}): GitHubState | undefined {
  const state = buildState.toLowerCase()
  return overrides[state] ?? DEFAULT_STATE_MAP[state]
}

/** `{name}` placeholders that are not template fields (for config validation). */
export function unknownPlaceholders(template: string): string[] {
  const names = [...template.matchAll(/\{([^{}]*)\}/g)].map((match) => match[1]!)
  return names.filter((name) => !(TEMPLATE_FIELDS as readonly string[]).includes(name))
}

export function renderTemplate(template: string, build: BuildInfo): string {
  const values: Record<TemplateField, string> = {
    org: build.organization,
    pipeline: build.pipeline,
    number: String(build.number),
    state: build.state,
    status: PHRASES[build.state] ?? build.state,
    branch: build.branch ?? '',
    message: (build.message ?? '').split(/\r?\n/)[0]!.trim(),
    commit: build.commit,
    short_sha: build.commit.slice(0, 7),
  }
  return template.replace(/\{([a-z_]+)\}/g, (whole, name: string) => (name in values ? values[name as TemplateField] : whole))
}

/** Cut to `max` characters (code points, so an emoji is not split), ending with an ellipsis. */
export function truncate(text: string, max = MAX_DESCRIPTION): string {
  const chars = [...text.replace(/\s+/g, ' ').trim()]
  if (chars.length <= max) return chars.join('')
  return chars.slice(0, max - 1).join('').trimEnd() + '…'
}

export function targetUrl(build: BuildInfo, buildkiteUrl = DEFAULT_BUILDKITE_URL): string {
  const base = buildkiteUrl.replace(/\/+$/, '')
  const path = [build.organization, build.pipeline, 'builds', String(build.number)].map(encodeURIComponent).join('/')
  return `${base}/${path}`
}

/** The commit status for a build, or undefined when its state is not one we know. */
export function commitStatusFor(build: BuildInfo, options: StatusOptions = {}): CommitStatus | undefined {
  const state = githubStateFor(build.state, options.states)
  if (!state) return undefined
  return {
    state,
    target_url: targetUrl(build, options.buildkiteUrl),
    description: truncate(renderTemplate(options.descriptionTemplate ?? DEFAULT_DESCRIPTION_TEMPLATE, build)),
    context: renderTemplate(options.contextTemplate ?? DEFAULT_CONTEXT_TEMPLATE, build).trim(),
  }
}
