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
  return (Object.hasOwn(overrides, state) ? overrides[state] : undefined) ?? (Object.hasOwn(DEFAULT_STATE_MAP, state) ? DEFAULT_STATE_MAP[state] : undefined)
}

/** `{name}` placeholders that are not template fields (for config validation). */
export function unknownPlaceholders(template: string): string[] {
  const names = [...template.matchAll(/\{([^{}]*)\}/g)].map((match) => match.at(1) ?? '')
  return names.filter((name) => !(TEMPLATE_FIELDS as readonly string[]).includes(name))
}

/** The value of each template field for a build. */
const FIELDS: Readonly<Record<TemplateField, (build: BuildInfo) => string>> = {
  org: (build) => build.organization,
  pipeline: (build) => build.pipeline,
  number: (build) => String(build.number),
  state: (build) => build.state,
  status: (build) => (Object.hasOwn(PHRASES, build.state) ? PHRASES[build.state] : undefined) ?? build.state,
  branch: (build) => build.branch ?? '',
  message: (build) => (build.message ?? '').split(/\r?\n/, 1).at(0)?.trim() ?? '',
  commit: (build) => build.commit,
  short_sha: (build) => build.commit.slice(0, 7),
}

const isField = (name: string): name is TemplateField => Object.hasOwn(FIELDS, name)

/** A template split once into literal text and fields (a `{name}` that is no field stays as written). */
function compileTemplate(template: string): (build: BuildInfo) => string {
  const parts = template.split(/\{([a-z_]+)\}/)
  return (build) => {
    let out = ''
    // split() with a capture group puts the captured names at the odd indexes.
    for (let index = 0; index < parts.length; index++) {
      const part = parts[index] ?? ''
      if (index % 2 === 0) out += part
      else out += isField(part) ? FIELDS[part](build) : `{${part}}`
    }
    return out
  }
}

export function renderTemplate(template: string, build: BuildInfo): string {
  return compileTemplate(template)(build)
}

/** Cut to `max` characters (code points, so an emoji is not split), ending with an ellipsis. */
export function truncate(text: string, max = MAX_DESCRIPTION): string {
  const collapsed = text.replace(/\s+/g, ' ').trim()
  // Never more code points than UTF-16 units: a short text needs no counting.
  if (collapsed.length <= max) return collapsed
  const chars = Array.from(collapsed)
  if (chars.length <= max) return collapsed
  return chars.slice(0, max - 1).join('').trimEnd() + '…'
}

export function targetUrl(build: BuildInfo, buildkiteUrl = DEFAULT_BUILDKITE_URL): string {
  return `${buildkiteUrl.replace(/\/+$/, '')}/${buildPath(build)}`
}

function buildPath(build: BuildInfo): string {
  return `${encodeURIComponent(build.organization)}/${encodeURIComponent(build.pipeline)}/builds/${build.number}`
}

/**
 * Commit statuses for builds under one set of options: the templates are compiled once (a worker
 * renders one status per message, hundreds a second).
 */
export class StatusRenderer {
  private readonly base: string
  private readonly context: (build: BuildInfo) => string
  private readonly description: (build: BuildInfo) => string

  constructor(private readonly options: StatusOptions = {}) {
    this.base = (options.buildkiteUrl ?? DEFAULT_BUILDKITE_URL).replace(/\/+$/, '')
    this.context = compileTemplate(options.contextTemplate ?? DEFAULT_CONTEXT_TEMPLATE)
    this.description = compileTemplate(options.descriptionTemplate ?? DEFAULT_DESCRIPTION_TEMPLATE)
  }

  /** The commit status for a build, or undefined when its state is not one we know. */
  render(build: BuildInfo): CommitStatus | undefined {
    const state = githubStateFor(build.state, this.options.states)
    if (!state) return undefined
    return {
      state,
      target_url: `${this.base}/${buildPath(build)}`,
      description: truncate(this.description(build)),
      context: this.context(build).trim(),
    }
  }
}

/** The commit status for a build, or undefined when its state is not one we know. */
export function commitStatusFor(build: BuildInfo, options: StatusOptions = {}): CommitStatus | undefined {
  return new StatusRenderer(options).render(build)
}
