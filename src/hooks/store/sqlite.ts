import {randomUUID} from 'node:crypto'
import {mkdirSync} from 'node:fs'
import {dirname} from 'node:path'

import type BetterSqlite3 from 'better-sqlite3'

import {CisternError, UsageError, errorMessage} from '../../core/errors.js'
import {defaultDbPath} from '../../core/paths.js'
import {GroupCommit} from '../../core/queue/batching.js'
import {StoreDataError, TaskExistsError} from '../errors.js'
import type {Execution, Task} from '../model.js'
import {parseExecution, parseTask, serialiseExecution} from './records.js'
import {type ExecutionInsert, type ExecutionRow, type Statements, createTables, prepareStatements} from './sqlite-tables.js'
import {type Backlog, type HooksStore, type IntakeOutcome, type OpenStoreOptions, STOPPED_ERROR, intakeCheck} from './types.js'

/** The path of a `sqlite:<path>[?synchronous=full|normal]` store URL (empty path = the embedded db file). */
export function sqlitePath(url: string): string {
  const rest = url.replace(/^sqlite:(\/\/)?/, '').replace(/[?#].*$/, '')
  return rest === '' ? defaultDbPath() : rest
}

/**
 * FULL (default): a 202 is answered once the execution is fsynced. NORMAL (`?synchronous=normal`):
 * still safe against a process crash (WAL), only an OS crash or power cut can lose the last commits;
 * for disks where fsync is slow.
 */
function synchronousOf(url: string): 'FULL' | 'NORMAL' {
  const match = /[?&]synchronous=([a-z]+)/i.exec(url)
  const value = match?.[1]
  if (value === undefined) return 'FULL'
  const upper = value.toUpperCase()
  if (upper !== 'FULL' && upper !== 'NORMAL') throw new UsageError(`bad synchronous=${value} in the store URL`, 'use ?synchronous=full or ?synchronous=normal')
  return upper
}

interface PendingInsert {
  execution: Execution
  ifAbsent: boolean
}

/**
 * Open the SQLite store. WAL + synchronous FULL: a 202 is only answered once the execution is on
 * disk. Claims are single UPDATE … RETURNING statements, so several processes may share the file.
 */
export async function openSqliteStore(url: string, options: OpenStoreOptions = {}): Promise<HooksStore> {
  const path = sqlitePath(url)
  const {default: Database} = await import('better-sqlite3')
  if (path !== ':memory:') mkdirSync(dirname(path), {recursive: true})
  let db: BetterSqlite3.Database
  try {
    db = new Database(path, {timeout: 5000})
  } catch (error) {
    throw new UsageError(`cannot open the hooks store ${path}: ${errorMessage(error)}`, 'check the --store path and its permissions', error)
  }
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${synchronousOf(url)}`)
  const prefix = options.tablePrefix ?? 'hooks_'
  createTables(db, prefix)
  return new SqliteStore(db, prepareStatements(db, prefix), `sqlite:${path}`)
}

/**
 * Tasks and executions in SQLite tables. Inserts that arrive together (webhooks) are committed in
 * one transaction by the core's group commit (src/core/queue/batching.ts's GroupCommit, used here
 * for a table that is not a queue): one fsync for all of them.
 */
export class SqliteStore implements HooksStore {
  readonly kind = 'sqlite'
  private readonly inserts: GroupCommit<PendingInsert, Execution | undefined>
  // Queue order: enqueue time in µs, strictly increasing in this process (several processes sharing
  // the file interleave by time, which is the order they enqueued in).
  private lastSeq = 0
  /** Intake reads the task on every webhook: parse its JSON only when it changed. */
  private readonly taskCache = new Map<string, Task>()
  /**
   * Tasks intake has read, by uuid, valid while nothing else changed the file (PRAGMA data_version:
   * another process committed) and this store did not write a task: then a webhook costs no read.
   */
  private intakeTasks = new Map<string, Task | undefined>()
  private intakeVersion = -1
  private closed = false

  constructor(
    private readonly db: BetterSqlite3.Database,
    private readonly st: Statements,
    readonly location: string,
  ) {
    const insertBatch = db.transaction((batch: PendingInsert[]) => batch.map((item) => this.insertOne(item)))
    this.inserts = new GroupCommit(async (batch) => insertBatch.immediate(batch), {maxBatch: 512})
  }

  // --- tasks ---------------------------------------------------------------------------------

  async createTask(task: Task): Promise<void> {
    this.tasksChanged()
    try {
      this.st.insertTask.run(task.uuid, JSON.stringify(task))
    } catch (error) {
      if ((error as {code?: unknown}).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new TaskExistsError(task.uuid)
      throw error
    }
  }

  async getTask(uuid: string): Promise<Task | undefined> {
    const row = this.st.getTask.get(uuid)
    return row ? this.parsedTask(row.json, uuid) : undefined
  }

  async listTasks(): Promise<Task[]> {
    return this.st.listTasks.all().map((row) => this.parsedTask(row.json, row.uuid))
  }

  async updateTask(task: Task): Promise<boolean> {
    this.tasksChanged()
    return this.st.updateTask.run(JSON.stringify(task), task.uuid).changes === 1
  }

  async deleteTask(uuid: string): Promise<boolean> {
    this.tasksChanged()
    return this.db.transaction(() => {
      this.st.deleteTaskExecutions.run(uuid)
      return this.st.deleteTask.run(uuid).changes === 1
    }).immediate()
  }

  // --- executions ----------------------------------------------------------------------------

  insertExecution(execution: Execution, options: {ifAbsent?: boolean} = {}): Promise<Execution | undefined> {
    if (this.closed) return Promise.reject(new UsageError('the hooks store is closed'))
    return this.inserts.submit({execution, ifAbsent: options.ifAbsent ?? false})
  }

  async intake(execution: Execution): Promise<IntakeOutcome> {
    const refused = intakeCheck(this.intakeTask(execution.task_uuid), execution.request?.method ?? '')
    if (refused) return refused
    const stored = await this.insertExecution(execution)
    if (!stored) throw new CisternError(`the execution of task ${execution.task_uuid} was not stored`)
    return {outcome: 'accepted', execution: stored}
  }

  async getExecution(taskUuid: string, timestamp: number): Promise<Execution | undefined> {
    const row = this.st.getExecution.get(taskUuid, timestamp)
    return row ? toExecution(row) : undefined
  }

  async listExecutions(taskUuid: string, options: {limit?: number} = {}): Promise<Execution[]> {
    return this.st.listExecutions.all(taskUuid, options.limit ?? -1).map(toExecution)
  }

  async countExecutions(taskUuid: string): Promise<{total: number; todo: number}> {
    const row = this.st.count.get(taskUuid)
    return {total: row?.total ?? 0, todo: row?.todo ?? 0}
  }

  async plannedExecutions(taskUuid: string): Promise<Execution[]> {
    return this.st.planned.all(taskUuid).map(toExecution)
  }

  async stopExecution(taskUuid: string, ts: number, nowMs: number): Promise<'stopped' | 'stopping' | 'already-done' | 'unknown'> {
    return this.db.transaction(() => {
      const row = this.st.getExecution.get(taskUuid, ts)
      if (!row) return 'unknown' as const
      if (row.status === 'DONE') return 'already-done' as const
      if (row.status === 'DOING') {
        this.st.requestStop.run(taskUuid, ts)
        return 'stopping' as const
      }
      const done: Execution = {...toExecution(row), status: 'DONE', stopped: true, last_error: STOPPED_ERROR, done_at: nowMs, due_at: undefined}
      this.st.stopNow.run(serialiseExecution(done), taskUuid, ts)
      return 'stopped' as const
    }).immediate()
  }

  async stopRequested(execution: Execution): Promise<boolean> {
    return this.st.stopRequested.get(execution.task_uuid, execution.timestamp)?.stop_requested === 1
  }

  async clean(taskUuid: string, keep: number): Promise<number> {
    return this.st.clean.run(taskUuid, taskUuid, keep).changes
  }

  // --- the work queue ------------------------------------------------------------------------

  async enqueueDue(nowMs: number, limit = 500): Promise<Execution[]> {
    return this.db.transaction(() => {
      const moved: Execution[] = []
      for (const row of this.st.due.all(nowMs, limit)) {
        if (this.st.toQueue.run(this.nextSeq(), row.task_uuid, row.ts).changes === 1) moved.push({...toExecution(row), status: 'ENQUEUED', due_at: undefined})
      }
      return moved
    }).immediate()
  }

  async claim(nowMs: number, leaseMs: number, owner?: string): Promise<Execution | undefined> {
    const row = this.st.claim.get({lease: nowMs + leaseMs, claim: randomUUID(), now: nowMs, owner: owner ?? null})
    if (!row) return undefined
    try {
      return toExecution(row)
    } catch (error) {
      // Out of the work queue, so it does not come back at every lease; the error names it.
      if (error instanceof StoreDataError) this.st.quarantine.run(row.task_uuid, row.ts)
      throw error
    }
  }

  async heartbeat(execution: Execution, nowMs: number, leaseMs: number): Promise<boolean> {
    return this.st.heartbeat.run(nowMs + leaseMs, execution.task_uuid, execution.timestamp, execution.claim ?? '').changes === 1
  }

  async finish(execution: Execution): Promise<boolean> {
    const done: Execution = {...execution, status: 'DONE', due_at: undefined}
    return this.st.finish.run(serialiseExecution(done), execution.task_uuid, execution.timestamp, execution.claim ?? '').changes === 1
  }

  async reschedule(execution: Execution): Promise<boolean> {
    const again: Execution = {...execution, status: 'SCHEDULED'}
    return this.st.reschedule.run(serialiseExecution(again), execution.due_at ?? 0, execution.task_uuid, execution.timestamp, execution.claim ?? '').changes === 1
  }

  async recoverExpired(nowMs: number): Promise<number> {
    return this.db.transaction(() => {
      const rows = this.st.expired.all(nowMs)
      if (rows.length === 0) return 0
      // Back to the front of the queue, in their original order.
      let seq = Math.min(this.st.minSeq.get()?.m ?? 0, 0) - rows.length
      let n = 0
      for (const row of rows) n += this.st.recover.run(seq++, row.task_uuid, row.ts, nowMs).changes
      return n
    }).immediate()
  }

  async queueLength(): Promise<number> {
    return this.st.queueLength.get()?.n ?? 0
  }

  async backlog(nowMs: number): Promise<Backlog> {
    const states = new Map(this.st.states.all().map((row) => [row.status, row.n]))
    const oldest = this.st.oldest.get(nowMs)?.ts
    return {
      queued: states.get('ENQUEUED') ?? 0,
      inFlight: states.get('DOING') ?? 0,
      delayed: states.get('SCHEDULED') ?? 0,
      dead: this.st.dead.get()?.n ?? 0,
      oldestAgeSeconds: oldest == null ? 0 : Math.max(0, (nowMs - oldest / 1000) / 1000),
    }
  }

  // --- shared flags and the connection -------------------------------------------------------

  async getMaintenance(): Promise<boolean> {
    return this.st.getMeta.get('maintenance')?.value === 'true'
  }

  async setMaintenance(enabled: boolean): Promise<void> {
    this.st.setMeta.run('maintenance', String(enabled))
  }

  async ping(): Promise<void> {
    this.st.ping.get()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.inserts.close()
    this.db.close()
  }

  // --- steps ---------------------------------------------------------------------------------

  /** One insert of a group commit; a clashing timestamp is bumped (bounded), unless the first one must win (planned runs). */
  private insertOne(item: PendingInsert): Execution | undefined {
    const execution = {...item.execution, id: item.execution.id ?? randomUUID()}
    const dueAt = execution.status === 'SCHEDULED' ? (execution.due_at ?? 0) : null
    const planned = execution.status === 'SCHEDULED' && execution.scheduled_date && execution.nb_errors === 0 ? 1 : 0
    const queueSeq = execution.status === 'ENQUEUED' ? this.nextSeq() : null
    for (let attempt = 0; attempt < 1000; attempt++) {
      const values: ExecutionInsert = [execution.task_uuid, execution.timestamp, execution.status, dueAt, planned, queueSeq, serialiseExecution(execution)]
      if (this.st.insertExecution.run(...values).changes === 1) return execution
      if (item.ifAbsent) return undefined
      execution.timestamp += 1
    }
    throw new CisternError(`no free execution timestamp for task ${execution.task_uuid}`)
  }

  private intakeTask(uuid: string): Task | undefined {
    const version = this.st.dataVersion.get() ?? -1
    if (version !== this.intakeVersion) {
      this.intakeTasks = new Map()
      this.intakeVersion = version
    }
    if (this.intakeTasks.has(uuid)) return this.intakeTasks.get(uuid)
    const row = this.st.getTask.get(uuid)
    const task = row ? this.parsedTask(row.json, uuid) : undefined
    if (this.intakeTasks.size > 10_000) this.intakeTasks.clear()
    this.intakeTasks.set(uuid, task)
    return task
  }

  /** A task written here: intake reads tasks again (data_version only tells other connections' commits). */
  private tasksChanged(): void {
    this.intakeTasks = new Map()
  }

  private nextSeq(): number {
    this.lastSeq = Math.max(Date.now() * 1000, this.lastSeq + 1)
    return this.lastSeq
  }

  private parsedTask(json: string, uuid: string): Task {
    let task = this.taskCache.get(json)
    if (!task) {
      if (this.taskCache.size > 1000) this.taskCache.clear()
      task = parseTask(json, `task ${uuid}`)
      this.taskCache.set(json, task)
    }
    return task
  }
}

/** An execution from its row: the JSON, with the state the columns hold. */
function toExecution(row: ExecutionRow): Execution {
  const execution = parseExecution(row.json, `execution ${row.task_uuid}/${row.ts}`)
  execution.status = row.status
  if (row.due_at !== null) execution.due_at = row.due_at
  else delete execution.due_at
  if (row.processing_ts !== null && row.status === 'DOING') execution.processing_timestamp = row.processing_ts
  if (row.claim_id) execution.claim = row.claim_id
  return execution
}
