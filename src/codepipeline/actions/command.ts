import {mkdir, mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {z} from 'zod'

import {type JobResult, type JobSpec, type JobsConfig, type RunJobOptions, runJob as coreRunJob} from '../../core/jobs.js'
import {type S3Factory, type TransferOptions, defaultS3Factory, downloadArtifact, uploadArtifact} from '../artifacts.js'
import type {CommandActionConfig} from '../config.js'
import {ActionConfigurationError, type ActionHandler, type HandlerOutcome, type JobContext, JobFailure, configurationValue} from '../job.js'
import {zipPaths} from '../zip.js'

export const KILL_GRACE_MS = 3000

export interface CommandHandlerOptions {
  settings: CommandActionConfig['settings']
  jobs: JobsConfig
  region?: string
  s3Factory?: S3Factory
  /** How long transient S3 failures are retried (tests shorten it). */
  artifactRetryMs?: number
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
 * directory, the job runs there with the environment core/jobs.ts builds (its own secrets only
 * when jobs.yml names them; its output masked, the job's artifact credentials and secret
 * configuration included), and the output artifacts are zipped and uploaded (SSE-KMS).
 */
export class CommandHandler implements ActionHandler {
  private readonly runJob: (job: JobSpec, options: RunJobOptions) => Promise<JobResult>
  private readonly s3Factory: S3Factory

  constructor(private readonly options: CommandHandlerOptions) {
    this.runJob = options.runJob ?? coreRunJob
    this.s3Factory = options.s3Factory ?? defaultS3Factory
  }

  async run(job: JobContext): Promise<HandlerOutcome> {
    const {settings} = this.options
    const name = settings.job ?? configurationValue(job, 'Job')
    if (!name) throw new ActionConfigurationError('no job to run: set settings.job in the worker config or the Job action configuration property')
    const spec = this.options.jobs.get(name)
    if (!spec) throw new ActionConfigurationError(`job ${JSON.stringify(name)} is not defined in jobs.yml`)
    if (job.continuationToken) {
      // This handler never hands out tokens, so one here belongs to a different worker setup.
      throw new ActionConfigurationError('the command handler does not continue jobs: this action type has another worker attached')
    }
    const root = settings.workRoot ?? tmpdir()
    await mkdir(root, {recursive: true})
    const work = await mkdtemp(join(root, 'cistern-cp-'))
    try {
      return await new CommandJob(this.options, this.runJob, job, work).run(name, spec, await this.s3For(job))
    } finally {
      if (!settings.keepWorkDir) await rm(work, {recursive: true, force: true})
    }
  }

  private async s3For(job: JobContext): Promise<S3 | undefined> {
    const needsS3 = job.inputArtifacts.length > 0 || job.outputArtifacts.length > 0
    return needsS3 ? this.s3Factory(job.artifactCredentials, this.options.region) : undefined
  }
}

type S3 = Awaited<ReturnType<S3Factory>>

/** One CodePipeline job run by the command handler, in its work directory: the steps by name. */
class CommandJob {
  private readonly env: Record<string, string>
  private readonly transfer: TransferOptions

  constructor(
    private readonly options: CommandHandlerOptions,
    private readonly runJob: (job: JobSpec, options: RunJobOptions) => Promise<JobResult>,
    private readonly job: JobContext,
    private readonly work: string,
  ) {
    this.env = {
      CP_JOB_ID: job.id,
      CP_PIPELINE_NAME: job.pipelineName ?? '',
      CP_STAGE_NAME: job.stageName ?? '',
      CP_ACTION_NAME: job.actionName ?? '',
      CP_PIPELINE_EXECUTION_ID: job.pipelineExecutionId ?? '',
      CP_WORK_DIR: work,
      CP_RESULT_FILE: join(work, '.cistern-result.json'),
    }
    for (const [key, value] of Object.entries(job.configuration)) this.env[envKey('CP_CONFIG_', key)] = value
    this.transfer = {retryMs: options.artifactRetryMs, signal: job.deadline}
  }

  async run(name: string, spec: JobSpec, s3: S3 | undefined): Promise<HandlerOutcome> {
    await this.download(s3)
    const result = await this.execute(spec)
    const failed = this.failure(name, result)
    if (failed) return failed
    await this.upload(s3)
    const extra = await readResultFile(join(this.work, '.cistern-result.json'))
    return {
      status: 'succeeded',
      summary: extra.summary ?? `job ${name} succeeded in ${Math.round(result.durationMs / 100) / 10} s`,
      externalExecutionId: extra.externalExecutionId,
      ...(extra.currentRevision ? {currentRevision: extra.currentRevision} : {}),
      ...(extra.outputVariables ? {outputVariables: extra.outputVariables} : {}),
    }
  }

  private async download(s3: S3 | undefined): Promise<void> {
    for (const artifact of this.job.inputArtifacts) {
      const dir = join(this.work, dirName(artifact.name))
      const files = await downloadArtifact(requireS3(s3), artifact, dir, this.transfer)
      this.env[envKey('CP_INPUT_', artifact.name)] = dir
      this.job.logger.debug('input artifact unpacked', {artifact: artifact.name, files})
    }
    for (const artifact of this.job.outputArtifacts) {
      const dir = join(this.work, dirName(artifact.name))
      await mkdir(dir, {recursive: true})
      this.env[envKey('CP_OUTPUT_', artifact.name)] = dir
    }
  }

  private execute(spec: JobSpec): Promise<JobResult> {
    const {settings} = this.options
    return this.runJob(spec, {
      env: this.env,
      cwd: spec.cwd ?? this.work,
      timeoutSeconds: settings.timeoutSeconds ?? spec.timeoutSeconds,
      signal: this.job.deadline,
      // The job's artifact credentials, nonce and secret configuration: masked in its output too.
      mask: this.job.secrets,
      // SIGKILL follows SIGTERM well before the worker's own cut-off (the lifecycle's deadline grace).
      killGraceMs: KILL_GRACE_MS,
      keepLines: settings.keepLines,
      onLine: (line, stream) => {
        this.job.logger.debug(line, {stream})
      },
    })
  }

  /** The failure outcome for a job that did not exit 0 (its last lines in the message); undefined when it did. */
  private failure(name: string, result: JobResult): HandlerOutcome | undefined {
    const tail = result.lastLines.join('\n')
    const withTail = (text: string) => `${text}${tail ? '\n' + tail : ''}`
    if (result.aborted) return {status: 'failed', type: 'JobFailed', message: withTail(`worker stopped before job ${name} finished`)}
    if (result.startError) return {status: 'failed', type: 'ConfigurationError', message: `job ${name} could not start: ${result.startError}`}
    if (result.timedOut) return {status: 'failed', type: 'JobFailed', message: withTail(`job ${name} timed out`)}
    if (result.exitCode !== 0) {
      const how = result.exitCode === null ? `was killed by ${result.signal ?? 'a signal'}` : `exited with ${result.exitCode}`
      return {status: 'failed', type: 'JobFailed', message: withTail(`job ${name} ${how}`)}
    }
    return undefined
  }

  private async upload(s3: S3 | undefined): Promise<void> {
    const {settings} = this.options
    for (const artifact of this.job.outputArtifacts) {
      const configured = settings.outputs?.[artifact.name]
      // Default output: the artifact's own directory, zipped with paths relative to it.
      const base = configured === undefined ? join(this.work, dirName(artifact.name)) : this.work
      const paths = configured === undefined ? ['.'] : Array.isArray(configured) ? configured : [configured]
      const {zip, files} = await zipPaths(base, paths)
      await uploadArtifact(requireS3(s3), artifact, zip, this.job.encryptionKeyId, this.transfer)
      this.job.logger.info('output artifact uploaded', {artifact: artifact.name, files, bytes: zip.length})
    }
  }
}

function requireS3(s3: S3 | undefined): S3 {
  // CommandHandler builds one whenever the job has artifacts.
  if (!s3) throw new JobFailure('JobFailed', 'no S3 client for the job artifacts')
  return s3
}

const resultFileSchema = z.object({
  summary: z.string().optional().catch(undefined),
  externalExecutionId: z.string().optional().catch(undefined),
  currentRevision: z
    .object({revision: z.string(), changeIdentifier: z.string(), revisionSummary: z.string().optional().catch(undefined)})
    .optional()
    .catch(undefined),
  outputVariables: z
    .record(z.string(), z.unknown())
    .transform((values) => Object.fromEntries(Object.entries(values).filter((entry): entry is [string, string] => typeof entry[1] === 'string')))
    .optional()
    .catch(undefined),
})
type ResultFile = z.infer<typeof resultFileSchema>

/** Optional JSON the job may write to $CP_RESULT_FILE to enrich the success result; fields of the wrong type are ignored. */
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
    throw new JobFailure('JobFailed', '$CP_RESULT_FILE is not valid JSON')
  }
  const result = resultFileSchema.safeParse(parsed)
  return result.success ? result.data : {}
}
