/**
 * The embedded queue's file: how it is opened (pragmas), its tables and how a file written by an
 * older cistern is brought up to date, and how the disk is given back when a queue drains.
 *
 * The file is shared with other pieces' tables (spigot state, hooks, sqs-listen), so the queue's
 * schema version lives in its own `queue_meta` table, not in PRAGMA user_version.
 *
 *   1  queue_queues + queue_messages (no version recorded)
 *   2  queue_messages.releases: receives handed back unattempted (attempts = receive_count - releases)
 *   3  bodies apart from lease state (queue_bodies), so receive, extend and release never rewrite a
 *      body; indexes over live messages only
 */
import Database from 'better-sqlite3'
import {existsSync, mkdirSync, statSync} from 'node:fs'
import {dirname} from 'node:path'

import {CisternError, UsageError, errorMessage} from '../errors.js'
import type {Logger} from '../log.js'

export const SCHEMA_VERSION = 3
export const BUSY_TIMEOUT_MS = 10_000
/** The WAL is cut back to this after a checkpoint (it keeps its largest size otherwise). */
const JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024

/** durable through power loss (FULL, the default) or through a crash of cistern only (NORMAL). */
export type Synchronous = 'full' | 'normal'

/**
 * The indexes of schema 3, over live messages only (dead ones are found by a scan of one queue).
 * An ungrouped message is in one index (loose); a grouped one in grouped and group (+ group_lease
 * while leased): each write touches only the indexes it needs.
 */
const LIVE_INDEXES = `
CREATE INDEX queue_messages_loose ON queue_messages (queue, visible_at, seq) WHERE dead = 0 AND group_id IS NULL;
CREATE INDEX queue_messages_grouped ON queue_messages (queue, visible_at, seq, group_id) WHERE dead = 0 AND group_id IS NOT NULL;
CREATE INDEX queue_messages_group ON queue_messages (queue, group_id, seq) WHERE dead = 0 AND group_id IS NOT NULL;
CREATE INDEX queue_messages_group_lease ON queue_messages (queue, group_id, visible_at) WHERE dead = 0 AND group_id IS NOT NULL AND receipt IS NOT NULL;
CREATE INDEX queue_messages_dedup ON queue_messages (queue, dedup_id) WHERE dead = 0 AND dedup_id IS NOT NULL;
`

/** The current tables, for a file that has none yet. */
const SCHEMA = `
CREATE TABLE queue_queues (
  name TEXT PRIMARY KEY,
  fifo INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE queue_messages (
  seq INTEGER PRIMARY KEY,
  queue TEXT NOT NULL,
  id TEXT NOT NULL,
  group_id TEXT,
  dedup_id TEXT,
  sent_at INTEGER NOT NULL,
  visible_at INTEGER NOT NULL,
  receipt TEXT,
  receive_count INTEGER NOT NULL DEFAULT 0,
  dead INTEGER NOT NULL DEFAULT 0,
  dead_reason TEXT,
  dead_at INTEGER,
  releases INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE queue_bodies (
  seq INTEGER PRIMARY KEY,
  body TEXT NOT NULL,
  attributes TEXT
);
${LIVE_INDEXES}`

/** Step n brings a file from version n-1 to n; each runs inside the caller's write transaction. */
const MIGRATIONS: Record<number, string> = {
  2: `
ALTER TABLE queue_messages ADD COLUMN releases INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS queue_messages_ungrouped ON queue_messages (queue, visible_at, seq) WHERE group_id IS NULL AND dead = 0;
`,
  3: `
CREATE TABLE queue_bodies (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, attributes TEXT);
INSERT INTO queue_bodies (seq, body, attributes) SELECT seq, body, attributes FROM queue_messages;
DROP INDEX IF EXISTS queue_messages_ready;
DROP INDEX IF EXISTS queue_messages_ungrouped;
DROP INDEX IF EXISTS queue_messages_group;
DROP INDEX IF EXISTS queue_messages_group_lease;
DROP INDEX IF EXISTS queue_messages_dedup;
ALTER TABLE queue_messages DROP COLUMN body;
ALTER TABLE queue_messages DROP COLUMN attributes;
${LIVE_INDEXES}`,
}

function tableExists(db: Database.Database, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined
}

/** The file's queue schema version: 0 none yet, 1 before versions were recorded. */
export function schemaVersion(db: Database.Database): number {
  if (tableExists(db, 'queue_meta')) {
    const value = db.prepare("SELECT value FROM queue_meta WHERE key = 'schema'").pluck().get() as string | undefined
    if (value !== undefined) return Number(value)
  }
  return tableExists(db, 'queue_messages') ? 1 : 0
}

/**
 * Creates or upgrades the queue tables; call inside a write (IMMEDIATE) transaction so that two
 * processes opening an old file migrate it once. A file from a newer cistern is refused.
 */
export function migrate(db: Database.Database, path: string): void {
  const from = schemaVersion(db)
  if (from > SCHEMA_VERSION) {
    throw new UsageError(
      `queue database ${path} was written by a newer cistern (queue schema ${from}, this one knows ${SCHEMA_VERSION})`,
      'upgrade cistern on this machine, or point the queue URL at another file',
    )
  }
  if (from === SCHEMA_VERSION) return
  if (from === 0) db.exec(SCHEMA)
  else {
    for (let version = from + 1; version <= SCHEMA_VERSION; version++) {
      const migration = MIGRATIONS[version]
      if (migration === undefined) throw new CisternError(`queue schema ${version} has no migration in this cistern (a bug)`)
      db.exec(migration)
    }
  }
  db.exec('CREATE TABLE IF NOT EXISTS queue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)')
  db.prepare("INSERT INTO queue_meta (key, value) VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(SCHEMA_VERSION))
}

/**
 * Opens the file: WAL (readers never wait for the writer), synchronous FULL unless asked (a
 * commit waits for its fsync, so an acknowledged message survives a power cut), incremental
 * auto-vacuum (set before the first table; see giveBackSpace), a bounded WAL.
 */
export function openDatabase(path: string, options: {mustExist: boolean; synchronous?: Synchronous}): Database.Database {
  if (options.mustExist && !existsSync(path)) {
    throw new UsageError(`queue database ${path} does not exist`, 'check the path in the queue URL, or send a message first to create it')
  }
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw new UsageError(`queue database ${path} is a directory`, 'point the queue URL at a file: sqlite:<path>/cistern.db#<name>')
  }
  let db: Database.Database | undefined
  try {
    if (!options.mustExist) mkdirSync(dirname(path), {recursive: true})
    db = new Database(path, {fileMustExist: options.mustExist})
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    // Set before the first table; a file that has tables already is converted by convertToIncrementalVacuum.
    if (db.prepare('SELECT count(*) FROM sqlite_master').pluck().get() === 0) db.pragma('auto_vacuum = INCREMENTAL')
    db.pragma('journal_mode = WAL')
    db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`)
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`)
    return db
  } catch (error) {
    db?.close()
    throw new UsageError(`cannot open queue database ${path}: ${errorMessage(error)}`, 'check that the file is a SQLite database this user can read and write', error)
  }
}

/**
 * A file created before incremental auto-vacuum (by an older cistern, or by another piece's
 * tables) is converted once with VACUUM, which also gives back what it held free. VACUUM copies the
 * live pages only: quick on a drained file, seconds on a large backlog. Another process holding the
 * file busy postpones it to the next open.
 */
export function convertToIncrementalVacuum(db: Database.Database, path: string, log: Logger): void {
  if (db.pragma('auto_vacuum', {simple: true}) === 2) return
  const pages = db.pragma('page_count', {simple: true}) as number
  const free = db.pragma('freelist_count', {simple: true}) as number
  log.info('converting the queue database to incremental auto-vacuum (once)', {path, pages, freePages: free})
  try {
    db.pragma('auto_vacuum = INCREMENTAL')
    db.exec('VACUUM')
    shrinkWal(db)
  } catch (error) {
    log.warn('could not convert the queue database to incremental auto-vacuum now; trying again on the next open', {path, error: errorMessage(error)})
  }
}

/** Free pages worth giving back: more than this many bytes, and more than this share of the file. */
const RECLAIM_MIN_BYTES = 1024 * 1024
const RECLAIM_MIN_SHARE = 0.25
/** Pages moved per incremental_vacuum step (each its own short write transaction). */
const RECLAIM_STEP_PAGES = 2048

/**
 * Gives free pages back to the file system when they are many (a queue drained): incremental
 * vacuum in bounded steps, then a checkpoint so the WAL's copy reaches the file (which truncates
 * it) and the WAL is cut back. Returns the pages freed.
 */
export function giveBackSpace(db: Database.Database): number {
  const pageSize = db.pragma('page_size', {simple: true}) as number
  const pages = db.pragma('page_count', {simple: true}) as number
  let free = db.pragma('freelist_count', {simple: true}) as number
  if (free * pageSize < RECLAIM_MIN_BYTES || free < pages * RECLAIM_MIN_SHARE) return 0
  const before = free
  for (let step = 0; free > 0 && step < 1_000; step++) {
    db.pragma(`incremental_vacuum(${RECLAIM_STEP_PAGES})`)
    const left = db.pragma('freelist_count', {simple: true}) as number
    if (left >= free) break // not incremental (conversion pending), or nothing moved
    free = left
  }
  shrinkWal(db)
  return before - free
}

/** How long giving space back may wait for other connections' readers before it settles for less. */
const SHRINK_WAIT_MS = 50

/**
 * Copies the WAL into the file and cuts it to nothing (which also truncates the file after a
 * vacuum), waiting briefly for readers in other processes; when they stay, a passive checkpoint
 * does what it can and journal_size_limit bounds the WAL later.
 */
function shrinkWal(db: Database.Database): void {
  db.pragma(`busy_timeout = ${SHRINK_WAIT_MS}`)
  try {
    const [result] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{busy: number}>
    if (result?.busy) db.pragma('wal_checkpoint(PASSIVE)')
  } finally {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
  }
}
