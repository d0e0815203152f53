import {mkdir, mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {type JobResult, type JobSpec, type JobsConfig, type RunJobOptions, runJob as coreRunJob} from '../../core/jobs.js'
import {type S3Factory, defaultS3Factory, downloadArtifact, uploadArtifact, zipPaths} from '../artifacts.js'
import type {CommandActionConfig} from '../config.js'
import {ActionConfigurationError, type ActionHandler, type HandlerOutcome, type JobContext} from '../job.js'

export const KILL_GRACE_MS = 3000

export interface CommandHandlerOptions {
  settings: CommandActionConfig['settings']
  jobs: JobsConfig
  region?: string
  s3Factory?: S3Factory
  /** For tests; the shared runner by default. */
  runJob?: (job: JobSpec, options: RunJobOptions) => Promise<JobResult>
}

/** CP_CONFIG_<KEY>: upper-case, anything but letters and digits becomes _. */
export function envKey(prefix: string, name: string): string {
  return prefix + name.toUpperCase().replace(/[^A-Z0-9]/g, '_')
}

/** A safe directory name for an artifact. */
function dirName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_')
}

/**
 * Runs a job of jobs.yml for each CodePipeline job: input artifacts are unzipped into a fresh work
 * directory, the job runs there, and the output artifacts are zipped and uploaded (SSE-KMS).
 */
export function commandHandler(options: CommandHandlerOptions): ActionHandler {
  const {settings} = options
  const run = options.runJob ?? coreRunJob
  const s3Factory = options.s3Factory ?? defaultS3Factory

  return {
    async run(job: JobContext): Promise<HandlerOutcome> {
      const name = settings.job ?? job.configuration.Job
      if (!name) throw new ActionConfigurationError('no job to run: set settings.job in the worker config or the Job action configuration property')
      const spec = options.jobs.get(name)
      if (!spec) throw new ActionConfigurationError(`job ${JSON.stringify(name)} is not defined in jobs.yml`)
      if (job.continuationToken) {
        // This handler never hands out tokens, so one here belongs to a different worker setup.
        throw new ActionConfigurationError('the command handler does not continue jobs: this action type has another worker attached')
      }

      const root = settings.workRoot ?? tmpdir()
      await mkdir(root, {recursive: true})
      const work = await mkdtemp(join(root, 'cistern-cp-'))
      try {
        return await runIn(work, name, spec, job)
      } finally {
        if (!settings.keepWorkDir) await rm(work, {recursive: true, force: true})
      }
    },
  }

  async function runIn(work: string, name: string, spec: JobSpec, job: JobContext): Promise<HandlerOutcome> {
    const log = job.logger
    const needsS3 = job.inputArtifacts.length > 0 || job.outputArtifacts.length > 0
    const s3 = needsS3 ? await s3Factory(job.artifactCredentials, options.region) : undefined
    const env: Record<string, string> = {
      CP_JOB_ID: job.id,
      CP_PIPELINE_NAME: job.pipelineName ?? '',
      CP_STAGE_NAME: job.stageName ?? '',
      CP_ACTION_NAME: job.actionName ?? '',
      CP_PIPELINE_EXECUTION_ID: job.pipelineExecutionId ?? '',
      CP_WORK_DIR: work,
      CP_RESULT_FILE: join(work, '.cistern-result.json'),
    }
    for (const [key, value] of Object.entries(job.configuration)) env[envKey('CP_CONFIG_', key)] = value

    for (const artifact of job.inputArtifacts) {
      const dir = join(work, dirName(artifact.name))
      const files = await downloadArtifact(s3!, artifact, dir)
      env[envKey('CP_INPUT_', artifact.name)] = dir
      log.debug('input artifact unpacked', {artifact: artifact.name, files})
    }
    for (const artifact of job.outputArtifacts) {
      const dir = join(work, dirName(artifact.name))
      await mkdir(dir, {recursive: true})
      env[envKey('CP_OUTPUT_', artifact.name)] = dir
    }

    const result = await run(spec, {
      env,
      cwd: spec.cwd ?? work,
      timeoutSeconds: settings.timeoutSeconds ?? spec.timeoutSeconds,
      signal: job.deadline,
      // SIGKILL follows SIGTERM well before the worker's own cut-off (processJob's deadline grace).
      killGraceMs: KILL_GRACE_MS,
      keepLines: settings.keepLines,
      onLine: (line, stream) => log.debug(line, {stream}),
    })
    const tail = result.lastLines.join('\n')
    if (result.aborted) return {status: 'failed', type: 'JobFailed', message: `worker stopped before job ${name} finished${tail ? '\n' + tail : ''}`}
    if (result.startError) return {status: 'failed', type: 'ConfigurationError', message: `job ${name} could not start: ${result.startError}`}
    if (result.timedOut) return {status: 'failed', type: 'JobFailed', message: `job ${name} timed out${tail ? '\n' + tail : ''}`}
    if (result.exitCode !== 0) {
      const how = result.exitCode === null ? `was killed by ${result.signal ?? 'a signal'}` : `exited with ${result.exitCode}`
      return {status: 'failed', type: 'JobFailed', message: `job ${name} ${how}${tail ? '\n' + tail : ''}`}
    }

    for (const artifact of job.outputArtifacts) {
      const configured = settings.outputs?.[artifact.name]
      const paths = configured === undefined ? [dirName(artifact.name)] : Array.isArray(configured) ? configured : [configured]
      // Default output: the artifact's own directory, zipped with paths relative to it.
      const base = configured === undefined ? join(work, dirName(artifact.name)) : work
      const {zip, files} = await zipPaths(base, configured === undefined ? ['.'] : paths)
      await uploadArtifact(s3!, artifact, zip, job.encryptionKeyId)
      log.info('output artifact uploaded', {artifact: artifact.name, files, bytes: zip.length})
    }

    const extra = await readResultFile(env.CP_RESULT_FILE)
    return {
      status: 'succeeded',
      summary: extra.summary ?? `job ${name} succeeded in ${Math.round(result.durationMs / 100) / 10} s`,
      externalExecutionId: extra.externalExecutionId,
      ...(extra.currentRevision ? {currentRevision: extra.currentRevision} : {}),
      ...(extra.outputVariables ? {outputVariables: extra.outputVariables} : {}),
    }
  }
}

interface ResultFile {
  summary?: string
  externalExecutionId?: string
  currentRevision?: {revision: string; changeIdentifier: string; revisionSummary?: string}
  outputVariables?: Record<string, string>
}

/** Optional JSON the job may write to $CP_RESULT_FILE to enrich the success result. */
async function readResultFile(path: string): Promise<ResultFile> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return {}
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new Error('$CP_RESULT_FILE is not valid JSON')
  }
  if (!parsed || typeof parsed !== 'object') return {}
  const value = parsed as Record<string, unknown>
  const out: ResultFile = {}
  if (typeof value.summary === 'string') out.summary = value.summary
  if (typeof value.externalExecutionId === 'string') out.externalExecutionId = value.externalExecutionId
  const rev = value.currentRevision as Record<string, unknown> | undefined
  if (rev && typeof rev.revision === 'string' && typeof rev.changeIdentifier === 'string') {
    out.currentRevision = {
      revision: rev.revision,
      changeIdentifier: rev.changeIdentifier,
      ...(typeof rev.revisionSummary === 'string' ? {revisionSummary: rev.revisionSummary} : {}),
    }
  }
  if (value.outputVariables && typeof value.outputVariables === 'object') {
    out.outputVariables = Object.fromEntries(
      Object.entries(value.outputVariables as Record<string, unknown>).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
    )
  }
  return out
}
