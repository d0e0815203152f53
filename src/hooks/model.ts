/**
 * The hooks model, as in the CDS hooks µService: a task (webhook or scheduler) and its executions.
 * Field names follow CDS (snake_case in JSON) so the API reads like the original.
 */
import {z} from 'zod'

export const TASK_TYPES = ['webhook', 'scheduler'] as const
export type TaskType = (typeof TASK_TYPES)[number]

export const WEBHOOK_METHODS = ['GET', 'POST', 'PUT', 'DELETE'] as const
export type WebhookMethod = (typeof WEBHOOK_METHODS)[number]

export const STATUSES = ['SCHEDULED', 'ENQUEUED', 'DOING', 'DONE'] as const
export type ExecutionStatus = (typeof STATUSES)[number]

/** Forward the captured request (or the scheduler payload) to a URL. */
export const httpActionSchema = z.strictObject({
  type: z.literal('http'),
  url: z.url({protocol: /^https?$/, error: 'expected an http(s) URL'}),
  /** Default: the captured request's method (webhook) or POST (scheduler). */
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).optional(),
  /** Added to (and overriding) the forwarded headers. */
  headers: z.record(z.string(), z.string()).optional(),
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

interface TaskBase {
  uuid: string
  name?: string
  stopped: boolean
  /** ms since epoch. */
  created_at: number
  updated_at: number
}
export type Task =
  | (TaskBase & {type: 'webhook'; config: WebhookConfig})
  | (TaskBase & {type: 'scheduler'; config: SchedulerConfig})

/** A task as the API shows it: with counts of its executions. */
export type TaskView = Task & {nb_executions_total: number; nb_executions_todo: number}

/** The captured webhook request. */
export interface CapturedRequest {
  method: string
  /** Lower-case names as received (hop-by-hop headers dropped). */
  headers: Record<string, string>
  /** The body bytes, base64. */
  raw_body: string
  query: Record<string, string | string[]>
}

export interface ActionResult {
  /** http: the target's status; queue: the message id; job: the exit code. */
  status?: number
  message_id?: string
  exit_code?: number | null
  /** First bytes of the answer, or the job's last lines. */
  output?: string
  duration_ms: number
}

export interface Execution {
  /** Unique id (uuid), set by the store. */
  id?: string
  task_uuid: string
  type: TaskType
  /** Unique per task: creation time in microseconds (for a scheduled run: its planned time). */
  timestamp: number
  status: ExecutionStatus
  nb_errors: number
  last_error?: string
  /** When processing last started (ms). */
  processing_timestamp?: number
  /** Duration of the last attempt (ms). */
  duration_ms?: number
  /** webhook: the captured request. */
  request?: CapturedRequest
  /** scheduler: the planned date (ISO). */
  scheduled_date?: string
  /** scheduler: the payload at planning time. */
  payload?: unknown
  result?: ActionResult
  /** ms: when a SCHEDULED execution (planned run or retry) becomes due. */
  due_at?: number
  /** Set when an operator stopped this execution. */
  stopped?: boolean
  /** ms */
  created_at: number
  done_at?: number
  /** Internal: the token of the current claim (never shown by the API). */
  claim?: string
}

/** An execution as the API shows it. */
export function publicExecution(execution: Execution): Omit<Execution, 'claim'> {
  const {claim: _claim, ...rest} = execution
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

export function parseRef(ref: string): {type: TaskType; task_uuid: string; timestamp: number} {
  const [type, task_uuid, ts] = ref.split(':')
  return {type: type as TaskType, task_uuid, timestamp: Number(ts)}
}

export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', {timeZone: zone})
    return true
  } catch {
    return false
  }
}
