/**
 * The spigot's large-payload store against S3 as fauxqs emulates it (its own process, loopback):
 * what the intake puts is what the drain reads back, byte for byte, with the GitHub metadata.
 */
import {HeadObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {beforeAll, describe, expect, it} from 'vitest'

import {readLargePayload, s3LargePayloadStore} from '../../src/spigot/large-payload.js'
import {type Fauxqs, startFauxqs, useFauxqsEnv} from '../helpers/fauxqs.js'

let emulator: Fauxqs
beforeAll(async () => {
  emulator = await startFauxqs()
  const restore = useFauxqsEnv(emulator)
  await emulator.createBucket('spigot-payloads')
  return async () => {
    restore()
    await emulator.stop()
  }
})

describe('large webhook payloads in S3 (fauxqs)', () => {
  it('puts the raw bytes under spigot/<day>/<delivery>.json and reads them back byte for byte', async () => {
    const store = s3LargePayloadStore({bucket: 'spigot-payloads'})
    // 3 MB, a multi-byte character at the end: raw bytes, not a string.
    const raw = Buffer.concat([Buffer.from('{"ref":"refs/heads/main","blob":"'), Buffer.alloc(3_000_000, 0x61), Buffer.from([0xe2, 0x82, 0xac]), Buffer.from('"}')])
    const pointer = await store.put(raw, {delivery: '72d3162e-cc78-11e3-81ab-4c9367dc0958', event: 'push'})
    expect(pointer).toEqual({bucket: 'spigot-payloads', key: `spigot/${new Date().toISOString().slice(0, 10)}/72d3162e-cc78-11e3-81ab-4c9367dc0958.json`, bytes: raw.length})
    expect((await readLargePayload(pointer)).equals(raw)).toBe(true)
    const s3 = new S3Client({region: emulator.region, endpoint: emulator.endpoint, forcePathStyle: true})
    const head = await s3.send(new HeadObjectCommand({Bucket: pointer.bucket, Key: pointer.key}))
    expect(head.Metadata).toEqual({'github-event': 'push', 'github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958'})
    s3.destroy()
  })

  it('a bucket that does not exist is one line naming it and the fix', async () => {
    const store = s3LargePayloadStore({bucket: 'no-such-bucket'})
    const error = await store.put(Buffer.from('{}'), {}).catch((e: unknown) => e)
    expect((error as Error).message).toMatch(/could not store a 2-byte payload in s3:\/\/no-such-bucket\//)
  })
})
