/**
 * The hooks model, as in the CDS hooks µService: a task (webhook or scheduler) and its executions.
 * Field names follow CDS (snake_case in JSON) so the API reads like the original. What clients send
 * and what the stores hold are parsed with the zod schemas here, never cast.
 */
import {z} from 'zod'

export const TASK_TYPES = ['webhook', 'scheduler'] as const
export type TaskType = (typeof TASK_TYPES)[number]

export const WEBHOOK_METHODS = ['GET', 'POST', 'PUT', 'DELETE'] as const
export type WebhookMethod = (typeof WEBHOOK_METHODS)[number]

export const STATUSES = ['SCHEDULED', 'ENQUEUED', 'DOING', 'DONE'] as const
export type ExecutionStatus = (typeof STATUSES)[number]

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** Forward the captured request (or the scheduler payload) to a URL. */
export const httpActionSchema = z.strictObject({
  type: z.literal('http'),
  url: z.url({protocol: /^https?$/, error: 'expected an http(s) URL'}),
  /** Default: the captured request's method (webhook) or POST (scheduler). */
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).optional(),
  /** Added to (and overriding) the forwarded headers. Not for secrets: see header_from_env/file. */
  headers: z.record(z.string().regex(HEADER_NAME, 'expected a header name'), z.string()).optional(),
  /** Header name → an environment variable of the service holding its value (a secret stays out of the store). */
  header_from_env: z.record(z.string().regex(HEADER_NAME, 'expected a header name'), z.string().regex(ENV_NAME, 'expected an environment variable name')).optional(),
  /** Header name → a file on the service's host holding its value, on one line. */
  header_from_file: z.record(z.string().regex(HEADER_NAME, 'expected a header name'), z.string().min(1)).optional(),
  timeout_seconds: z.number().positive().max(600).optional(),
})

/** Put a message on a queue (any openQueue URL: sqlite:, SQS, …). */
export const queueActionSchema = z.strictObject({
  type: z.literal('queue'),
  url: z.string().min(1),
  /**
   * execution (default): a JSON document describing the execution (task, request or payload);
   * body: the captured body (or the JSON payload) as is;
   * spigot: the spigot's queue message {spigot_state, from_queue, body, headers, raw_body}.
   */
  format: z.enum(['execution', 'body', 'spigot']).optional(),
  group_id: z.string().optional(),
})

/** Run a job of jobs.yml. */
export const jobActionSchema = z.strictObject({
  type: z.literal('job'),
  name: z.string().min(1),
  parameters: z.array(z.string()).optional(),
})

export const actionSchema = z.discriminatedUnion('type', [httpActionSchema, queueActionSchema, jobActionSchema])
export type Action = z.infer<typeof actionSchema>
export type HttpAction = z.infer<typeof httpActionSchema>
export type QueueAction = z.infer<typeof queueActionSchema>
export type JobAction = z.infer<typeof jobActionSchema>

export const webhookConfigSchema = z.strictObject({
  method: z.enum(WEBHOOK_METHODS).default('POST'),
  action: actionSchema,
})

export const schedulerConfigSchema = z.strictObject({
  /** 5 fields, or 6 with a leading seconds field. */
  cron: z.string().min(1),
  /** IANA time zone (default UTC). */
  timezone: z.string().default('UTC'),
  /** JSON payload handed to the action. */
  payload: z.unknown().optional(),
  action: actionSchema,
})

export type WebhookConfig = z.infer<typeof webhookConfigSchema>
export type SchedulerConfig = z.infer<typeof schedulerConfigSchema>

/** What a client sends to create (or replace) a task. */
export const taskInputSchema = z.discriminatedUnion('type', [
  z.strictObject({
    uuid: z.uuid().optional(),
    name: z.string().max(200).optional(),
    type: z.literal('webhook'),
    config: webhookConfigSchema,
    stopped: z.boolean().optional(),
  }),
  z.strictObject({
    uuid: z.uuid().optional(),
    name: z.string().max(200).optional(),
    type: z.literal('scheduler'),
    config: schedulerConfigSchema,
    stopped: z.boolean().optional(),
  }),
])
export type TaskInput = z.input<typeof taskInputSchema>

const taskBase = {
  uuid: z.string().min(1),
  name: z.string().optional(),
  stopped: z.boolean(),
  /** ms since epoch. */
  created_at: z.number(),
  updated_at: z.number(),
}

/** A task as stored (and as the API answers it, with counts: taskViewSchema). */
export const taskSchema = z.discriminatedUnion('type', [
  z.object({...taskBase, type: z.literal('webhook'), config: webhookConfigSchema}),
  z.object({...taskBase, type: z.literal('scheduler'), config: schedulerConfigSchema}),
])
export type Task = z.infer<typeof taskSchema>

const counts = {nb_executions_total: z.number(), nb_executions_todo: z.number()}
/** A task as the API shows it: with counts of its executions (secret header values never shown). */
export const taskViewSchema = z.discriminatedUnion('type', [
  z.object({...taskBase, type: z.literal('webhook'), config: webhookConfigSchema, ...counts}),
  z.object({...taskBase, type: z.literal('scheduler'), config: schedulerConfigSchema, ...counts}),
])
export type TaskView = z.infer<typeof taskViewSchema>

/** The captured webhook request. */
export const capturedRequestSchema = z.object({
  method: z.string(),
  /** Lower-case names as received (hop-by-hop headers dropped, secret ones `[redacted]`). */
  headers: z.record(z.string(), z.string()),
  /** The body bytes, base64. */
  raw_body: z.string(),
  query: z.record(z.string(), z.union([z.string(), z.array(z.string())])),
})
export type CapturedRequest = z.infer<typeof capturedRequestSchema>

export const actionResultSchema = z.object({
  /** http: the target's status; queue: the message id; job: the exit code. */
  status: z.number().optional(),
  message_id: z.string().optional(),
  exit_code: z.number().nullable().optional(),
  /** First bytes of the answer, or the job's last lines (secrets masked). */
  output: z.string().optional(),
  duration_ms: z.number(),
})
export type ActionResult = z.infer<typeof actionResultSchema>

export const executionSchema = z.object({
  /** Unique id (uuid), set by the store. */
  id: z.string().optional(),
  task_uuid: z.string(),
  type: z.enum(TASK_TYPES),
  /** Unique per task: creation time in microseconds (for a scheduled run: its planned time). */
  timestamp: z.number(),
  status: z.enum(STATUSES),
  /** Failed attempts (a target that was down does not count: docs/delivery.md). */
  nb_errors: z.number(),
  last_error: z.string().optional(),
  /** When processing last started (ms). */
  processing_timestamp: z.number().optional(),
  /** Duration of the last attempt (ms). */
  duration_ms: z.number().optional(),
  /** webhook: the captured request. */
  request: capturedRequestSchema.optional(),
  /** scheduler: the planned date (ISO). */
  scheduled_date: z.string().optional(),
  /** scheduler: the payload at planning time. */
  payload: z.unknown().optional(),
  result: actionResultSchema.optional(),
  /** ms: when a SCHEDULED execution (planned run or retry) becomes due. */
  due_at: z.number().optional(),
  /** Set when an operator stopped this execution. */
  stopped: z.boolean().optional(),
  /** Set when it went dead: DONE with last_error after its last attempt, or refused for good. */
  dead: z.boolean().optional(),
  /** The instance that claimed it last (`<host>:<pid>:<id>`): its jobs are found by it after a crash. */
  owner: z.string().optional(),
  /** Internal: on a claim, the instance that had it before (it died, or lost the lease). Never stored. */
  previous_owner: z.string().optional(),
  /** ms */
  created_at: z.number(),
  done_at: z.number().optional(),
  /** Internal: the token of the current claim (never shown by the API). */
  claim: z.string().optional(),
})
export type Execution = z.infer<typeof executionSchema>
export type PublicExecution = Omit<Execution, 'claim' | 'previous_owner'>

/** The first problem of a zod error as `path: message`. */
export function describeIssue(error: z.ZodError, prefix = ''): string {
  const issue = error.issues.at(0)
  if (!issue) return prefix ? `${prefix}: invalid` : 'invalid'
  const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.')
  return path ? `${path}: ${issue.message}` : issue.message
}

/** An execution as the API shows it. */
export function publicExecution(execution: Execution): PublicExecution {
  const {claim: _claim, previous_owner: _previous, ...rest} = execution
  return rest
}

/** µs timestamps: ms precision times 1000 plus a per-process counter keeps them unique and ordered. */
let lastMicros = 0
export function newTimestamp(nowMs: number): number {
  const candidate = nowMs * 1000
  lastMicros = candidate > lastMicros ? candidate : lastMicros + 1
  return lastMicros
}

/** Queue reference of an execution: `<type>:<uuid>:<timestamp>`. */
export function executionRef(execution: Pick<Execution, 'type' | 'task_uuid' | 'timestamp'>): string {
  return `${execution.type}:${execution.task_uuid}:${execution.timestamp}`
}

/** The timestamp of a queue reference (µs), NaN for a malformed one. */
export function refTimestamp(ref: string): number {
  return Number(ref.slice(ref.lastIndexOf(':') + 1))
}

export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', {timeZone: zone})
    return true
  } catch {
    return false
  }
}
