import {createLogger, type LogLevel, type Logger} from '../core/log.js'
import {openQueue} from '../core/queue/index.js'
import type {Queue} from '../core/queue/types.js'
import {type SpigotConfig, resolveSpigotConfig} from './config.js'
import {type Intake, type IntakeResult, type SpigotStateValue, createIntake} from './intake.js'
import {s3LargePayloadStore} from './large-payload.js'

/**
 * The spigot as an AWS Lambda, a drop-in for the original `process_webhooks` function. API Gateway
 * (non-proxy integration) calls it with the mapping-template event
 *   {spigot_state, from_queue, body, headers}          (+ raw_body: $util.base64Encode($input.body))
 * and the same intake as `cistern spigot serve` decides: verify → route → forward or queue.
 * Environment (the original's names): TARGET_URL (Jenkins), TARGET_QUEUE (SQS queue name or URL),
 * plus GITHUB_WEBHOOK_SECRET, JENKINS_USER/JENKINS_TOKEN, LARGE_PAYLOAD_BUCKET,
 * FORWARD_TIMEOUT_MS, LOG_LEVEL, CISTERN_CONFIG.
 *
 * A 2xx outcome returns normally (the integration's default 200); an error status throws an Error
 * whose message starts with the status ("401: …") for the integration response regexes
 * (examples/spigot/integration-response.md). A proxy-integration or function-URL event
 * (`requestContext`, string `body`) gets {statusCode, headers, body} instead.
 */

export interface MappingTemplateEvent {
  spigot_state?: string
  from_queue?: string
  body?: unknown
  headers?: Record<string, string>
  /** cistern's mapping template adds the raw bytes: "$util.base64Encode($input.body)". */
  raw_body?: string
}

export interface ProxyEvent {
  requestContext: unknown
  body?: string | null
  isBase64Encoded?: boolean
  headers?: Record<string, string | undefined>
  queryStringParameters?: Record<string, string | undefined> | null
  stageVariables?: Record<string, string | undefined> | null
}

export interface ProxyResult {
  statusCode: number
  headers: Record<string, string>
  body: string
}

interface Runtime {
  key: string
  config: SpigotConfig
  queue: Queue
  log: Logger
  intakeFor(state: () => Promise<SpigotStateValue>): Intake
}

let runtime: Promise<Runtime> | undefined
let runtimeKey = ''

const ENV_KEYS = ['TARGET_URL', 'TARGET_QUEUE', 'GITHUB_WEBHOOK_SECRET', 'JENKINS_USER', 'JENKINS_TOKEN', 'LARGE_PAYLOAD_BUCKET', 'FORWARD_TIMEOUT_MS', 'LOG_LEVEL', 'CISTERN_CONFIG', 'AWS_REGION']

/** A queue name (the original's TARGET_QUEUE) becomes sqs://<name>; a URL is used as is. */
export function queueUrlFrom(value: string): string {
  return /^[a-z][\w+.-]*:/i.test(value) ? value : `sqs://${value}`
}

async function setUp(env: NodeJS.ProcessEnv): Promise<Runtime> {
  const key = ENV_KEYS.map((name) => env[name] ?? '').join('\u0000')
  if (runtime && key === runtimeKey) return runtime
  const previous = runtime
  runtimeKey = key
  runtime = (async () => {
    if (previous) await previous.then((r) => r.queue.close()).catch(() => {})
    const level = (env.LOG_LEVEL ?? 'info').toLowerCase()
    const log = createLogger({format: 'json', level: (['debug', 'info', 'warn', 'error'].includes(level) ? level : 'info') as LogLevel}).child({component: 'spigot-lambda'})
    if (!env.TARGET_URL) throw new Error('500: Environment variable TARGET_URL was not set')
    if (!env.TARGET_QUEUE) throw new Error('500: Environment variable TARGET_QUEUE was not set')
    const timeout = env.FORWARD_TIMEOUT_MS ? Number(env.FORWARD_TIMEOUT_MS) : undefined
    const config = await resolveSpigotConfig(
      {
        'jenkins-url': env.TARGET_URL,
        queue: queueUrlFrom(env.TARGET_QUEUE),
        ...(env.LARGE_PAYLOAD_BUCKET ? {'large-payload-bucket': env.LARGE_PAYLOAD_BUCKET} : {}),
        ...(timeout ? {'forward-timeout': timeout} : {}),
      },
      env,
    )
    const queue = await openQueue(config.queue, {fifo: true, log})
    const largePayloads = config.largePayloadBucket ? s3LargePayloadStore({bucket: config.largePayloadBucket}) : undefined
    return {
      key,
      config,
      queue,
      log,
      intakeFor: (state) => createIntake({config, queue, log, state, largePayloads}),
    }
  })()
  runtime.catch(() => {
    // A failed set-up (bad env) is retried on the next invocation.
    if (runtimeKey === key) runtime = undefined
  })
  return runtime
}

function parseStateValue(value: string | undefined): SpigotStateValue {
  const normal = value?.trim().toUpperCase()
  if (normal === 'ON' || normal === 'OFF') return normal
  throw new Error(`500: API Gateway stage variable spigot_state was not correctly set. Should be ON or OFF, was: ${value ?? '(unset)'}`)
}

function withoutHeader(headers: Record<string, string>, name: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() !== name.toLowerCase()) out[key] = value
  return out
}

async function runMappingEvent(event: MappingTemplateEvent, env: NodeJS.ProcessEnv): Promise<IntakeResult> {
  const rt = await setUp(env)
  const state = parseStateValue(event.spigot_state)
  let headers = {...(event.headers ?? {})}
  let rawBody: Buffer
  if (typeof event.raw_body === 'string' && event.raw_body.length > 0) {
    rawBody = Buffer.from(event.raw_body, 'base64')
  } else {
    // The original template passes only the parsed body: re-serialise it as JSON (as the original did).
    if (rt.config.webhookSecret !== undefined) {
      return {
        status: 401,
        outcome: 'rejected',
        reason: 'signature',
        body: {error: 'cannot verify X-Hub-Signature-256 without the raw body: add "raw_body": "$util.base64Encode($input.body)" to the mapping template'},
      }
    }
    rawBody = Buffer.from(typeof event.body === 'string' ? event.body : JSON.stringify(event.body ?? null))
    headers = {...withoutHeader(headers, 'Content-Type'), 'Content-Type': 'application/json'}
  }
  const fromQueue = (event.from_queue ?? '').toLowerCase() === 'true'
  return rt.intakeFor(async () => state).handle({rawBody, headers, fromQueue, fromQueueValue: event.from_queue ?? ''})
}

async function runProxyEvent(event: ProxyEvent, env: NodeJS.ProcessEnv): Promise<IntakeResult> {
  const rt = await setUp(env)
  const state = parseStateValue(event.stageVariables?.spigot_state ?? env.SPIGOT_STATE)
  const rawBody = Buffer.from(event.body ?? '', event.isBase64Encoded ? 'base64' : 'utf8')
  const headers: Record<string, string> = {}
  for (const [key, value] of Object.entries(event.headers ?? {})) if (value !== undefined) headers[key] = value
  const fromQueueValue = event.queryStringParameters?.from_queue
  return rt.intakeFor(async () => state).handle({rawBody, headers, fromQueue: (fromQueueValue ?? '').toLowerCase() === 'true', fromQueueValue: fromQueueValue ?? ''})
}

function isProxyEvent(event: unknown): event is ProxyEvent {
  return Boolean(event && typeof event === 'object' && 'requestContext' in event && !('spigot_state' in event))
}

export async function handler(event: MappingTemplateEvent | ProxyEvent, _context?: unknown): Promise<Record<string, unknown> | ProxyResult> {
  if (isProxyEvent(event)) {
    const result = await runProxyEvent(event, process.env)
    return {statusCode: result.status, headers: {'content-type': 'application/json'}, body: JSON.stringify(result.body)}
  }
  const result = await runMappingEvent(event ?? {}, process.env)
  if (result.status >= 400) {
    const error = typeof result.body.error === 'string' ? result.body.error : result.reason
    throw new Error(`${result.status}: ${error}`)
  }
  return {status: result.status, ...result.body}
}

/** Tests and long-lived hosts: close the cached queue. */
export async function resetLambdaRuntime(): Promise<void> {
  const current = runtime
  runtime = undefined
  runtimeKey = ''
  if (current) await current.then((r) => r.queue.close()).catch(() => {})
}
