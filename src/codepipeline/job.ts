import type {
  CodePipelineClient,
  CurrentRevision,
  FailureType,
  Job,
  PutJobFailureResultInput,
  PutJobSuccessResultInput,
} from '@aws-sdk/client-codepipeline'

import {errorMessage} from '../core/errors.js'
import {type LogFields, type Logger, redact} from '../core/log.js'

/** CodePipeline's field limits: longer values are truncated, never rejected. */
export const LIMITS = {continuationToken: 2048, summary: 2048, externalExecutionId: 1500, message: 5000} as const

export const FAILURE_TYPES = [
  'JobFailed',
  'ConfigurationError',
  'PermissionError',
  'RevisionOutOfSync',
  'RevisionUnavailable',
  'SystemUnavailable',
] as const satisfies readonly FailureType[]

/** A handler failure with a CodePipeline failure type. */
export class JobFailure extends Error {
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
  /** Values never to write anywhere (logs, failure messages). */
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
  | {status: 'inProgress'; continuationToken: string; summary?: string; externalExecutionId?: string; percentComplete?: number}
  | {status: 'failed'; type?: FailureType; message: string; externalExecutionId?: string}

export interface ActionHandler {
  run(job: JobContext): Promise<HandlerOutcome>
}

export type JobResultKind = 'succeeded' | 'continued' | 'failed' | 'skipped' | 'unreported'

export function truncate(value: string | undefined, limit: number): string | undefined {
  if (value === undefined) return undefined
  if (value.length <= limit) return value
  const marker = '…'
  return value.slice(0, limit - marker.length) + marker
}

/** A continuation token must round-trip exactly: one too long is a handler bug, reported as a failure. */
function checkToken(token: string): string {
  if (!token) throw new Error('handler returned an empty continuation token')
  if (token.length > LIMITS.continuationToken) {
    throw new Error(`continuation token is ${token.length} characters (limit ${LIMITS.continuationToken})`)
  }
  return token
}

export function clampPercent(value: number | undefined): number | undefined {
  if (value === undefined || Number.isNaN(value)) return undefined
  return Math.round(Math.min(100, Math.max(0, value)))
}

function mask(text: string | undefined, secrets: string[]): string | undefined {
  if (text === undefined) return undefined
  return redact(text, secrets) as string
}

/** The PutJobSuccessResult / PutJobFailureResult input for an outcome, limits enforced. */
export function resultRequest(
  jobId: string,
  outcome: HandlerOutcome,
  secrets: string[] = [],
): {kind: 'success'; input: PutJobSuccessResultInput} | {kind: 'failure'; input: PutJobFailureResultInput} {
  if (outcome.status === 'failed') {
    const details = {
      type: outcome.type ?? 'JobFailed',
      message: truncate(mask(outcome.message, secrets) || 'failed', LIMITS.message),
      ...(outcome.externalExecutionId ? {externalExecutionId: truncate(outcome.externalExecutionId, LIMITS.externalExecutionId)} : {}),
    }
    return {kind: 'failure', input: {jobId, failureDetails: details}}
  }
  const executionDetails = {
    ...(outcome.summary !== undefined ? {summary: truncate(mask(outcome.summary, secrets), LIMITS.summary)} : {}),
    ...(outcome.externalExecutionId ? {externalExecutionId: truncate(outcome.externalExecutionId, LIMITS.externalExecutionId)} : {}),
    ...(outcome.percentComplete !== undefined ? {percentComplete: clampPercent(outcome.percentComplete)} : {}),
  }
  const input: PutJobSuccessResultInput = {jobId}
  if (Object.keys(executionDetails).length > 0) input.executionDetails = executionDetails
  if (outcome.status === 'inProgress') input.continuationToken = checkToken(outcome.continuationToken)
  else {
    if (outcome.currentRevision) input.currentRevision = outcome.currentRevision
    if (outcome.outputVariables && Object.keys(outcome.outputVariables).length > 0) input.outputVariables = outcome.outputVariables
  }
  return {kind: 'success', input}
}

/** Any exception from a handler becomes a failure outcome: no job is left to time out. */
export function failureFromError(error: unknown, secrets: string[] = []): HandlerOutcome {
  if (error instanceof JobFailure) {
    return {status: 'failed', type: error.type, message: mask(error.message, secrets) ?? '', externalExecutionId: error.externalExecutionId}
  }
  return {status: 'failed', type: 'JobFailed', message: mask(errorMessage(error), secrets) || 'handler failed'}
}

/** Logger wrapper masking one job's secrets (registerSecret is process-wide and never forgets). */
export function scopedLogger(logger: Logger, secrets: string[]): Logger {
  const fields = (f?: LogFields) => (f ? (redact(f, secrets) as LogFields) : undefined)
  const m = (text: string) => redact(text, secrets) as string
  return {
    level: logger.level,
    debug: (msg, f) => logger.debug(m(msg), fields(f)),
    info: (msg, f) => logger.info(m(msg), fields(f)),
    warn: (msg, f) => logger.warn(m(msg), fields(f)),
    error: (msg, f) => logger.error(m(msg), fields(f)),
    child: (f) => scopedLogger(logger.child(fields(f) ?? {}), secrets),
  }
}

function s3Artifacts(artifacts: NonNullable<Job['data']>['inputArtifacts']): S3ArtifactRef[] {
  return (artifacts ?? []).flatMap((artifact) => {
    const s3 = artifact.location?.s3Location
    if (!artifact.name || !s3?.bucketName || !s3.objectKey) return []
    return [{name: artifact.name, bucket: s3.bucketName, key: s3.objectKey, revision: artifact.revision}]
  })
}

// Configuration keys whose values are secret whatever the config says.
const SECRET_CONFIG_KEY = /secret|token|password|passwd|credential|api[-_]?key|private/i

/**
 * Every value in a job that must not reach a log line or a failure message: the artifact
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

export function jobContext(job: Job, options: RunContextOptions): JobContext {
  const data = job.data ?? {}
  const creds = data.artifactCredentials
  const secrets = jobSecrets(job, options.secretKeys)
  return {
    id: job.id!,
    pipelineName: data.pipelineContext?.pipelineName,
    stageName: data.pipelineContext?.stage?.name,
    actionName: data.pipelineContext?.action?.name,
    pipelineExecutionId: data.pipelineContext?.pipelineExecutionId,
    configuration: {...data.actionConfiguration?.configuration},
    continuationToken: data.continuationToken || undefined,
    inputArtifacts: s3Artifacts(data.inputArtifacts),
    outputArtifacts: s3Artifacts(data.outputArtifacts),
    artifactCredentials:
      creds?.accessKeyId && creds.secretAccessKey && creds.sessionToken
        ? {accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken}
        : undefined,
    encryptionKeyId: data.encryptionKey?.id || undefined,
    logger: scopedLogger(options.logger, secrets),
    stopping: options.stopping,
    deadline: options.deadline,
    secrets,
  }
}

export interface ProcessJobOptions extends RunContextOptions {
  client: Pick<CodePipelineClient, 'send'>
  handler: ActionHandler
  /** After the deadline, how long a handler may take to wind down before "worker stopped" is reported. */
  deadlineGraceMs?: number
}

function isNamed(error: unknown, ...names: string[]): boolean {
  const name = (error as {name?: string})?.name
  return typeof name === 'string' && names.includes(name)
}

/**
 * One job's lifecycle: acknowledge → run the handler (only when InProgress) → report exactly one
 * result. Returns what happened; never throws for a job-level problem.
 */
export async function processJob(job: Job, options: ProcessJobOptions): Promise<JobResultKind> {
  const {client} = options
  const {AcknowledgeJobCommand, PutJobFailureResultCommand, PutJobSuccessResultCommand} = await import('@aws-sdk/client-codepipeline')
  const base = options.logger.child({jobId: job.id})
  if (!job.id || !job.nonce) {
    base.warn('poll returned a job without id or nonce: skipped')
    return 'skipped'
  }
  const context = jobContext(job, {...options, logger: base})
  const log = context.logger

  try {
    const ack = await client.send(new AcknowledgeJobCommand({jobId: job.id, nonce: job.nonce}))
    if (ack.status !== 'InProgress') {
      log.debug('job not in progress after acknowledge: skipped', {status: ack.status})
      return 'skipped'
    }
  } catch (error) {
    if (isNamed(error, 'InvalidNonceException')) {
      log.debug('job taken by another worker (invalid nonce): skipped')
      return 'skipped'
    }
    log.warn('acknowledge failed: skipped (CodePipeline will offer the job again)', {error: errorMessage(error)})
    return 'skipped'
  }

  log.info(context.continuationToken ? 'continuing job' : 'running job', {pipeline: context.pipelineName, stage: context.stageName, action: context.actionName})
  const outcome = await runHandler(options.handler, context, options.deadlineGraceMs ?? 5000)
  let request: ReturnType<typeof resultRequest>
  try {
    request = resultRequest(job.id, outcome, context.secrets)
  } catch (error) {
    request = resultRequest(job.id, failureFromError(error, context.secrets), context.secrets)
  }

  try {
    if (request.kind === 'success') {
      await client.send(new PutJobSuccessResultCommand(request.input))
    } else {
      await client.send(new PutJobFailureResultCommand(request.input))
    }
  } catch (error) {
    log.error('reporting the job result failed', {error: errorMessage(error), result: request.kind})
    return 'unreported'
  }
  if (request.kind === 'failure') {
    log.warn('job failed', {type: request.input.failureDetails?.type, message: request.input.failureDetails?.message})
    return 'failed'
  }
  if (request.input.continuationToken) {
    log.info('job continues', {percentComplete: request.input.executionDetails?.percentComplete})
    return 'continued'
  }
  log.info('job succeeded', {summary: request.input.executionDetails?.summary})
  return 'succeeded'
}

/** Runs the handler; an exception is a failure, and a handler ignoring the deadline is cut off. */
async function runHandler(handler: ActionHandler, context: JobContext, graceMs: number): Promise<HandlerOutcome> {
  let timer: NodeJS.Timeout | undefined
  let onDeadline: (() => void) | undefined
  const cutOff = new Promise<HandlerOutcome>((resolve) => {
    onDeadline = () => {
      timer = setTimeout(() => resolve({status: 'failed', type: 'JobFailed', message: 'worker stopped before the action finished'}), graceMs)
    }
    if (context.deadline.aborted) onDeadline()
    else context.deadline.addEventListener('abort', onDeadline, {once: true})
  })
  try {
    return await Promise.race([
      handler.run(context).catch((error: unknown) => failureFromError(error, context.secrets)),
      cutOff,
    ])
  } finally {
    if (timer) clearTimeout(timer)
    if (onDeadline) context.deadline.removeEventListener('abort', onDeadline)
  }
}
