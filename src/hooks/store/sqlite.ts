import {randomUUID} from 'node:crypto'
import {mkdirSync} from 'node:fs'
import {dirname} from 'node:path'

import type BetterSqlite3 from 'better-sqlite3'

import {UsageError} from '../../core/errors.js'
import {defaultDbPath} from '../../core/paths.js'
import type {Execution, Task} from '../model.js'
import {type HooksStore, type OpenStoreOptions, STOPPED_ERROR, TaskExistsError, intakeCheck} from './types.js'

interface ExecutionRow {
  task_uuid: string
  ts: number
  status: Execution['status']
  due_at: number | null
  lease_until: number | null
  claim_id: string | null
  processing_ts: number | null
  stop_requested: number
  json: string
}

interface PendingInsert {
  execution: Execution
  ifAbsent: boolean
  resolve: (value: Execution | undefined) => void
  reject: (error: unknown) => void
}

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
  if (!match) return 'FULL'
  const value = match[1].toUpperCase()
  if (value !== 'FULL' && value !== 'NORMAL') throw new UsageError(`bad synchronous=${match[1]} in the store URL`, 'use ?synchronous=full or ?synchronous=normal')
  return value
}

/**
 * Tasks and executions in SQLite tables (prefixed `hooks_`), by default in the embedded db file the
 * other pieces share. WAL + synchronous FULL: a 202 is only answered once the execution is on disk;
 * inserts arriving together are committed in one transaction (group commit) to keep intake fast.
 * Claims are single UPDATE … RETURNING statements, so several processes may share the file.
 */
export async function openSqliteStore(url: string, options: OpenStoreOptions = {}): Promise<HooksStore> {
  const path = sqlitePath(url)
  const {default: Database} = await import('better-sqlite3')
  if (path !== ':memory:') mkdirSync(dirname(path), {recursive: true})
  let db: BetterSqlite3.Database
  try {
    db = new Database(path, {timeout: 5000})
  } catch (error) {
    throw new UsageError(`cannot open the hooks store ${path}: ${(error as Error).message}`, 'check the --store path and its permissions', error)
  }
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${synchronousOf(url)}`)
  const p = options.tablePrefix ?? 'hooks_'
  if (!/^[a-z_][a-z0-9_]*$/i.test(p)) throw new UsageError(`bad table prefix "${p}"`)
  db.exec(`
    CREATE TABLE IF NOT EXISTS ${p}tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL UNIQUE, json TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS ${p}executions (
      task_uuid TEXT NOT NULL, ts INTEGER NOT NULL, status TEXT NOT NULL,
      due_at INTEGER, planned INTEGER NOT NULL DEFAULT 0, queue_seq INTEGER, lease_until INTEGER, claim_id TEXT,
      processing_ts INTEGER, stop_requested INTEGER NOT NULL DEFAULT 0, json TEXT NOT NULL,
      PRIMARY KEY (task_uuid, ts));
    -- Partial indexes: a row is only in the index of its current state, so the finished
    -- executions (most rows) cost nothing to index and an intake updates one index.
    DROP INDEX IF EXISTS ${p}executions_queue;
    DROP INDEX IF EXISTS ${p}executions_due;
    DROP INDEX IF EXISTS ${p}executions_lease;
    CREATE INDEX IF NOT EXISTS ${p}executions_queued ON ${p}executions (queue_seq) WHERE status = 'ENQUEUED';
    CREATE INDEX IF NOT EXISTS ${p}executions_scheduled ON ${p}executions (due_at) WHERE status = 'SCHEDULED';
    CREATE INDEX IF NOT EXISTS ${p}executions_leased ON ${p}executions (lease_until) WHERE status = 'DOING';
    CREATE TABLE IF NOT EXISTS ${p}meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT OR IGNORE INTO ${p}meta (key, value) VALUES ('maintenance', 'false');
  `)

  const st = {
    insertTask: db.prepare(`INSERT INTO ${p}tasks (uuid, json) VALUES (?, ?)`),
    getTask: db.prepare<[string], {json: string}>(`SELECT json FROM ${p}tasks WHERE uuid = ?`),
    listTasks: db.prepare<[], {json: string}>(`SELECT json FROM ${p}tasks ORDER BY seq`),
    updateTask: db.prepare(`UPDATE ${p}tasks SET json = ? WHERE uuid = ?`),
    deleteTask: db.prepare(`DELETE FROM ${p}tasks WHERE uuid = ?`),
    deleteTaskExecutions: db.prepare(`DELETE FROM ${p}executions WHERE task_uuid = ?`),
    minSeq: db.prepare<[], {m: number | null}>(`SELECT MIN(queue_seq) AS m FROM ${p}executions WHERE status = 'ENQUEUED'`),
    insertExecution: db.prepare(
      `INSERT INTO ${p}executions (task_uuid, ts, status, due_at, planned, queue_seq, json) VALUES (@task_uuid, @ts, @status, @due_at, @planned, @queue_seq, @json)
       ON CONFLICT (task_uuid, ts) DO NOTHING`,
    ),
    getExecution: db.prepare<[string, number], ExecutionRow>(`SELECT * FROM ${p}executions WHERE task_uuid = ? AND ts = ?`),
    listExecutions: db.prepare<[string, number], ExecutionRow>(`SELECT * FROM ${p}executions WHERE task_uuid = ? ORDER BY ts DESC LIMIT ?`),
    count: db.prepare<[string], {total: number; todo: number}>(
      `SELECT COUNT(*) AS total, COALESCE(SUM(status != 'DONE'), 0) AS todo FROM ${p}executions WHERE task_uuid = ?`,
    ),
    planned: db.prepare<[string], ExecutionRow>(
      `SELECT * FROM ${p}executions WHERE task_uuid = ? AND status = 'SCHEDULED' AND planned = 1 ORDER BY due_at`,
    ),
    due: db.prepare<[number, number], ExecutionRow>(
      `SELECT * FROM ${p}executions WHERE status = 'SCHEDULED' AND due_at <= ? ORDER BY due_at, ts LIMIT ?`,
    ),
    toQueue: db.prepare(
      `UPDATE ${p}executions SET status = 'ENQUEUED', queue_seq = ?, due_at = NULL WHERE task_uuid = ? AND ts = ? AND status = 'SCHEDULED'`,
    ),
    claim: db.prepare<[number, string, number], ExecutionRow>(
      `UPDATE ${p}executions SET status = 'DOING', lease_until = ?, claim_id = ?, processing_ts = ?
       WHERE rowid = (SELECT rowid FROM ${p}executions WHERE status = 'ENQUEUED' ORDER BY queue_seq LIMIT 1) RETURNING *`,
    ),
    heartbeat: db.prepare(`UPDATE ${p}executions SET lease_until = ? WHERE task_uuid = ? AND ts = ? AND claim_id = ? AND status = 'DOING'`),
    finish: db.prepare(
      `UPDATE ${p}executions SET status = 'DONE', json = ?, due_at = NULL, lease_until = NULL, claim_id = NULL, queue_seq = NULL
       WHERE task_uuid = ? AND ts = ? AND claim_id = ? AND status = 'DOING'`,
    ),
    reschedule: db.prepare(
      `UPDATE ${p}executions SET status = 'SCHEDULED', json = ?, due_at = ?, planned = 0, lease_until = NULL, claim_id = NULL, queue_seq = NULL
       WHERE task_uuid = ? AND ts = ? AND claim_id = ? AND status = 'DOING'`,
    ),
    expired: db.prepare<[number], ExecutionRow>(`SELECT * FROM ${p}executions WHERE status = 'DOING' AND lease_until < ? ORDER BY queue_seq LIMIT 100`),
    recover: db.prepare(
      `UPDATE ${p}executions SET status = 'ENQUEUED', queue_seq = ?, lease_until = NULL, claim_id = NULL WHERE task_uuid = ? AND ts = ? AND status = 'DOING' AND lease_until < ?`,
    ),
    stopNow: db.prepare(`UPDATE ${p}executions SET status = 'DONE', json = ?, due_at = NULL, queue_seq = NULL WHERE task_uuid = ? AND ts = ?`),
    requestStop: db.prepare(`UPDATE ${p}executions SET stop_requested = 1 WHERE task_uuid = ? AND ts = ?`),
    stopRequested: db.prepare<[string, number], {stop_requested: number}>(`SELECT stop_requested FROM ${p}executions WHERE task_uuid = ? AND ts = ?`),
    clean: db.prepare(
      `DELETE FROM ${p}executions WHERE task_uuid = ? AND status = 'DONE' AND ts NOT IN
       (SELECT ts FROM ${p}executions WHERE task_uuid = ? AND status = 'DONE' ORDER BY ts DESC LIMIT ?)`,
    ),
    queueLength: db.prepare<[], {n: number}>(`SELECT COUNT(*) AS n FROM ${p}executions WHERE status = 'ENQUEUED'`),
    getMeta: db.prepare<[string], {value: string}>(`SELECT value FROM ${p}meta WHERE key = ?`),
    setMeta: db.prepare(`INSERT INTO ${p}meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`),
  }

  // Queue order: enqueue time in µs, strictly increasing in this process (several processes sharing
  // the file interleave by time, which is the order they enqueued in).
  let lastSeq = 0
  const nextSeq = () => (lastSeq = Math.max(Date.now() * 1000, lastSeq + 1))

  function toExecution(row: ExecutionRow): Execution {
    const execution = JSON.parse(row.json) as Execution
    execution.status = row.status
    if (row.due_at !== null) execution.due_at = row.due_at
    else delete execution.due_at
    if (row.processing_ts !== null && row.status === 'DOING') execution.processing_timestamp = row.processing_ts
    if (row.claim_id) execution.claim = row.claim_id
    return execution
  }

  const stored = (execution: Execution) => {
    const {claim: _claim, ...rest} = execution
    return JSON.stringify(rest)
  }

  // Group commit: inserts that arrive in the same tick share one transaction (one fsync).
  let pending: PendingInsert[] = []
  const insertBatch = db.transaction((batch: PendingInsert[]) => {
    const out: Array<Execution | undefined> = []
    for (const item of batch) {
      const execution = {...item.execution, id: item.execution.id ?? randomUUID()}
      const row = {
        task_uuid: execution.task_uuid,
        status: execution.status,
        due_at: execution.status === 'SCHEDULED' ? (execution.due_at ?? 0) : null,
        planned: execution.status === 'SCHEDULED' && execution.scheduled_date && execution.nb_errors === 0 ? 1 : 0,
        queue_seq: execution.status === 'ENQUEUED' ? nextSeq() : null,
      }
      let inserted = false
      // A clashing timestamp is bumped (bounded), unless the first one must win (planned runs).
      for (let attempt = 0; attempt < 1000 && !inserted; attempt++) {
        inserted = st.insertExecution.run({...row, ts: execution.timestamp, json: stored(execution)}).changes === 1
        if (!inserted && item.ifAbsent) break
        if (!inserted) execution.timestamp += 1
      }
      out.push(inserted ? execution : undefined)
    }
    return out
  })
  // With fsync per commit (FULL), wait a moment while requests are arriving together so one
  // commit covers more of them; a lone request is committed at once.
  const synchronous = synchronousOf(url)
  let lastBatch = 0
  function flush() {
    const batch = pending
    pending = []
    lastBatch = batch.length
    try {
      const results = insertBatch.immediate(batch)
      batch.forEach((item, i) => item.resolve(results[i]))
    } catch (error) {
      for (const item of batch) item.reject(error)
    }
  }

  const enqueueDue = db.transaction((nowMs: number, limit: number) => {
    const rows = st.due.all(nowMs, limit)
    const moved: Execution[] = []
    for (const row of rows) {
      if (st.toQueue.run(nextSeq(), row.task_uuid, row.ts).changes === 1) {
        moved.push({...toExecution(row), status: 'ENQUEUED', due_at: undefined})
      }
    }
    return moved
  })

  const recoverExpired = db.transaction((nowMs: number) => {
    const rows = st.expired.all(nowMs)
    if (rows.length === 0) return 0
    // Back to the front of the queue, in their original order.
    let seq = Math.min(st.minSeq.get()?.m ?? 0, 0) - rows.length
    let n = 0
    for (const row of rows) n += st.recover.run(seq++, row.task_uuid, row.ts, nowMs).changes
    return n
  })

  const stopExecution = db.transaction((taskUuid: string, ts: number, nowMs: number) => {
    const row = st.getExecution.get(taskUuid, ts)
    if (!row) return 'unknown' as const
    if (row.status === 'DONE') return 'already-done' as const
    if (row.status === 'DOING') {
      st.requestStop.run(taskUuid, ts)
      return 'stopping' as const
    }
    const execution = toExecution(row)
    const done: Execution = {...execution, status: 'DONE', stopped: true, last_error: STOPPED_ERROR, done_at: nowMs, due_at: undefined}
    st.stopNow.run(stored(done), taskUuid, ts)
    return 'stopped' as const
  })

  const deleteTask = db.transaction((uuid: string) => {
    st.deleteTaskExecutions.run(uuid)
    return st.deleteTask.run(uuid).changes === 1
  })

  // Intake reads the task on every webhook: parse its JSON only when it changed.
  const taskCache = new Map<string, Task>()
  function parsedTask(json: string): Task {
    let task = taskCache.get(json)
    if (!task) {
      if (taskCache.size > 1000) taskCache.clear()
      task = JSON.parse(json) as Task
      taskCache.set(json, task)
    }
    return task
  }

  let closed = false
  const insertExecution: HooksStore['insertExecution'] = (execution, opts = {}) => {
    return new Promise((resolve, reject) => {
      if (closed) return reject(new Error('hooks store is closed'))
      pending.push({execution, ifAbsent: opts.ifAbsent ?? false, resolve, reject})
      if (pending.length === 1) {
        if (synchronous === 'FULL' && lastBatch > 1) setTimeout(flush, 2)
        else setImmediate(flush)
      }
    })
  }

  return {
    kind: 'sqlite',
    location: `sqlite:${path}`,

    async createTask(task) {
      try {
        st.insertTask.run(task.uuid, JSON.stringify(task))
      } catch (error) {
        if ((error as {code?: string}).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new TaskExistsError(task.uuid)
        throw error
      }
    },
    async getTask(uuid) {
      const row = st.getTask.get(uuid)
      return row ? (JSON.parse(row.json) as Task) : undefined
    },
    async listTasks() {
      return st.listTasks.all().map((row) => JSON.parse(row.json) as Task)
    },
    async updateTask(task) {
      return st.updateTask.run(JSON.stringify(task), task.uuid).changes === 1
    },
    async deleteTask(uuid) {
      return deleteTask.immediate(uuid)
    },

    insertExecution,
    async intake(execution) {
      const row = st.getTask.get(execution.task_uuid)
      const refused = intakeCheck(row ? parsedTask(row.json) : undefined, execution.request?.method ?? '')
      if (refused) return refused
      return {outcome: 'accepted', execution: (await insertExecution(execution))!}
    },
    async getExecution(taskUuid, timestamp) {
      const row = st.getExecution.get(taskUuid, timestamp)
      return row ? toExecution(row) : undefined
    },
    async listExecutions(taskUuid, opts = {}) {
      return st.listExecutions.all(taskUuid, opts.limit ?? -1).map(toExecution)
    },
    async countExecutions(taskUuid) {
      const row = st.count.get(taskUuid)!
      return {total: row.total, todo: row.todo}
    },
    async plannedExecutions(taskUuid) {
      return st.planned.all(taskUuid).map(toExecution)
    },

    async enqueueDue(nowMs, limit = 500) {
      return enqueueDue.immediate(nowMs, limit)
    },
    async claim(nowMs, leaseMs) {
      const row = st.claim.get(nowMs + leaseMs, randomUUID(), nowMs)
      return row ? toExecution(row) : undefined
    },
    async heartbeat(execution, nowMs, leaseMs) {
      return st.heartbeat.run(nowMs + leaseMs, execution.task_uuid, execution.timestamp, execution.claim ?? '').changes === 1
    },
    async finish(execution) {
      const done = {...execution, status: 'DONE' as const, due_at: undefined}
      return st.finish.run(stored(done), execution.task_uuid, execution.timestamp, execution.claim ?? '').changes === 1
    },
    async reschedule(execution) {
      const again = {...execution, status: 'SCHEDULED' as const}
      return st.reschedule.run(stored(again), execution.due_at ?? 0, execution.task_uuid, execution.timestamp, execution.claim ?? '').changes === 1
    },
    async recoverExpired(nowMs) {
      return recoverExpired.immediate(nowMs)
    },
    async stopExecution(taskUuid, timestamp, nowMs) {
      return stopExecution.immediate(taskUuid, timestamp, nowMs)
    },
    async stopRequested(execution) {
      return st.stopRequested.get(execution.task_uuid, execution.timestamp)?.stop_requested === 1
    },
    async clean(taskUuid, keep) {
      return st.clean.run(taskUuid, taskUuid, keep).changes
    },

    async queueLength() {
      return st.queueLength.get()!.n
    },
    async getMaintenance() {
      return st.getMeta.get('maintenance')?.value === 'true'
    },
    async setMaintenance(enabled) {
      st.setMeta.run('maintenance', String(enabled))
    },
    async ping() {
      db.prepare('SELECT 1').get()
    },
    async close() {
      if (closed) return
      if (pending.length > 0) flush()
      closed = true
      db.close()
    },
  }
}
