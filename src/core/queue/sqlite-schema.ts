/**
 * The embedded queue's tables and how a file written by an older cistern is brought up to date.
 * The file is shared with other pieces' tables (spigot state, hooks, sqs-listen), so the schema
 * version lives in the queue's own `queue_meta` table, not in PRAGMA user_version.
 *
 *   1  queue_queues + queue_messages (no version recorded)
 *   2  queue_messages.releases: receives handed back unattempted (attempts = receive_count - releases)
 */
import type Database from 'better-sqlite3'

import {UsageError} from '../errors.js'

export const SCHEMA_VERSION = 2

/** Version 1, as the first cistern releases created it (fresh files start here, then migrate). */
const SCHEMA_V1 = `
CREATE TABLE IF NOT EXISTS queue_queues (
  name TEXT PRIMARY KEY,
  fifo INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_messages (
  seq INTEGER PRIMARY KEY,
  queue TEXT NOT NULL,
  id TEXT NOT NULL,
  body TEXT NOT NULL,
  group_id TEXT,
  dedup_id TEXT,
  attributes TEXT,
  sent_at INTEGER NOT NULL,
  visible_at INTEGER NOT NULL,
  receipt TEXT,
  receive_count INTEGER NOT NULL DEFAULT 0,
  dead INTEGER NOT NULL DEFAULT 0,
  dead_reason TEXT,
  dead_at INTEGER
);
CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (queue, dead, visible_at, seq);
CREATE INDEX IF NOT EXISTS queue_messages_group ON queue_messages (queue, group_id, dead, seq) WHERE group_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_messages_group_lease ON queue_messages (queue, group_id, visible_at) WHERE group_id IS NOT NULL AND receipt IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_messages_dedup ON queue_messages (queue, dedup_id) WHERE dedup_id IS NOT NULL;
`

/** Step n brings a file from version n-1 to n; each runs inside the caller's write transaction. */
const MIGRATIONS: Record<number, string> = {
  2: `
ALTER TABLE queue_messages ADD COLUMN releases INTEGER NOT NULL DEFAULT 0;
-- Ungrouped messages found without walking past grouped ones (groups are honoured on every queue).
CREATE INDEX IF NOT EXISTS queue_messages_ungrouped ON queue_messages (queue, visible_at, seq) WHERE group_id IS NULL AND dead = 0;
`,
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
  if (from === 0) db.exec(SCHEMA_V1)
  for (let version = Math.max(from, 1) + 1; version <= SCHEMA_VERSION; version++) db.exec(MIGRATIONS[version]!)
  db.exec('CREATE TABLE IF NOT EXISTS queue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)')
  db.prepare("INSERT INTO queue_meta (key, value) VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(SCHEMA_VERSION))
}
