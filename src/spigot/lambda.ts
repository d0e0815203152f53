import {z} from 'zod'

import {CisternError, ExitCode} from '../core/errors.js'
import {type LogLevel, type Logger, createLogger} from '../core/log.js'
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
 * A 2xx outcome returns normally (the integration's default 200); an error status throws a
 * LambdaAnswerError whose message starts with the status ("401: …") for the integration response
 * regexes (docs/operations.md#integration-responses). A proxy-integration or function-URL event
 * (`requestContext`, string `body`) gets {statusCode, headers, body} instead.
 */

const headersSchema = z.record(z.string(), z.string())

/** The mapping-template event; cistern's template adds the raw bytes: "$util.base64Encode($input.body)". */
const mappingTemplateEventSchema = z.object({
  spigot_state: z.string().optional(),
  from_queue: z.string().optional(),
  body: z.unknown(),
  headers: headersSchema.optional(),
  raw_body: z.string().optional(),
})

/** A proxy-integration or Lambda function URL event (the parts the intake reads). */
const proxyEventSchema = z.object({
  requestContext: z.unknown(),
  body: z.string().nullish(),
  isBase64Encoded: z.boolean().optional(),
  headers: z.record(z.string(), z.string().optional()).nullish(),
  queryStringParameters: z.record(z.string(), z.string().optional()).nullish(),
  stageVariables: z.record(z.string(), z.string().optional()).nullish(),
})

export type MappingTemplateEvent = z.infer<typeof mappingTemplateEventSchema>
export type ProxyEvent = z.infer<typeof proxyEventSchema>

export interface ProxyResult {
  statusCode: number
  headers: Record<string, string>
  body: string
}

/**
 * An answer other than 2xx, as the Lambda hands it to API Gateway: an error whose message starts
 * with the HTTP status ("503: could not queue …"). A non-proxy integration can only choose a
 * method response by matching the error message, so the status has to lead it; the original spigot
 * raised its errors the same way ("500: Environment variable TARGET_URL was not set").
 */
export class LambdaAnswerError extends CisternError {
  constructor(
    readonly status: number,
    text: string,
  ) {
    super(`${status}: ${text}`, {exitCode: status < 500 ? ExitCode.usage : ExitCode.failure})
    this.name = 'LambdaAnswerError'
  }
}

interface Runtime {
  config: SpigotConfig
  queue: Queue
  log: Logger
  intake: Intake
}

let runtime: Promise<Runtime> | undefined
let runtimeKey = ''

const ENV_KEYS = ['TARGET_URL', 'TARGET_QUEUE', 'GITHUB_WEBHOOK_SECRET', 'JENKINS_USER', 'JENKINS_TOKEN', 'LARGE_PAYLOAD_BUCKET', 'FORWARD_TIMEOUT_MS', 'LOG_LEVEL', 'CISTERN_CONFIG', 'CISTERN_SPIGOT_UNROUTED', 'AWS_REGION']
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error']

/** A queue name (the original's TARGET_QUEUE) becomes sqs://<name>; a URL is used as is. */
export function queueUrlFrom(value: string): string {
  return /^[a-z][\w+.-]*:/i.test(value) ? value : `sqs://${value}`
}

/** The set-up for this environment: built on the first invocation, kept while the environment stays the same. */
async function setUp(env: NodeJS.ProcessEnv): Promise<Runtime> {
  const key = ENV_KEYS.map((name) => env[name] ?? '').join('\u0000')
  if (runtime && key === runtimeKey) return runtime
  const previous = runtime
  runtimeKey = key
  const next = (async () => {
    if (previous) await previous.then(close).catch(() => undefined)
    return build(env)
  })()
  runtime = next
  // A failed set-up (bad env) is tried again on the next invocation.
  next.catch(() => {
    if (runtime === next) runtime = undefined
  })
  return next
}

async function build(env: NodeJS.ProcessEnv): Promise<Runtime> {
  const level = LOG_LEVELS.find((name) => name === (env.LOG_LEVEL ?? 'info').toLowerCase()) ?? 'info'
  const log = createLogger({format: 'json', level}).child({component: 'spigot-lambda'})
  if (!env.TARGET_URL) throw new LambdaAnswerError(500, 'Environment variable TARGET_URL was not set')
  if (!env.TARGET_QUEUE) throw new LambdaAnswerError(500, 'Environment variable TARGET_QUEUE was not set')
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
  return {config, queue, log, intake: createIntake({config, queue, log, largePayloads})}
}

async function close(rt: Runtime): Promise<void> {
  await rt.intake.close()
  await rt.queue.close()
}

function parseStateValue(value: string | undefined): SpigotStateValue {
  const normal = value?.trim().toUpperCase()
  if (normal === 'ON' || normal === 'OFF') return normal
  throw new LambdaAnswerError(500, `API Gateway stage variable spigot_state was not correctly set. Should be ON or OFF, was: ${value ?? '(unset)'}`)
}

function withoutHeader(headers: Record<string, string>, name: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() !== name.toLowerCase()) out[key] = value
  return out
}

async function runMappingEvent(event: MappingTemplateEvent, env: NodeJS.ProcessEnv): Promise<IntakeResult> {
  const rt = await setUp(env)
  const state = parseStateValue(event.spigot_state)
  let headers = {...event.headers}
  let rawBody: Buffer
  if (event.raw_body) {
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
  return rt.intake.handle({rawBody, headers, state, fromQueue, fromQueueValue: event.from_queue ?? ''})
}

async function runProxyEvent(event: ProxyEvent, env: NodeJS.ProcessEnv): Promise<IntakeResult> {
  const rt = await setUp(env)
  const state = parseStateValue(event.stageVariables?.spigot_state ?? env.SPIGOT_STATE)
  const rawBody = Buffer.from(event.body ?? '', event.isBase64Encoded ? 'base64' : 'utf8')
  const headers: Record<string, string> = {}
  for (const [key, value] of Object.entries(event.headers ?? {})) if (value !== undefined) headers[key] = value
  const fromQueueValue = event.queryStringParameters?.from_queue
  return rt.intake.handle({rawBody, headers, state, fromQueue: (fromQueueValue ?? '').toLowerCase() === 'true', fromQueueValue: fromQueueValue ?? ''})
}

export async function handler(event: unknown, _context?: unknown): Promise<Record<string, unknown> | ProxyResult> {
  const proxy = isProxyShaped(event) ? proxyEventSchema.safeParse(event) : undefined
  if (proxy?.success) {
    const result = await runProxyEvent(proxy.data, process.env)
    return {statusCode: result.status, headers: {'content-type': 'application/json'}, body: JSON.stringify(result.body)}
  }
  const parsed = mappingTemplateEventSchema.safeParse(event ?? {})
  if (!parsed.success) throw new LambdaAnswerError(400, `not an API Gateway event: ${parsed.error.issues[0]?.message ?? 'unexpected shape'} (check the mapping template)`)
  const result = await runMappingEvent(parsed.data, process.env)
  if (result.status >= 400) throw new LambdaAnswerError(result.status, typeof result.body.error === 'string' ? result.body.error : result.reason)
  return {status: result.status, ...result.body}
}

/** A proxy-integration event has requestContext; the mapping template's has spigot_state. */
function isProxyShaped(event: unknown): boolean {
  return typeof event === 'object' && event !== null && 'requestContext' in event && !('spigot_state' in event)
}

/** Tests and long-lived hosts: close the cached queue. */
export async function resetLambdaRuntime(): Promise<void> {
  const current = runtime
  runtime = undefined
  runtimeKey = ''
  if (current) await current.then(close).catch(() => undefined)
}
