/**
 * The kinds of file `cistern config check` knows, each validated by the schema its piece loads it
 * with (nothing is copied here), and how a kind is told from a file's content and name.
 */
import {basename, dirname} from 'node:path'

import {workerSchema} from '../codepipeline/config.js'
import {parseConfig} from '../core/config.js'
import {jobsSchema} from '../core/jobs.js'
import {listenerSchema, toListenerConfig} from '../sqs-listener/config.js'
import {listenerJobsSchema} from '../sqs-listener/jobs.js'
import {CISTERN_SECTIONS, cisternConfigSchema} from './cistern.js'

export const CONFIG_KINDS = ['cistern', 'jobs', 'codepipeline-worker', 'sqs-listen', 'sqs-listen-jobs'] as const
export type ConfigKind = (typeof CONFIG_KINDS)[number]

/** One line per kind, for help texts. */
export const KIND_SUMMARIES: Record<ConfigKind, string> = {
  cistern: 'cistern.yml: one section per piece and the shared jobs table',
  jobs: 'jobs.yml: the shared job table (argv: or command: per job)',
  'codepipeline-worker': "codepipeline.yml: the codepipeline-worker's action types",
  'sqs-listen': ".sqslistener: Bang!'s listener keys and cistern's additions",
  'sqs-listen-jobs': "sqs-listen's jobs.yml: Bang!'s bang-stacks jobs and shared ones",
}

/**
 * Validates the text of a file of this kind; throws the piece's own ConfigError/UsageError (file,
 * line, key). Returns warnings: what the piece accepts but ignores.
 */
const validators: Record<ConfigKind, (text: string, path: string) => string[]> = {
  cistern(text, path) {
    parseConfig(text, cisternConfigSchema, path)
    return []
  },
  jobs(text, path) {
    parseConfig(text, jobsSchema, path)
    return []
  },
  'codepipeline-worker'(text, path) {
    parseConfig(text, workerSchema, path)
    return []
  },
  'sqs-listen'(text, path) {
    // toListenerConfig adds the listener's own checks (a queue named twice, one queue for both).
    const config = toListenerConfig(parseConfig(text, listenerSchema, path), path)
    return config.unknownKeys.map((key) => `${path}: ${key}: unknown key, sqs-listen ignores it`)
  },
  'sqs-listen-jobs'(text, path) {
    // The dispatcher command only shapes argv; any stands in for the listener's bang_command here.
    parseConfig(text, listenerJobsSchema(['bang'], dirname(path)), path)
    return []
  },
}

export function validateAs(kind: ConfigKind, text: string, path: string): string[] {
  return validators[kind](text, path)
}

const LISTENER_KEYS = new Set(Object.keys(listenerSchema.shape))

const isMapping = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)
const isJob = (value: unknown) => isMapping(value) && ('argv' in value || 'command' in value || 'bang-stacks' in value)
const isBangJob = (value: unknown) => isMapping(value) && 'bang-stacks' in value

/**
 * What a parsed file most likely is. Content first: codepipeline.yml's `actions:`, cistern.yml's
 * section names, a table of jobs, Bang!'s snake_case keys; then the file name; else cistern.yml,
 * whose schema names the sections it expected.
 */
export function detectKind(data: unknown, path: string): ConfigKind {
  if (isMapping(data)) {
    const keys = Object.keys(data)
    const values = Object.values(data)
    const sections = keys.filter((key) => CISTERN_SECTIONS.includes(key))
    // codepipeline.yml may name its jobs file with `jobs:`, which is also a cistern.yml section.
    if ('actions' in data) return 'codepipeline-worker'
    if (keys.length > 0 && sections.length === keys.length) return 'cistern'
    if (sections.length === 0 && values.some(isJob)) return values.some(isBangJob) ? 'sqs-listen-jobs' : 'jobs'
    if (sections.length === 0 && keys.some((key) => LISTENER_KEYS.has(key))) return 'sqs-listen'
    if (sections.length > 0) return 'cistern'
  }
  const name = basename(path).toLowerCase()
  if (name.includes('sqslistener')) return 'sqs-listen'
  if (name.includes('codepipeline')) return 'codepipeline-worker'
  if (name.includes('jobs')) return 'jobs'
  return 'cistern'
}
