import {randomUUID} from 'node:crypto'

import {type AwsErrorKind, awsErrorName, classifyAwsError} from '../core/aws.js'
import {CisternError, ExitCode, errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'

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
  /** Delete the object once its webhook was delivered (drain); an object already gone is not an error. */
  delete(pointer: LargePayloadPointer): Promise<void>
  /** Close the S3 client's connections. */
  close(): void
}

export interface S3Options {
  bucket: string
  region?: string
  profile?: string
  /** Key prefix (default `spigot/`). */
  prefix?: string
}

/** What went wrong with the object: AWS's kinds (src/core/aws.ts), and `missing` for an object that is not there. */
export type LargePayloadFailure = AwsErrorKind | 'missing'

/** A large payload S3 would not store, give back or delete: names the object and the fix. */
export class LargePayloadError extends CisternError {
  constructor(
    message: string,
    readonly failure: LargePayloadFailure,
    fix: string,
    cause: unknown,
  ) {
    super(message, {fix, cause, exitCode: failure === 'unreachable' || failure === 'throttled' || failure === 'server' ? ExitCode.unhealthy : ExitCode.failure})
    this.name = 'LargePayloadError'
  }
}

type S3Module = typeof import('@aws-sdk/client-s3')
type S3 = import('@aws-sdk/client-s3').S3Client

/** The default key prefix: an S3 lifecycle rule on it is the backstop for objects nobody deletes (docs/spigot.md). */
export const LARGE_PAYLOAD_PREFIX = 'spigot/'

/**
 * SQS carries at most 256 KiB (1 MiB max) and GitHub sends up to 25 MB: bigger payloads go to S3
 * and the queue message carries a pointer (the SQS extended-client pattern). The SDK is loaded on
 * first use so an intake that never sees a big payload never loads it.
 */
export function s3LargePayloadStore(options: S3Options): LargePayloadStore {
  const prefix = options.prefix ?? LARGE_PAYLOAD_PREFIX
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
        throw new LargePayloadError(
          `could not store a ${bytes.length}-byte payload in s3://${options.bucket}/${key}: ${errorMessage(error)}`,
          failureOf(error),
          'check the bucket name (--large-payload-bucket), the region and s3:PutObject permission',
          error,
        )
      }
      return {bucket: options.bucket, key, bytes: bytes.length}
    },
    async get(pointer) {
      const {s3, sdk} = await open()
      const where = `s3://${pointer.bucket}/${pointer.key}`
      let bytes: Uint8Array | undefined
      try {
        const out = await s3.send(new sdk.GetObjectCommand({Bucket: pointer.bucket, Key: pointer.key}))
        bytes = await out.Body?.transformToByteArray()
      } catch (error) {
        const failure = failureOf(error)
        const fix = failure === 'missing' ? 'it was deleted (a lifecycle rule, or a replay already delivered it); the webhook cannot be replayed' : 'check the region and s3:GetObject permission'
        throw new LargePayloadError(`could not read the payload at ${where}: ${errorMessage(error)}`, failure, fix, error)
      }
      if (!bytes) throw new LargePayloadError(`the payload at ${where} has no body`, 'other', 'the object is not one the spigot wrote', undefined)
      return Buffer.from(bytes)
    },
    async delete(pointer) {
      const {s3, sdk} = await open()
      try {
        await s3.send(new sdk.DeleteObjectCommand({Bucket: pointer.bucket, Key: pointer.key}))
      } catch (error) {
        const failure = failureOf(error)
        if (failure === 'missing') return
        throw new LargePayloadError(
          `could not delete the delivered payload at s3://${pointer.bucket}/${pointer.key}: ${errorMessage(error)}`,
          failure,
          'grant s3:DeleteObject; the bucket lifecycle rule deletes it later (docs/spigot.md)',
          error,
        )
      }
    },
    close() {
      void client?.then(({s3}) => {
        s3.destroy()
      })
      client = undefined
    },
  }
}

/** One store per bucket for a run (the drain reads from whatever bucket a pointer names), closed together. */
export class LargePayloads {
  private readonly stores = new Map<string, LargePayloadStore>()

  constructor(private readonly options: {region?: string; profile?: string} = {}) {}

  read(pointer: LargePayloadPointer): Promise<Buffer> {
    return this.storeOf(pointer.bucket).get(pointer)
  }

  delete(pointer: LargePayloadPointer): Promise<void> {
    return this.storeOf(pointer.bucket).delete(pointer)
  }

  close(): void {
    for (const store of this.stores.values()) store.close()
    this.stores.clear()
  }

  private storeOf(bucket: string): LargePayloadStore {
    let store = this.stores.get(bucket)
    if (!store) this.stores.set(bucket, (store = s3LargePayloadStore({bucket, ...this.options})))
    return store
  }
}

/**
 * The S3 objects of webhooks that were delivered (issue 14: the disk, and the bucket, come back).
 * Each is deleted a little after its delivery, so the queue's own delete of the message (batched,
 * within 50 ms) comes first: a message that is received again still finds its payload. close()
 * deletes what is left at the end of a run. A delete that fails is a warn line; the bucket's
 * lifecycle rule is the backstop (docs/spigot.md).
 */
export class DeliveredPayloads {
  private pending: Array<{pointer: LargePayloadPointer; at: number}> = []
  private timer?: NodeJS.Timeout
  private readonly deleting = new Set<Promise<void>>()
  /** Objects deleted so far. */
  deleted = 0

  constructor(
    private readonly payloads: Pick<LargePayloads, 'delete'>,
    private readonly log: Logger,
    private readonly graceMs = 2000,
  ) {}

  add(pointer: LargePayloadPointer): void {
    this.pending.push({pointer, at: performance.now()})
    this.timer ??= setTimeout(() => {
      this.timer = undefined
      this.flush(false)
    }, this.graceMs).unref()
  }

  async close(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    this.flush(true)
    await Promise.all([...this.deleting])
  }

  private flush(all: boolean): void {
    const due = all ? this.pending.length : this.pending.findIndex(({at}) => performance.now() - at < this.graceMs)
    const now = this.pending.splice(0, due < 0 ? this.pending.length : due)
    for (const {pointer} of now) {
      const deleting = this.payloads
        .delete(pointer)
        .then(() => {
          this.deleted++
        })
        .catch((error: unknown) => {
          this.log.warn(`a delivered webhook's payload stays in S3: ${errorMessage(error)}`, {bucket: pointer.bucket, key: pointer.key})
        })
        .finally(() => this.deleting.delete(deleting))
      this.deleting.add(deleting)
    }
    if (this.pending.length > 0 && !all) {
      this.timer ??= setTimeout(() => {
        this.timer = undefined
        this.flush(false)
      }, this.graceMs).unref()
    }
  }
}

/** The raw bytes behind a message's `large_payload` pointer (one read; a run holds LargePayloads instead). */
export async function readLargePayload(pointer: LargePayloadPointer, options: {region?: string; profile?: string} = {}): Promise<Buffer> {
  const store = s3LargePayloadStore({bucket: pointer.bucket, ...options})
  try {
    return await store.get(pointer)
  } finally {
    store.close()
  }
}

function failureOf(error: unknown): LargePayloadFailure {
  const status = (error as {$metadata?: {httpStatusCode?: number}} | undefined)?.$metadata?.httpStatusCode
  if (awsErrorName(error) === 'NoSuchKey' || (status === 404 && awsErrorName(error) !== 'NoSuchBucket')) return 'missing'
  return classifyAwsError(error)
}
