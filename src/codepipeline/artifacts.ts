import type {S3Client} from '@aws-sdk/client-s3'

import {awsErrorName, classifyAwsError, isTransientAwsError} from '../core/aws.js'
import {errorMessage} from '../core/errors.js'
import type {BackoffOptions} from '../core/loop.js'
import {GaveUpError, retryUntil} from '../core/retry.js'
import {type ArtifactCredentials, JobFailure, type S3ArtifactRef} from './job.js'
import {extractZip} from './zip.js'

export type S3Factory = (credentials: ArtifactCredentials | undefined, region?: string) => Promise<Pick<S3Client, 'send'>>

/** The S3 client for one job: built from the job's own artifact credentials, never the worker's. */
export const defaultS3Factory: S3Factory = async (credentials, region) => {
  if (!credentials) throw new JobFailure('PermissionError', 'the job carries no artifact credentials: cannot read or write its artifacts')
  const {S3Client} = await import('@aws-sdk/client-s3')
  return new S3Client({region, credentials, followRegionRedirects: true})
}

// Artifacts are unpacked in memory: bound the download (zip.ts bounds what it inflates to).
export const MAX_ARTIFACT_BYTES = 1024 ** 3
/** S3 throttling, a 5xx or no answer is retried this long (beyond the SDK's own tries) before the job fails: SystemUnavailable. */
export const ARTIFACT_RETRY_MS = 30_000

export interface TransferOptions {
  /** How long transient S3 failures are retried (default ARTIFACT_RETRY_MS). */
  retryMs?: number
  /** Stops the retries (the worker's stop deadline). */
  signal?: AbortSignal
  backoff?: BackoffOptions
}

class EmptyBodyError extends JobFailure {
  constructor(artifact: S3ArtifactRef) {
    super('JobFailed', `artifact ${artifact.name}: S3 answered with no body`)
  }
}

/**
 * The failure type for an S3 error: refused credentials or access → PermissionError, a missing
 * object or bucket → RevisionUnavailable, S3 unwell after the retries → SystemUnavailable, else JobFailed.
 */
function s3Failure(action: string, artifact: S3ArtifactRef, failure: unknown): JobFailure {
  const error = failure instanceof GaveUpError ? failure.lastError : failure
  const name = awsErrorName(error)
  const where = `${action} artifact ${artifact.name} (s3://${artifact.bucket}/${artifact.key})`
  const kind = classifyAwsError(error)
  if (kind === 'access-denied' || kind === 'credentials' || name === 'Forbidden' || name === 'InvalidAccessKeyId') {
    return new JobFailure('PermissionError', `${where}: ${name}`)
  }
  if (name === 'NoSuchKey' || name === 'NoSuchBucket' || name === 'NotFound') return new JobFailure('RevisionUnavailable', `${where}: ${name}`)
  const detail = `${name ? name + ': ' : ''}${errorMessage(error)}`
  if (failure instanceof GaveUpError) return new JobFailure('SystemUnavailable', `${where}: S3 did not answer in ${failure.attempts} ${failure.attempts === 1 ? 'try' : 'tries'} (${detail})`)
  return new JobFailure('JobFailed', `${where}: ${detail}`)
}

/** One S3 call, retried while S3 is transiently unwell. */
function withRetries<T>(call: () => Promise<T>, options: TransferOptions): Promise<T> {
  return retryUntil(call, {
    deadline: Date.now() + (options.retryMs ?? ARTIFACT_RETRY_MS),
    signal: options.signal,
    shouldRetry: isTransientAwsError,
    backoff: options.backoff,
  })
}

/** Downloads and unzips one input artifact into dir with the job's S3 client. */
export async function downloadArtifact(s3: Pick<S3Client, 'send'>, artifact: S3ArtifactRef, dir: string, options: TransferOptions = {}): Promise<number> {
  const {GetObjectCommand} = await import('@aws-sdk/client-s3')
  let bytes: Uint8Array
  try {
    bytes = await withRetries(async () => {
      const out = await s3.send(new GetObjectCommand({Bucket: artifact.bucket, Key: artifact.key}))
      if (out.ContentLength !== undefined && out.ContentLength > MAX_ARTIFACT_BYTES) {
        throw new JobFailure('JobFailed', `artifact ${artifact.name} is ${out.ContentLength} bytes (limit ${MAX_ARTIFACT_BYTES})`)
      }
      if (!out.Body) throw new EmptyBodyError(artifact)
      return out.Body.transformToByteArray()
    }, options)
  } catch (error) {
    if (error instanceof JobFailure) throw error
    throw s3Failure('downloading', artifact, error)
  }
  return extractZip(bytes, dir)
}

/**
 * Uploads an output artifact: always SSE-KMS, with the job's key when it names one, else the
 * AWS-managed key (aws/s3).
 */
export async function uploadArtifact(
  s3: Pick<S3Client, 'send'>,
  artifact: S3ArtifactRef,
  body: Uint8Array,
  encryptionKeyId: string | undefined,
  options: TransferOptions = {},
): Promise<void> {
  const {PutObjectCommand} = await import('@aws-sdk/client-s3')
  const put = () =>
    new PutObjectCommand({
      Bucket: artifact.bucket,
      Key: artifact.key,
      Body: body,
      ContentType: 'application/zip',
      ServerSideEncryption: 'aws:kms',
      ...(encryptionKeyId ? {SSEKMSKeyId: encryptionKeyId} : {}),
    })
  try {
    await withRetries(() => s3.send(put()), options)
  } catch (error) {
    throw s3Failure('uploading', artifact, error)
  }
}
