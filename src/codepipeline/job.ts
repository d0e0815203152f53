import type {CurrentRevision, FailureType, Job} from '@aws-sdk/client-codepipeline'

import {CisternError} from '../core/errors.js'
import type {LogFields, Logger} from '../core/log.js'
import {maskSecrets, redact} from '../core/secrets.js'

/**
 * What a handler works with: one CodePipeline job (the parts of its data a handler needs), the
 * outcomes it can end in, and the failures that carry a CodePipeline failure type.
 */

export const FAILURE_TYPES = [
  'JobFailed',
  'ConfigurationError',
  'PermissionError',
  'RevisionOutOfSync',
  'RevisionUnavailable',
  'SystemUnavailable',
] as const satisfies readonly FailureType[]

/** A handler failure with a CodePipeline failure type: reported as PutJobFailureResult. */
export class JobFailure extends CisternError {
  constructor(
    readonly type: FailureType,
    message: string,
    readonly externalExecutionId?: string,
  ) {
    super(message)
    this.name = 'JobFailure'
  }
}

/** The action's configuration (or a handler setting) is missing or wrong: ConfigurationError. */
export class ActionConfigurationError extends JobFailure {
  constructor(message: string) {
    super('ConfigurationError', message)
    this.name = 'ActionConfigurationError'
  }
}

/** A handler broke its own contract (an empty or oversized continuation token): the job fails with JobFailed. */
export class HandlerContractError extends CisternError {
  constructor(message: string) {
    super(message)
    this.name = 'HandlerContractError'
  }
}

export interface S3ArtifactRef {
  name: string
  bucket: string
  key: string
  revision?: string
}

export interface ArtifactCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken: string
}

/** What a handler sees of a job: the parts of the job data it needs, plus stop signals. */
export interface JobContext {
  id: string
  pipelineName?: string
  stageName?: string
  actionName?: string
  pipelineExecutionId?: string
  configuration: Record<string, string>
  /** Present when CodePipeline hands back a job this worker (or another) continued. */
  continuationToken?: string
  inputArtifacts: S3ArtifactRef[]
  outputArtifacts: S3ArtifactRef[]
  artifactCredentials?: ArtifactCredentials
  /** KMS key id/ARN for output artifacts; undefined → the AWS-managed key. */
  encryptionKeyId?: string
  /** Masks this job's secrets (artifact credentials, configuration values) in every line. */
  logger: Logger
  /** Aborted when the worker starts stopping: hand back a continuation token if you can. */
  stopping: AbortSignal
  /** Aborted at the stop deadline: stop now (the command handler kills its job). */
  deadline: AbortSignal
  /** Values never to write anywhere (logs, failure messages, the job's own output). */
  secrets: string[]
}

export type HandlerOutcome =
  | {
      status: 'succeeded'
      summary?: string
      externalExecutionId?: string
      percentComplete?: number
      currentRevision?: CurrentRevision
      outputVariables?: Record<string, string>
    }
  | {
      status: 'inProgress'
      continuationToken: string
      summary?: string
      externalExecutionId?: string
      percentComplete?: number
      /** The target (`jenkins:<host>`) this job waits for because it is down: handed back, not failed. */
      heldFor?: string
    }
  | {status: 'failed'; type?: FailureType; message: string; externalExecutionId?: string}

export interface ActionHandler {
  run(job: JobContext): Promise<HandlerOutcome>
}

/** The text, or undefined when there is none (CodePipeline sends "" for "not set"). */
export function nonEmpty(value: string | undefined): string | undefined {
  return value === '' ? undefined : value
}

/** An action configuration value (they are optional per job: the action type says which are required). */
export function configurationValue(job: Pick<JobContext, 'configuration'>, key: string): string | undefined {
  return job.configuration[key]
}

/** Logger wrapper masking one job's secrets (registered secrets are process-wide and never forgotten). */
export function scopedLogger(logger: Logger, secrets: string[]): Logger {
  const fields = (f?: LogFields) => (f ? (redact(f, secrets) as LogFields) : undefined)
  const m = (text: string) => maskSecrets(text, secrets)
  return {
    level: logger.level,
    debug: (msg, f) => {
      logger.debug(m(msg), fields(f))
    },
    info: (msg, f) => {
      logger.info(m(msg), fields(f))
    },
    warn: (msg, f) => {
      logger.warn(m(msg), fields(f))
    },
    error: (msg, f) => {
      logger.error(m(msg), fields(f))
    },
    child: (f) => scopedLogger(logger.child(fields(f) ?? {}), secrets),
  }
}

type JobData = NonNullable<Job['data']>

function s3Artifacts(artifacts: JobData['inputArtifacts']): S3ArtifactRef[] {
  return (artifacts ?? []).flatMap((artifact) => {
    const s3 = artifact.location?.s3Location
    if (!artifact.name || !s3?.bucketName || !s3.objectKey) return []
    return [{name: artifact.name, bucket: s3.bucketName, key: s3.objectKey, revision: artifact.revision}]
  })
}

// Configuration keys whose values are secret whatever the config says.
const SECRET_CONFIG_KEY = /secret|token|password|passwd|credential|api[-_]?key|private/i

/**
 * Every value in a job that must not reach a log line, a result or the job's output: the artifact
 * credentials, the nonce, and the configuration values the job data cannot mark as secret, so
 * the action type's config lists them (secretConfiguration) or their key names say so.
 */
export function jobSecrets(job: Job, secretKeys: readonly string[] = []): string[] {
  const data = job.data ?? {}
  const creds = data.artifactCredentials
  const values = [creds?.accessKeyId, creds?.secretAccessKey, creds?.sessionToken, job.nonce]
  for (const [key, value] of Object.entries(data.actionConfiguration?.configuration ?? {})) {
    if (SECRET_CONFIG_KEY.test(key) || secretKeys.some((k) => k.toLowerCase() === key.toLowerCase())) values.push(value)
  }
  return values.filter((value): value is string => typeof value === 'string' && value.length >= 4)
}

export interface RunContextOptions {
  logger: Logger
  /** Action configuration keys holding secrets (the action type's secret: true properties). */
  secretKeys?: readonly string[]
  stopping: AbortSignal
  deadline: AbortSignal
}

/** The handler's view of a job that has an id (the lifecycle skips one without). */
export function jobContext(job: Job & {id: string}, options: RunContextOptions): JobContext {
  const data = job.data ?? {}
  const creds = data.artifactCredentials
  const secrets = jobSecrets(job, options.secretKeys)
  return {
    id: job.id,
    pipelineName: data.pipelineContext?.pipelineName,
    stageName: data.pipelineContext?.stage?.name,
    actionName: data.pipelineContext?.action?.name,
    pipelineExecutionId: data.pipelineContext?.pipelineExecutionId,
    configuration: {...data.actionConfiguration?.configuration},
    continuationToken: nonEmpty(data.continuationToken),
    inputArtifacts: s3Artifacts(data.inputArtifacts),
    outputArtifacts: s3Artifacts(data.outputArtifacts),
    artifactCredentials:
      creds?.accessKeyId && creds.secretAccessKey && creds.sessionToken
        ? {accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken}
        : undefined,
    encryptionKeyId: nonEmpty(data.encryptionKey?.id),
    logger: scopedLogger(options.logger, secrets),
    stopping: options.stopping,
    deadline: options.deadline,
    secrets,
  }
}
