/**
 * The SQLite store's tables and statements. Tables are prefixed (`hooks_` by default) so they can
 * live in the embedded db file the other pieces share.
 */
import type BetterSqlite3 from 'better-sqlite3'

import {UsageError} from '../../core/errors.js'
import type {ExecutionStatus} from '../model.js'

/** A row of the executions table: the columns the queries need, and the execution as JSON. */
export interface ExecutionRow {
  task_uuid: string
  ts: number
  status: ExecutionStatus
  due_at: number | null
  lease_until: number | null
  claim_id: string | null
  processing_ts: number | null
  stop_requested: number
  json: string
}

/** The values an insert binds, in order: task_uuid, ts, status, due_at, planned, queue_seq, json (positional: cheaper to bind than names). */
export type ExecutionInsert = [taskUuid: string, ts: number, status: ExecutionStatus, dueAt: number | null, planned: 0 | 1, queueSeq: number | null, json: string]

export function createTables(db: BetterSqlite3.Database, p: string): void {
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
}

/** Every statement the store runs, prepared once. */
export function prepareStatements(db: BetterSqlite3.Database, p: string) {
  return {
    insertTask: db.prepare<[string, string]>(`INSERT INTO ${p}tasks (uuid, json) VALUES (?, ?)`),
    getTask: db.prepare<[string], {json: string}>(`SELECT json FROM ${p}tasks WHERE uuid = ?`),
    /** Changes when another connection (another process sharing the file) commits. */
    dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    listTasks: db.prepare<[], {uuid: string; json: string}>(`SELECT uuid, json FROM ${p}tasks ORDER BY seq`),
    updateTask: db.prepare<[string, string]>(`UPDATE ${p}tasks SET json = ? WHERE uuid = ?`),
    deleteTask: db.prepare<[string]>(`DELETE FROM ${p}tasks WHERE uuid = ?`),
    deleteTaskExecutions: db.prepare<[string]>(`DELETE FROM ${p}executions WHERE task_uuid = ?`),
    minSeq: db.prepare<[], {m: number | null}>(`SELECT MIN(queue_seq) AS m FROM ${p}executions WHERE status = 'ENQUEUED'`),
    insertExecution: db.prepare<ExecutionInsert>(
      `INSERT INTO ${p}executions (task_uuid, ts, status, due_at, planned, queue_seq, json) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (task_uuid, ts) DO NOTHING`,
    ),
    getExecution: db.prepare<[string, number], ExecutionRow>(`SELECT * FROM ${p}executions WHERE task_uuid = ? AND ts = ?`),
    listExecutions: db.prepare<[string, number], ExecutionRow>(`SELECT * FROM ${p}executions WHERE task_uuid = ? ORDER BY ts DESC LIMIT ?`),
    count: db.prepare<[string], {total: number; todo: number}>(
      `SELECT COUNT(*) AS total, COALESCE(SUM(status != 'DONE'), 0) AS todo FROM ${p}executions WHERE task_uuid = ?`,
    ),
    planned: db.prepare<[string], ExecutionRow>(`SELECT * FROM ${p}executions WHERE task_uuid = ? AND status = 'SCHEDULED' AND planned = 1 ORDER BY due_at`),
    due: db.prepare<[number, number], ExecutionRow>(`SELECT * FROM ${p}executions WHERE status = 'SCHEDULED' AND due_at <= ? ORDER BY due_at, ts LIMIT ?`),
    toQueue: db.prepare<[number, string, number]>(
      `UPDATE ${p}executions SET status = 'ENQUEUED', queue_seq = ?, due_at = NULL WHERE task_uuid = ? AND ts = ? AND status = 'SCHEDULED'`,
    ),
    claim: db.prepare<[{lease: number; claim: string; now: number; owner: string | null}], ExecutionRow>(
      `UPDATE ${p}executions SET status = 'DOING', lease_until = @lease, claim_id = @claim, processing_ts = @now, json = CASE
         WHEN @owner IS NULL THEN json
         WHEN json_extract(json, '$.owner') IS NULL THEN json_set(json, '$.owner', @owner)
         ELSE json_set(json, '$.owner', @owner, '$.previous_owner', json_extract(json, '$.owner')) END
       WHERE rowid = (SELECT rowid FROM ${p}executions WHERE status = 'ENQUEUED' ORDER BY queue_seq LIMIT 1) RETURNING *`,
    ),
    quarantine: db.prepare<[string, number]>(
      `UPDATE ${p}executions SET status = 'DONE', due_at = NULL, lease_until = NULL, claim_id = NULL, queue_seq = NULL WHERE task_uuid = ? AND ts = ?`,
    ),
    heartbeat: db.prepare<[number, string, number, string]>(
      `UPDATE ${p}executions SET lease_until = ? WHERE task_uuid = ? AND ts = ? AND claim_id = ? AND status = 'DOING'`,
    ),
    finish: db.prepare<[string, string, number, string]>(
      `UPDATE ${p}executions SET status = 'DONE', json = ?, due_at = NULL, lease_until = NULL, claim_id = NULL, queue_seq = NULL
       WHERE task_uuid = ? AND ts = ? AND claim_id = ? AND status = 'DOING'`,
    ),
    reschedule: db.prepare<[string, number, string, number, string]>(
      `UPDATE ${p}executions SET status = 'SCHEDULED', json = ?, due_at = ?, planned = 0, lease_until = NULL, claim_id = NULL, queue_seq = NULL
       WHERE task_uuid = ? AND ts = ? AND claim_id = ? AND status = 'DOING'`,
    ),
    expired: db.prepare<[number], ExecutionRow>(`SELECT * FROM ${p}executions WHERE status = 'DOING' AND lease_until < ? ORDER BY queue_seq LIMIT 100`),
    recover: db.prepare<[number, string, number, number]>(
      `UPDATE ${p}executions SET status = 'ENQUEUED', queue_seq = ?, lease_until = NULL, claim_id = NULL WHERE task_uuid = ? AND ts = ? AND status = 'DOING' AND lease_until < ?`,
    ),
    stopNow: db.prepare<[string, string, number]>(`UPDATE ${p}executions SET status = 'DONE', json = ?, due_at = NULL, queue_seq = NULL WHERE task_uuid = ? AND ts = ?`),
    requestStop: db.prepare<[string, number]>(`UPDATE ${p}executions SET stop_requested = 1 WHERE task_uuid = ? AND ts = ?`),
    stopRequested: db.prepare<[string, number], {stop_requested: number}>(`SELECT stop_requested FROM ${p}executions WHERE task_uuid = ? AND ts = ?`),
    clean: db.prepare<[string, string, number]>(
      `DELETE FROM ${p}executions WHERE task_uuid = ? AND status = 'DONE' AND ts NOT IN
       (SELECT ts FROM ${p}executions WHERE task_uuid = ? AND status = 'DONE' ORDER BY ts DESC LIMIT ?)`,
    ),
    queueLength: db.prepare<[], {n: number}>(`SELECT COUNT(*) AS n FROM ${p}executions WHERE status = 'ENQUEUED'`),
    states: db.prepare<[], {status: ExecutionStatus; n: number}>(`SELECT status, COUNT(*) AS n FROM ${p}executions WHERE status != 'DONE' GROUP BY status`),
    dead: db.prepare<[], {n: number}>(`SELECT COUNT(*) AS n FROM ${p}executions WHERE status = 'DONE' AND json_extract(json, '$.dead') = 1`),
    oldest: db.prepare<[number], {ts: number | null}>(
      `SELECT MIN(ts) AS ts FROM ${p}executions WHERE status IN ('ENQUEUED', 'DOING') OR (status = 'SCHEDULED' AND (planned = 0 OR due_at <= ?))`,
    ),
    getMeta: db.prepare<[string], {value: string}>(`SELECT value FROM ${p}meta WHERE key = ?`),
    setMeta: db.prepare<[string, string]>(`INSERT INTO ${p}meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`),
    ping: db.prepare('SELECT 1'),
  }
}

export type Statements = ReturnType<typeof prepareStatements>
