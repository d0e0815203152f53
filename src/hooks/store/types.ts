import type {Execution, Task} from '../model.js'

/**
 * Where tasks and executions live: Redis (several service instances) or SQLite (one host).
 * The routines (worker, scheduler, cleaner) only use this interface; each store makes its
 * transitions atomic so that two instances never process one execution.
 *
 * Life of an execution:
 *   insertExecution(ENQUEUED) ─► claim() (DOING, leased) ─► finish() (DONE)
 *                                            └─► reschedule() (SCHEDULED, due later: a retry, or a target that was down)
 *   insertExecution(SCHEDULED, due_at) ─► enqueueDue() (ENQUEUED, appended to the work queue)
 *   a claimed execution whose lease lapsed (instance died) ─► recoverExpired() ─► front of the queue
 */
export type HooksStore = TaskStore & ExecutionStore & WorkQueue & SharedFlags & StoreConnection

export interface StoreConnection {
  readonly kind: 'sqlite' | 'redis'
  /** Where it is (password removed). */
  readonly location: string
  /** Health probe (throws when the store is unreachable). */
  ping(): Promise<void>
  /** Close, waiting for pending writes; a second call, or close({force: true}), drops what is pending (shutdown past its deadline). */
  close(options?: {force?: boolean}): Promise<void>
}

export interface TaskStore {
  createTask(task: Task): Promise<void>
  getTask(uuid: string): Promise<Task | undefined>
  /** In creation order. */
  listTasks(): Promise<Task[]>
  /** Replace a task (config, name, stopped); false when it does not exist. */
  updateTask(task: Task): Promise<boolean>
  /** Deletes the task and all its executions; false when it did not exist. */
  deleteTask(uuid: string): Promise<boolean>
}

export interface ExecutionStore {
  /**
   * Store a new execution. ENQUEUED ones are appended to the work queue, SCHEDULED ones are due at
   * `due_at`. With `ifAbsent` an execution already stored under the same timestamp wins and
   * undefined is returned (a planned scheduler run); otherwise a clashing timestamp is bumped.
   */
  insertExecution(execution: Execution, options?: {ifAbsent?: boolean}): Promise<Execution | undefined>
  /**
   * Webhook intake in one step: check the task (exists and is a webhook, takes this method, is not
   * stopped) and store the ENQUEUED execution. One round trip on Redis. `deadline` (ms, this
   * process's clock): a store that may apply the write late (Redis replays queued commands after a
   * reconnect) refuses it after then ('late'), so an intake answered 503 never stores its execution.
   */
  intake(execution: Execution, options?: {deadline?: number}): Promise<IntakeOutcome>
  getExecution(taskUuid: string, timestamp: number): Promise<Execution | undefined>
  /** Newest first. */
  listExecutions(taskUuid: string, options?: {limit?: number}): Promise<Execution[]>
  countExecutions(taskUuid: string): Promise<{total: number; todo: number}>
  /** SCHEDULED executions of a task that are planned runs (not retries), due time ascending. */
  plannedExecutions(taskUuid: string): Promise<Execution[]>
  /**
   * Stop one execution. Not running: DONE now with last_error. Running: a stop is requested; the
   * instance running it sees it (stopRequested, checked at each heartbeat), aborts and records it.
   */
  stopExecution(taskUuid: string, timestamp: number, nowMs: number): Promise<'stopped' | 'stopping' | 'already-done' | 'unknown'>
  stopRequested(execution: Execution): Promise<boolean>
  /** Keep the newest `keep` DONE executions of a task; returns how many were dropped. */
  clean(taskUuid: string, keep: number): Promise<number>
}

export interface WorkQueue {
  /** Move due SCHEDULED executions to the work queue; returns those moved. */
  enqueueDue(nowMs: number, limit?: number): Promise<Execution[]>
  /** Take the oldest queued execution: DOING, leased until now + leaseMs, locked to this caller, `owner` recorded. */
  claim(nowMs: number, leaseMs: number, owner?: string): Promise<Execution | undefined>
  /** Extend the lease of a claimed execution; false when the claim was lost. */
  heartbeat(execution: Execution, nowMs: number, leaseMs: number): Promise<boolean>
  /** Record a claimed execution as DONE (fields as given) and release it; false when the claim was lost. */
  finish(execution: Execution): Promise<boolean>
  /** Hand a claimed execution back: SCHEDULED again, due at execution.due_at (a retry, or a target that was down). */
  reschedule(execution: Execution): Promise<boolean>
  /** Put executions whose lease lapsed back at the front of the queue; returns how many. */
  recoverExpired(nowMs: number, leaseMs: number): Promise<number>
  /** Executions waiting in the work queue. */
  queueLength(): Promise<number>
  /** What the work queue holds, for /mon/status and the metrics. */
  backlog(nowMs: number): Promise<Backlog>
}

export interface SharedFlags {
  getMaintenance(): Promise<boolean>
  setMaintenance(enabled: boolean): Promise<void>
  /** Told at once when another instance flips maintenance (Redis pub/sub); others are polled. */
  subscribe?(handlers: {maintenance: (enabled: boolean) => void}): Promise<void>
}

/** The work queue's counts (cistern_queue_messages' states) and the age of its oldest waiting execution. */
export interface Backlog {
  /** ENQUEUED: waiting for a worker. */
  queued: number
  /** DOING: claimed by a worker. */
  inFlight: number
  /** SCHEDULED: a retry, a target's back-off, or a planned run. */
  delayed: number
  /** Dead executions still kept (DONE after their last attempt; the cleaner drops old ones). */
  dead: number
  /** Seconds since the oldest execution that is due and not done was created (0: none). */
  oldestAgeSeconds: number
}

/** Open a store from a URL: `redis://host:port/db`, `rediss://…`, `sqlite:<path>`. */
export interface OpenStoreOptions {
  /** Redis: key prefix (default "hooks"). Tests use a fresh prefix. */
  prefix?: string
  /** SQLite: table prefix (default "hooks_"). */
  tablePrefix?: string
}

/** What the API shows when an execution is stopped by an operator. */
export const STOPPED_ERROR = 'stopped by operator'

export type IntakeOutcome =
  | {outcome: 'accepted'; execution: Execution}
  | {outcome: 'unknown'}
  | {outcome: 'wrong-method'; allowed: string}
  | {outcome: 'stopped'}
  | {outcome: 'late'}

/** The intake checks, for stores that read the task first. */
export function intakeCheck(task: Task | undefined, method: string): IntakeOutcome | undefined {
  if (task?.type !== 'webhook') return {outcome: 'unknown'}
  if (task.config.method !== method) return {outcome: 'wrong-method', allowed: task.config.method}
  if (task.stopped) return {outcome: 'stopped'}
  return undefined
}

export {TaskExistsError} from '../errors.js'
