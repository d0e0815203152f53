import {readFile} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'
import {parse as parseYaml} from 'yaml'
import {z} from 'zod'

import {loadConfig} from '../core/config.js'
import {ConfigError} from '../core/errors.js'
import {type JobsConfig, jobsSchema} from '../core/jobs.js'

/** The CodePipeline action categories a custom action type may have. */
export const CATEGORIES = ['Source', 'Build', 'Deploy', 'Test', 'Invoke', 'Approval', 'Compute'] as const

// Settings never carry a literal secret: they name the environment variable that holds it.
const literalSecret = z
  .unknown()
  .refine((value) => value === undefined, {
    error: 'a literal secret is not allowed in the config: export it in the environment and name the variable with tokenEnv',
  })
  .optional()
const noLiteralSecrets = {token: literalSecret, password: literalSecret, apiToken: literalSecret}

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name')
const positiveSeconds = z.number().positive()
/**
 * How long a CI server may stay down (no answer, 5xx, 429, refused credentials) for one job before
 * the job fails; until then the job waits and is handed back with a continuation token.
 */
const failAfterSeconds = z.number().min(0).default(600)

export const commandSettings = z
  .object({
    /** A job of jobs.yml; when absent the action configuration key `Job` names it. */
    job: z.string().min(1).optional(),
    /** Output artifact name → paths (files or directories, relative to the work dir) to zip. */
    outputs: z.record(z.string(), z.union([z.string(), z.array(z.string()).min(1)])).optional(),
    /** Overrides the job's timeout (seconds). */
    timeoutSeconds: positiveSeconds.optional(),
    /** How many trailing output lines go into a failure message. */
    keepLines: z.number().int().min(1).max(200).default(20),
    /** Parent directory of the per-job work directories (default: the OS temp dir). */
    workRoot: z.string().optional(),
    /** Keep the work directory after the job (debugging). */
    keepWorkDir: z.boolean().default(false),
  })
  .strict()

export const jenkinsSettings = z
  .object({
    url: z.url({protocol: /^https?$/, error: 'expected an http(s) URL of Jenkins'}),
    /** Jenkins job (folders as a/b); when absent the action configuration key `ProjectName` names it. */
    job: z.string().min(1).optional(),
    userEnv: envName.default('JENKINS_USER'),
    tokenEnv: envName.default('JENKINS_TOKEN'),
    /** Fixed build parameters, added to the action configuration values. */
    parameters: z.record(z.string(), z.string()).default({}),
    /** Forward the action configuration values as build parameters. */
    forwardConfiguration: z.boolean().default(true),
    /** How long one run waits for the build before handing back a continuation token. */
    waitSeconds: z.number().min(0).default(20),
    checkIntervalSeconds: positiveSeconds.default(5),
    requestTimeoutSeconds: positiveSeconds.default(15),
    failAfterSeconds,
    ...noLiteralSecrets,
  })
  .strict()

export const travisSettings = z
  .object({
    endpoint: z.url({protocol: /^https?$/, error: 'expected an http(s) URL'}).default('https://api.travis-ci.com'),
    /** owner/name; when absent the action configuration key `Repository` names it. */
    repo: z.string().min(1).optional(),
    /** Branch to build; when absent the action configuration key `Branch`, else master. */
    branch: z.string().min(1).optional(),
    tokenEnv: envName.default('TRAVIS_TOKEN'),
    /** Where people look at builds (externalExecutionId). */
    webUrl: z.url().default('https://app.travis-ci.com'),
    waitSeconds: z.number().min(0).default(20),
    checkIntervalSeconds: positiveSeconds.default(5),
    requestTimeoutSeconds: positiveSeconds.default(15),
    failAfterSeconds,
    ...noLiteralSecrets,
  })
  .strict()

const actionBase = {
  category: z.enum(CATEGORIES),
  provider: z.string().regex(/^[0-9A-Za-z_-]{1,35}$/, 'expected 1-35 letters, digits, - or _'),
  version: z.union([z.string(), z.number()]).transform(String).pipe(z.string().regex(/^[0-9A-Za-z_-]{1,9}$/, 'expected 1-9 letters, digits, - or _')),
  owner: z.literal('Custom').default('Custom'),
  /** Only jobs whose queryable action configuration matches these values. */
  queryParam: z.record(z.string(), z.string()).optional(),
  /** Action configuration keys that are secret (never logged); keys named like token/password always are. */
  secretConfiguration: z.array(z.string()).default([]),
  /** At most this many jobs of this action type at once (never more than the global limit). */
  concurrency: z.number().int().min(1).max(100).default(1),
}

export const actionSchema = z.discriminatedUnion('handler', [
  z.object({...actionBase, handler: z.literal('command'), settings: commandSettings.default({keepLines: 20, keepWorkDir: false})}).strict(),
  z.object({...actionBase, handler: z.literal('jenkins'), settings: jenkinsSettings}).strict(),
  z.object({...actionBase, handler: z.literal('travis'), settings: travisSettings}).strict(),
])

const workerShape = z
  .object({
    actions: z.array(actionSchema).min(1, 'list at least one action type'),
    /** Jobs across all action types at once. */
    concurrency: z.number().int().min(1).max(200).default(4),
    /** Seconds between polls: min while jobs come back, backing off with jitter to max when none do. */
    pollInterval: z
      .object({min: z.number().min(0).default(1), max: z.number().positive().default(30)})
      .strict()
      .refine((p) => p.max >= p.min, {error: 'pollInterval.max must be at least pollInterval.min', path: ['max']})
      .default({min: 1, max: 30}),
    /** jobs.yml for the command handler, relative to this file. */
    jobs: z.string().optional(),
    /** On SIGTERM, seconds running handlers get before they are stopped (keep systemd's TimeoutStopSec above it). */
    stopTimeout: z.number().min(0).default(60),
    region: z.string().optional(),
  })
  .strict()

/**
 * The worker's schema. Standalone (codepipeline.yml) a command action needs `jobs:` (a path); as a
 * cistern.yml section the file's top-level `jobs:` table can serve instead (sharedJobs).
 */
export function workerSchemaFor(options: {sharedJobs: boolean}) {
  return workerShape.superRefine((worker, ctx) => {
    worker.actions.forEach((action, index) => {
      if (action.handler === 'command' && !worker.jobs && !options.sharedJobs) {
        ctx.addIssue({code: 'custom', path: ['jobs'], message: `action ${index} uses the command handler: name the jobs.yml file with jobs:`})
      }
      const key = actionKey(action)
      if (worker.actions.findIndex((other) => actionKey(other) === key) !== index) {
        ctx.addIssue({code: 'custom', path: ['actions', index], message: `duplicate action type ${key}`})
      }
    })
  })
}

/** codepipeline.yml. */
export const workerSchema = workerSchemaFor({sharedJobs: false})
/** The `codepipeline-worker` section of cistern.yml (for `config check` and cistern.yml wiring). */
export const workerSectionSchema = workerSchemaFor({sharedJobs: true})

export type ActionConfig = z.infer<typeof actionSchema>
export type CommandActionConfig = Extract<ActionConfig, {handler: 'command'}>
export type JenkinsActionConfig = Extract<ActionConfig, {handler: 'jenkins'}>
export type TravisActionConfig = Extract<ActionConfig, {handler: 'travis'}>
export type WorkerConfig = z.infer<typeof workerSchema> & {
  /** The file it came from (jobs is resolved relative to it). */
  source?: string
  /** cistern.yml's top-level jobs table, when the section names no jobs.yml. */
  sharedJobs?: JobsConfig
}

/** Custom/Build/acme-build/1 (+ query parameters): names an action type in logs and errors. */
export function actionKey(action: Pick<ActionConfig, 'owner' | 'category' | 'provider' | 'version' | 'queryParam'>): string {
  const query = action.queryParam ? Object.entries(action.queryParam).map(([k, v]) => `${k}=${v}`).sort().join('&') : ''
  return `${action.owner}/${action.category}/${action.provider}/${action.version}${query ? '?' + query : ''}`
}

export const SECTION = 'codepipeline-worker' as const

/** A cistern.yml holding the worker's section (and maybe the shared jobs table); other sections are other pieces'. */
const sectionFileSchema = z.object({[SECTION]: workerSectionSchema, jobs: jobsSchema.optional()}).loose()

/**
 * Loads codepipeline.yml, or the `codepipeline-worker` section of a shared cistern.yml.
 * Errors are ConfigErrors naming file, line and key (exit 2).
 */
export async function loadWorkerConfig(path: string): Promise<WorkerConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new ConfigError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, path)
  }
  let sectioned = false
  try {
    const doc = parseYaml(text) as unknown
    sectioned = Boolean(doc && typeof doc === 'object' && SECTION in doc)
  } catch {
    // loadConfig reports the syntax error with its line
  }
  if (sectioned) {
    const whole = await loadConfig(path, sectionFileSchema)
    const config = whole[SECTION]
    if (!config.jobs && config.actions.some((action) => action.handler === 'command')) {
      if (!whole.jobs) {
        throw new ConfigError(`${path}: ${SECTION} has command actions but neither ${SECTION}.jobs (a jobs.yml path) nor a top-level jobs: table`, path)
      }
      return {...config, jobs: undefined, sharedJobs: whole.jobs, source: path}
    }
    return {...config, jobs: config.jobs ? resolve(dirname(path), config.jobs) : undefined, source: path}
  }
  const config = await loadConfig(path, workerSchema)
  return {...config, jobs: config.jobs ? resolve(dirname(path), config.jobs) : undefined, source: path}
}
