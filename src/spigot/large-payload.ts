import {randomUUID} from 'node:crypto'

import {CisternError, errorMessage} from '../core/errors.js'

/** Where a payload too big for the queue was put (message.large_payload). */
export interface LargePayloadPointer {
  bucket: string
  key: string
  bytes: number
}

export interface LargePayloadStore {
  readonly bucket: string
  /** Store the raw webhook bytes; resolves once S3 holds them. */
  put(bytes: Buffer, hint: {delivery?: string; event?: string}): Promise<LargePayloadPointer>
  /** Read them back (drain). */
  get(pointer: LargePayloadPointer): Promise<Buffer>
}

export interface S3Options {
  bucket: string
  region?: string
  profile?: string
  /** Key prefix (default `spigot/`). */
  prefix?: string
}

type S3Module = typeof import('@aws-sdk/client-s3')
type S3 = import('@aws-sdk/client-s3').S3Client

/**
 * SQS carries at most 256 KiB (1 MiB max) and GitHub sends up to 25 MB: bigger payloads go to S3
 * and the queue message carries a pointer (the SQS extended-client pattern). The SDK is loaded on
 * first use so an intake that never sees a big payload never loads it.
 */
export function s3LargePayloadStore(options: S3Options): LargePayloadStore {
  const prefix = options.prefix ?? 'spigot/'
  let client: Promise<{s3: S3; sdk: S3Module}> | undefined
  const open = () =>
    (client ??= import('@aws-sdk/client-s3').then((sdk) => ({
      sdk,
      s3: new sdk.S3Client({
        ...(options.region ? {region: options.region} : {}),
        ...(options.profile ? {profile: options.profile} : {}),
      }),
    })))

  return {
    bucket: options.bucket,
    async put(bytes, hint) {
      const {s3, sdk} = await open()
      const day = new Date().toISOString().slice(0, 10)
      const id = hint.delivery && /^[\w.-]{1,100}$/.test(hint.delivery) ? hint.delivery : randomUUID()
      const key = `${prefix}${day}/${id}.json`
      try {
        await s3.send(
          new sdk.PutObjectCommand({
            Bucket: options.bucket,
            Key: key,
            Body: bytes,
            ContentLength: bytes.length,
            ContentType: 'application/octet-stream',
            Metadata: {...(hint.event ? {'github-event': hint.event} : {}), ...(hint.delivery ? {'github-delivery': hint.delivery} : {})},
          }),
        )
      } catch (error) {
        throw new CisternError(`could not store a ${bytes.length}-byte payload in s3://${options.bucket}/${key}: ${errorMessage(error)}`, {
          fix: 'check the bucket name (--large-payload-bucket), the region and s3:PutObject permission',
          cause: error,
        })
      }
      return {bucket: options.bucket, key, bytes: bytes.length}
    },
    async get(pointer) {
      const {s3, sdk} = await open()
      try {
        const out = await s3.send(new sdk.GetObjectCommand({Bucket: pointer.bucket, Key: pointer.key}))
        if (!out.Body) throw new Error('empty object')
        return Buffer.from(await out.Body.transformToByteArray())
      } catch (error) {
        throw new CisternError(`could not read the payload at s3://${pointer.bucket}/${pointer.key}: ${errorMessage(error)}`, {
          fix: 'check the region and s3:GetObject permission',
          cause: error,
        })
      }
    },
  }
}

/** For the drain: the raw bytes behind a message's `large_payload` pointer. */
export async function readLargePayload(pointer: LargePayloadPointer, options: {region?: string; profile?: string} = {}): Promise<Buffer> {
  return s3LargePayloadStore({bucket: pointer.bucket, ...options}).get(pointer)
}
