import {errorMessage} from '../core/errors.js'

/**
 * The queue body → the build facts a commit status needs. EventBridge rules usually deliver the
 * event `detail` (the original service's input transformer did), but a rule without one delivers
 * the whole envelope `{"detail-type": "Build Finished", "source": …, "detail": {…}}`: both work.
 *
 *   detail = {version, build: {number, commit, state, branch, message, …},
 *             pipeline: {slug, repo, …}, organization: {slug, …}}
 */
export interface BuildInfo {
  /** EventBridge detail-type when the envelope was delivered ("Build Finished"); else undefined. */
  eventType?: string
  organization: string
  pipeline: string
  number: number
  commit: string
  state: string
  branch?: string
  message?: string
  /** Repository clone URL as configured on the pipeline. */
  repository: string
}

export type EventParse =
  | {kind: 'build'; build: BuildInfo}
  /** A well-formed event that is not about a build (e.g. "Job Finished"): nothing to post. */
  | {kind: 'ignore'; reason: string}
  /** Cannot ever be turned into a status: dead-letter it. */
  | {kind: 'invalid'; reason: string}

type Json = Record<string, unknown>

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value)
const text = (value: unknown): string | undefined => (typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined)

export function parseBuildEvent(body: string): EventParse {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch (error) {
    return {kind: 'invalid', reason: `body is not JSON (${errorMessage(error)}); first bytes: ${JSON.stringify(body.slice(0, 60))}`}
  }
  if (!isObject(parsed)) return {kind: 'invalid', reason: `body is JSON ${Array.isArray(parsed) ? 'array' : typeof parsed}, not an event object`}

  let detail: Json = parsed
  let eventType: string | undefined
  if ('detail' in parsed || 'detail-type' in parsed) {
    eventType = text(parsed['detail-type'])
    if (!isObject(parsed.detail)) return {kind: 'invalid', reason: 'envelope has no "detail" object'}
    detail = parsed.detail
    if (eventType && !eventType.startsWith('Build ')) return {kind: 'ignore', reason: `event "${eventType}" is not a build event`}
  }

  const {build, pipeline, organization} = detail
  if (!isObject(build)) {
    if (isObject(detail.job)) return {kind: 'ignore', reason: 'job event, not a build event'}
    return {kind: 'invalid', reason: 'unknown event shape: no "build" object (expected the Buildkite EventBridge detail or envelope)'}
  }
  if (!isObject(pipeline)) return {kind: 'invalid', reason: 'unknown event shape: no "pipeline" object'}
  if (!isObject(organization)) return {kind: 'invalid', reason: 'unknown event shape: no "organization" object'}

  const number = typeof build.number === 'number' ? build.number : Number(text(build.number))
  if (!Number.isInteger(number) || number < 0) return {kind: 'invalid', reason: 'build.number is missing or not a whole number'}
  const state = text(build.state)
  if (!state) return {kind: 'invalid', reason: 'build.state is missing'}
  const commit = text(build.commit)
  if (!commit) return {kind: 'invalid', reason: 'build.commit is missing'}
  const pipelineSlug = text(pipeline.slug)
  if (!pipelineSlug) return {kind: 'invalid', reason: 'pipeline.slug is missing'}
  const organizationSlug = text(organization.slug)
  if (!organizationSlug) return {kind: 'invalid', reason: 'organization.slug is missing'}
  const repository = text(pipeline.repo) ?? text(pipeline.repository)
  if (!repository) return {kind: 'invalid', reason: 'pipeline.repo is missing'}

  return {
    kind: 'build',
    build: {
      eventType,
      organization: organizationSlug,
      pipeline: pipelineSlug,
      number,
      commit,
      state: state.toLowerCase(),
      branch: text(build.branch),
      message: text(build.message),
      repository,
    },
  }
}

/** A full 40-hex commit SHA (lower-cased), or undefined for HEAD, a branch name or a short SHA. */
export function commitSha(commit: string): string | undefined {
  return /^[0-9a-f]{40}$/i.test(commit) ? commit.toLowerCase() : undefined
}
