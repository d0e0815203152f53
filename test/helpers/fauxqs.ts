/**
 * fauxqs (an independently written SQS/S3 emulator, npm `fauxqs`) as a server in its own process
 * on a free loopback port. Its queue URLs name the host `sqs.<region>.localhost:<port>`, which
 * does not resolve everywhere, so clients must send to the endpoint (AWS_ENDPOINT_URL): cistern's
 * SQS backend does, and so does `client` here. Credentials are fake; fauxqs does not check them.
 *
 *   const emulator = await startFauxqs()
 *   useFauxqsEnv(emulator)            // AWS_ENDPOINT_URL, AWS_REGION, fake keys for this process
 *   const {url} = await emulator.createQueue('jobs', {deadLetter: 'jobs-dlq', maxReceiveCount: 3})
 */
import {CreateQueueCommand, GetQueueAttributesCommand, SQSClient} from '@aws-sdk/client-sqs'
import {type ChildProcess, spawn} from 'node:child_process'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'

export interface Fauxqs {
  /** http://127.0.0.1:<port> */
  endpoint: string
  region: string
  /** An SQS client on the emulator, for set-up and for looking at queues behind cistern's back. */
  client: SQSClient
  /** The environment a process (cistern's SQS backend, the built CLI) needs to use the emulator. */
  env: Record<string, string>
  /**
   * Creates a queue (FIFO when the name ends in .fifo). With `deadLetter`, that queue is created
   * first (FIFO alike) and named in a RedrivePolicy with `maxReceiveCount` (default 5).
   */
  createQueue(name: string, options?: {deadLetter?: string; maxReceiveCount?: number; visibilityTimeout?: number}): Promise<{url: string; arn: string}>
  /** Creates an S3 bucket on the emulator (the same endpoint serves S3). */
  createBucket(name: string): Promise<void>
  stop(): Promise<void>
}

const appModule = fileURLToPath(new URL('../../node_modules/fauxqs/dist/app.js', import.meta.url))

// Listens on loopback only (fauxqs's own CLI listens on every interface); exits when its stdin
// closes, so a test process that dies never leaves an emulator behind.
const serverScript = `
const {buildApp} = await import(${JSON.stringify(appModule)})
const app = buildApp({logger: false, defaultRegion: process.env.FAUXQS_DEFAULT_REGION})
const address = await app.listen({port: 0, host: '127.0.0.1'})
process.stdout.write(JSON.stringify({address}) + '\\n')
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
`

export async function startFauxqs(options: {region?: string} = {}): Promise<Fauxqs> {
  const region = options.region ?? 'us-east-1'
  const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', serverScript], {
    env: {...process.env, FAUXQS_LOGGER: 'false', FAUXQS_DEFAULT_REGION: region},
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('fauxqs did not start within 20 s')), 20_000)
    child.once('exit', (code) => reject(new Error(`fauxqs exited (${code}) before it listened`)))
    createInterface({input: child.stdout!}).once('line', (line) => {
      clearTimeout(timer)
      resolve((JSON.parse(line) as {address: string}).address)
    })
  })
  const env = {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: region,
    AWS_ACCESS_KEY_ID: 'fauxqs-test-key',
    AWS_SECRET_ACCESS_KEY: 'fauxqs-test-secret',
  }
  const client = new SQSClient({region, endpoint, credentials: {accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY}})

  const create = async (name: string, attributes: Record<string, string>) => {
    const fifo = name.endsWith('.fifo') ? {FifoQueue: 'true'} : {}
    const {QueueUrl} = await client.send(new CreateQueueCommand({QueueName: name, Attributes: {...fifo, ...attributes}}))
    const {Attributes} = await client.send(new GetQueueAttributesCommand({QueueUrl, AttributeNames: ['QueueArn']}))
    return {url: QueueUrl!, arn: Attributes!.QueueArn!}
  }

  return {
    endpoint,
    region,
    client,
    env,
    async createQueue(name, options = {}) {
      const attributes: Record<string, string> = {}
      if (options.visibilityTimeout !== undefined) attributes.VisibilityTimeout = String(options.visibilityTimeout)
      if (options.deadLetter) {
        const dlq = await create(options.deadLetter, {})
        attributes.RedrivePolicy = JSON.stringify({deadLetterTargetArn: dlq.arn, maxReceiveCount: options.maxReceiveCount ?? 5})
      }
      return create(name, attributes)
    },
    async createBucket(name) {
      const {S3Client, CreateBucketCommand} = await import('@aws-sdk/client-s3')
      const s3 = new S3Client({region, endpoint, forcePathStyle: true, credentials: {accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY}})
      try {
        await s3.send(new CreateBucketCommand({Bucket: name}))
      } finally {
        s3.destroy()
      }
    },
    async stop() {
      client.destroy()
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.stdin!.end()
      await exited
    },
  }
}

/** Points this process's AWS SDK at the emulator; returns a function that puts the old values back. */
export function useFauxqsEnv(emulator: Fauxqs): () => void {
  const saved = Object.fromEntries(Object.keys(emulator.env).map((key) => [key, process.env[key]]))
  Object.assign(process.env, emulator.env)
  return () => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) Reflect.deleteProperty(process.env, key)
      else process.env[key] = value
    }
  }
}
