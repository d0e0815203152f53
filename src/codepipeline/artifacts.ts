import type {S3Client} from '@aws-sdk/client-s3'
import {type Zippable, unzipSync, zipSync} from 'fflate'
import {mkdir, readFile, readdir, stat, writeFile} from 'node:fs/promises'
import {dirname, isAbsolute, join, normalize, relative, resolve, sep} from 'node:path'

import {errorMessage} from '../core/errors.js'
import {type ArtifactCredentials, JobFailure, type S3ArtifactRef} from './job.js'

export type S3Factory = (credentials: ArtifactCredentials | undefined, region?: string) => Promise<Pick<S3Client, 'send'>>

/** The S3 client for one job: built from the job's own artifact credentials, never the worker's. */
export const defaultS3Factory: S3Factory = async (credentials, region) => {
  if (!credentials) throw new JobFailure('PermissionError', 'the job carries no artifact credentials: cannot read or write its artifacts')
  const {S3Client} = await import('@aws-sdk/client-s3')
  return new S3Client({region, credentials, followRegionRedirects: true})
}

// Artifacts are unpacked in memory: bound the download and what it inflates to (zip bombs and
// runaway artifacts fail the job instead of the worker).
export const MAX_ARTIFACT_BYTES = 1024 ** 3
export const MAX_UNZIPPED_BYTES = 2 * 1024 ** 3

function s3Failure(action: string, artifact: S3ArtifactRef, error: unknown): JobFailure {
  const name = String((error as {name?: string})?.name ?? '')
  const where = `s3://${artifact.bucket}/${artifact.key}`
  if (name === 'AccessDenied' || name === 'Forbidden' || name === 'InvalidAccessKeyId' || name === 'ExpiredToken') {
    return new JobFailure('PermissionError', `${action} artifact ${artifact.name} (${where}): ${name}`)
  }
  if (name === 'NoSuchKey' || name === 'NoSuchBucket' || name === 'NotFound') {
    return new JobFailure('RevisionUnavailable', `${action} artifact ${artifact.name} (${where}): ${name}`)
  }
  return new JobFailure('JobFailed', `${action} artifact ${artifact.name} (${where}): ${name ? name + ': ' : ''}${errorMessage(error)}`)
}

/** Where an entry of a zip lands under dir, refusing absolute paths and `..` escapes. */
export function safeEntryPath(dir: string, entry: string): string {
  const cleaned = entry.replace(/\\/g, '/')
  const target = resolve(dir, normalize(cleaned))
  if (isAbsolute(cleaned) || (target !== resolve(dir) && !target.startsWith(resolve(dir) + sep))) {
    throw new JobFailure('JobFailed', `artifact entry ${JSON.stringify(entry)} points outside the work directory`)
  }
  return target
}

/** Writes the entries of a zip under dir. */
export async function extractZip(bytes: Uint8Array, dir: string, maxUnzipped = MAX_UNZIPPED_BYTES): Promise<number> {
  let entries: Record<string, Uint8Array>
  let total = 0
  try {
    entries = unzipSync(bytes, {
      filter(file) {
        total += file.originalSize
        if (total > maxUnzipped) throw new JobFailure('JobFailed', `artifact unpacks to more than ${maxUnzipped} bytes`)
        return true
      },
    })
  } catch (error) {
    if (error instanceof JobFailure) throw error
    throw new JobFailure('JobFailed', `artifact is not a valid zip: ${errorMessage(error)}`)
  }
  await mkdir(dir, {recursive: true})
  let files = 0
  for (const [name, data] of Object.entries(entries)) {
    const target = safeEntryPath(dir, name)
    if (name.endsWith('/')) {
      await mkdir(target, {recursive: true})
      continue
    }
    await mkdir(dirname(target), {recursive: true})
    await writeFile(target, data)
    files++
  }
  return files
}

/** Downloads and unzips one input artifact into dir with the job's S3 client. */
export async function downloadArtifact(s3: Pick<S3Client, 'send'>, artifact: S3ArtifactRef, dir: string): Promise<number> {
  const {GetObjectCommand} = await import('@aws-sdk/client-s3')
  let bytes: Uint8Array
  try {
    const out = await s3.send(new GetObjectCommand({Bucket: artifact.bucket, Key: artifact.key}))
    if (out.ContentLength !== undefined && out.ContentLength > MAX_ARTIFACT_BYTES) {
      throw new JobFailure('JobFailed', `artifact ${artifact.name} is ${out.ContentLength} bytes (limit ${MAX_ARTIFACT_BYTES})`)
    }
    if (!out.Body) throw new Error('empty response body')
    bytes = await out.Body.transformToByteArray()
  } catch (error) {
    if (error instanceof JobFailure) throw error
    throw s3Failure('downloading', artifact, error)
  }
  return extractZip(bytes, dir)
}

/** Collects files (directories recursively) into a zip tree keyed by their path relative to root. */
export async function zipPaths(root: string, paths: string[]): Promise<{zip: Uint8Array; files: number}> {
  const tree: Zippable = {}
  let files = 0
  let total = 0
  const add = async (absolute: string) => {
    const info = await stat(absolute)
    if (info.isDirectory()) {
      for (const child of await readdir(absolute)) await add(join(absolute, child))
      return
    }
    if (!info.isFile()) return
    total += info.size
    if (total > MAX_UNZIPPED_BYTES) throw new JobFailure('JobFailed', `output artifact is larger than ${MAX_UNZIPPED_BYTES} bytes`)
    const rel = relative(root, absolute).split(sep).join('/')
    tree[rel] = [await readFile(absolute), {mtime: info.mtime}]
    files++
  }
  for (const path of paths) {
    const absolute = safeEntryPath(root, path)
    try {
      await stat(absolute)
    } catch {
      throw new JobFailure('JobFailed', `output path ${path} was not produced by the job`)
    }
    await add(absolute)
  }
  return {zip: zipSync(tree, {level: 6}), files}
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
): Promise<void> {
  const {PutObjectCommand} = await import('@aws-sdk/client-s3')
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: artifact.bucket,
        Key: artifact.key,
        Body: body,
        ContentType: 'application/zip',
        ServerSideEncryption: 'aws:kms',
        ...(encryptionKeyId ? {SSEKMSKeyId: encryptionKeyId} : {}),
      }),
    )
  } catch (error) {
    throw s3Failure('uploading', artifact, error)
  }
}
