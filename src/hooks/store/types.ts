import type {Execution, Task} from '../model.js'

/**
 * Where tasks and executions live: Redis (several service instances) or SQLite (one host).
 * The routines (worker, scheduler, cleaner) only use this interface; each store makes its
 * transitions atomic so that two instances never process one execution.
 *
 * Life of an execution:
 *   insertExecution(ENQUEUED) ─► claim() (DOING, leased) ─► finish() (DONE)
 *                                            └─► reschedule() (SCHEDULED, due later: a retry)
 *   insertExecution(SCHEDULED, due_at) ─► enqueueDue() (ENQUEUED, appended to the work queue)
 *   a claimed execution whose lease lapses (instance died) ─► recoverExpired() ─► front of the queue
 */
export interface HooksStore {
  readonly kind: 'sqlite' | 'redis'
  /** Where it is (password removed). */
  readonly location: string

  createTask(task: Task): Promise<void>
  getTask(uuid: string): Promise<Task | undefined>
  /** In creation order. */
  listTasks(): Promise<Task[]>
  /** Replace a task (config, name, stopped); false when it does not exist. */
  updateTask(task: Task): Promise<boolean>
  /** Deletes the task and all its executions; false when it did not exist. */
  deleteTask(uuid: string): Promise<boolean>

  /**
   * Store a new execution. ENQUEUED ones are appended to the work queue, SCHEDULED ones are due at
   * `due_at`. With `ifAbsent` an execution already stored under the same timestamp wins and
   * undefined is returned (a planned scheduler run); otherwise a clashing timestamp is bumped.
   */
  insertExecution(execution: Execution, options?: {ifAbsent?: boolean}): Promise<Execution | undefined>
  /**
   * Webhook intake in one step: check the task (exists and is a webhook, takes this method, is not
   * stopped) and store the ENQUEUED execution. One round trip on Redis.
   */
  intake(execution: Execution): Promise<IntakeOutcome>
  getExecution(taskUuid: string, timestamp: number): Promise<Execution | undefined>
  /** Newest first. */
  listExecutions(taskUuid: string, options?: {limit?: number}): Promise<Execution[]>
  countExecutions(taskUuid: string): Promise<{total: number; todo: number}>
  /** SCHEDULED executions of a task that are planned runs (not retries), due time ascending. */
  plannedExecutions(taskUuid: string): Promise<Execution[]>

  /** Move due SCHEDULED executions to the work queue; returns those moved. */
  enqueueDue(nowMs: number, limit?: number): Promise<Execution[]>
  /** Take the oldest queued execution: DOING, leased until now + leaseMs, locked to this caller. */
  claim(nowMs: number, leaseMs: number): Promise<Execution | undefined>
  /** Extend the lease of a claimed execution; false when the claim was lost. */
  heartbeat(execution: Execution, nowMs: number, leaseMs: number): Promise<boolean>
  /** Record a claimed execution as DONE (fields as given) and release it; false when the claim was lost. */
  finish(execution: Execution): Promise<boolean>
  /** Record a failed attempt of a claimed execution: SCHEDULED again, due at execution.due_at. */
  reschedule(execution: Execution): Promise<boolean>
  /** Put executions whose lease lapsed back at the front of the queue; returns how many. */
  recoverExpired(nowMs: number, leaseMs: number): Promise<number>
  /**
   * Stop one execution. Not running: DONE now with last_error. Running: a stop is requested; the
   * instance running it sees it (stopRequested, checked at each heartbeat), aborts and records it.
   */
  stopExecution(taskUuid: string, timestamp: number, nowMs: number): Promise<'stopped' | 'stopping' | 'already-done' | 'unknown'>
  stopRequested(execution: Execution): Promise<boolean>
  /** Keep the newest `keep` DONE executions of a task; returns how many were dropped. */
  clean(taskUuid: string, keep: number): Promise<number>

  /** Executions waiting in the work queue. */
  queueLength(): Promise<number>
  getMaintenance(): Promise<boolean>
  setMaintenance(enabled: boolean): Promise<void>
  /** Told at once when another instance flips maintenance (Redis pub/sub); others are polled. */
  subscribe?(handlers: {maintenance: (enabled: boolean) => void}): Promise<void>

  /** Health probe (throws when the store is unreachable). */
  ping(): Promise<void>
  close(): Promise<void>
}

/** Open a store from a URL: `redis://host:port/db`, `rediss://…`, `sqlite:<path>`. */
export interface OpenStoreOptions {
  /** Redis: key prefix (default "hooks"). Tests use a fresh prefix. */
  prefix?: string
  /** SQLite: table prefix (default "hooks_"). */
  tablePrefix?: string
}

/** POST /task with a uuid that exists: 409. */
export class TaskExistsError extends Error {
  readonly statusCode = 409
  constructor(readonly uuid: string) {
    super(`task ${uuid} already exists`)
    this.name = 'TaskExistsError'
  }
}

/** What the API shows when an execution is stopped by an operator. */
export const STOPPED_ERROR = 'stopped by operator'

export type IntakeOutcome =
  | {outcome: 'accepted'; execution: Execution}
  | {outcome: 'unknown'}
  | {outcome: 'wrong-method'; allowed: string}
  | {outcome: 'stopped'}

/** The intake checks, for stores that read the task first. */
export function intakeCheck(task: Task | undefined, method: string): IntakeOutcome | undefined {
  if (!task || task.type !== 'webhook') return {outcome: 'unknown'}
  if (task.config.method !== method) return {outcome: 'wrong-method', allowed: task.config.method}
  if (task.stopped) return {outcome: 'stopped'}
  return undefined
}
