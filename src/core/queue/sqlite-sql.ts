/**
 * The embedded queue's SQL, prepared once per connection. Lease state lives in queue_messages
 * (small rows, every index); bodies in queue_bodies, written once by a send and read by a receive,
 * never rewritten by a lease, an extension or a release.
 *
 * A message is ready when it is live (dead = 0), visible (visible_at <= now) and either has no
 * group, or heads its group (the group's oldest live message) while nothing of its group is in
 * flight (leased: receipt set, visible_at in the future). The search (SqliteQueue.ready) is a few
 * small indexed reads driven from code: they cost a fraction of one query doing it all (a recursive
 * walk with correlated subqueries was most of a receive).
 */
import type Database from 'better-sqlite3'

/** A message's lease state and identity (queue_messages). */
export interface MessageRow {
  seq: number
  id: string
  group_id: string | null
  dedup_id: string | null
  sent_at: number
  receive_count: number
  releases: number
  dead_reason?: string | null
}

/** What a message carries (queue_bodies). */
export interface BodyRow {
  body: string
  attributes: string | null
}

/** A leased message: its row, as the batch lease returns it, with the fresh receipt. */
export type LeasedRow = MessageRow & {receipt: string}

export const MESSAGE_COLUMNS = 'seq, id, group_id, dedup_id, sent_at, receive_count, releases'
const JOINED_COLUMNS = 'm.seq, m.id, m.group_id, m.dedup_id, m.sent_at, m.receive_count, m.releases, b.body, b.attributes'

// The lease-changing statements all require the receipt of a live lease (visible_at > now).
const LEASED = 'seq = ? AND queue = ? AND receipt = ? AND dead = 0 AND visible_at > ?'

/** `?, ?, …` n times. */
const marks = (n: number, mark = '?') => Array.from({length: n}, () => mark).join(', ')

/**
 * Statements over 1–10 messages at once (a receive, a delete batch), prepared on first use per
 * count: one statement per batch instead of one per message.
 */
function perCount(db: Database.Database, sql: (n: number) => string): (n: number) => Database.Statement {
  const cache = new Map<number, Database.Statement>()
  return (n) => {
    let statement = cache.get(n)
    if (!statement) cache.set(n, (statement = db.prepare(sql(n))))
    return statement
  }
}

export function prepareStatements(db: Database.Database) {
  return {
    // The first look (see SqliteQueue.ready). Their LIMIT is written into the statement: a bound
    // LIMIT made the same 10-row read 2.5 times the CPU.
    /** The oldest visible ungrouped messages [seq, visible_at], oldest first (params: queue, now). */
    firstLoose: perCount(db, (n) =>
      `SELECT seq, visible_at FROM queue_messages INDEXED BY queue_messages_loose
        WHERE queue = ? AND dead = 0 AND group_id IS NULL AND visible_at <= ? ORDER BY visible_at, seq LIMIT ${n}`,
    ),
    /** The oldest visible grouped messages [seq, visible_at, group_id], oldest first (params: queue, now). */
    firstGrouped: perCount(db, (n) =>
      `SELECT seq, visible_at, group_id FROM queue_messages INDEXED BY queue_messages_grouped
        WHERE queue = ? AND dead = 0 AND group_id IS NOT NULL AND visible_at <= ? ORDER BY visible_at, seq LIMIT ${n}`,
    ),
    /**
     * Leases the given seqs under fresh receipts (params: until, ...seqs, max, max); a message whose
     * attempts reached maxReceiveCount (max > 0) is left alone and not returned.
     */
    leaseBatch: perCount(
      db,
      (n) => `UPDATE queue_messages SET receipt = seq || '.' || lower(hex(randomblob(9))), visible_at = ?, receive_count = receive_count + 1
        WHERE seq IN (${marks(n)}) AND (? = 0 OR receive_count - releases < ?) RETURNING ${MESSAGE_COLUMNS}, receipt`,
    ),
    bodies: perCount(db, (n) => `SELECT seq, body, attributes FROM queue_bodies WHERE seq IN (${marks(n)})`),
    /** Deletes the messages whose (seq, receipt) hold a live lease (params: seq1, receipt1, …, queue, now); returns their seqs. */
    deleteLeased: perCount(
      db,
      (n) => `DELETE FROM queue_messages WHERE (seq, receipt) IN (VALUES ${marks(n, '(?, ?)')}) AND queue = ? AND dead = 0 AND visible_at > ? RETURNING seq`,
    ),
    deleteBodies: perCount(db, (n) => `DELETE FROM queue_bodies WHERE seq IN (${marks(n)})`),
    insertMessage: db.prepare('INSERT INTO queue_messages (queue, id, group_id, dedup_id, sent_at, visible_at) VALUES (?, ?, ?, ?, ?, ?)'),
    insertBody: db.prepare('INSERT INTO queue_bodies (seq, body, attributes) VALUES (?, ?, ?)'),
    // A plain read (no lock in WAL mode): idle long polls skip the write transaction.
    anyVisible: db
      .prepare(
        `SELECT EXISTS (SELECT 1 FROM queue_messages INDEXED BY queue_messages_loose WHERE queue = @queue AND dead = 0 AND group_id IS NULL AND visible_at <= @now)
          OR EXISTS (SELECT 1 FROM queue_messages INDEXED BY queue_messages_grouped WHERE queue = @queue AND dead = 0 AND group_id IS NOT NULL AND visible_at <= @now)`,
      )
      .pluck(),
    findDuplicate: db.prepare('SELECT id FROM queue_messages WHERE queue = ? AND dedup_id = ? AND dead = 0 LIMIT 1').pluck(),
    groupHead: db.prepare('SELECT min(seq) FROM queue_messages WHERE queue = ? AND group_id = ? AND dead = 0').pluck(),
    groupLive: db.prepare('SELECT 1 FROM queue_messages WHERE queue = ? AND group_id = ? AND dead = 0 LIMIT 1').pluck(),
    groupBusy: db.prepare('SELECT 1 FROM queue_messages WHERE queue = ? AND group_id = ? AND dead = 0 AND receipt IS NOT NULL AND visible_at > ? LIMIT 1').pluck(),
    // The walk over every group (a loose index scan: one seek per group).
    firstGroup: db.prepare('SELECT min(group_id) FROM queue_messages WHERE queue = ? AND dead = 0 AND group_id IS NOT NULL').pluck(),
    nextGroup: db.prepare('SELECT min(group_id) FROM queue_messages WHERE queue = ? AND dead = 0 AND group_id IS NOT NULL AND group_id > ?').pluck(),
    /** A group's head [seq, visible_at]. */
    headOf: db
      .prepare('SELECT seq, visible_at FROM queue_messages WHERE seq = (SELECT min(seq) FROM queue_messages WHERE queue = ? AND group_id = ? AND dead = 0)')
      .raw(),
    message: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM queue_messages WHERE seq = ?`),
    body: db.prepare('SELECT body, attributes FROM queue_bodies WHERE seq = ?'),
    kill: db.prepare('UPDATE queue_messages SET dead = 1, receipt = NULL, dead_reason = ?, dead_at = ? WHERE seq = ?'),
    extend: db.prepare(`UPDATE queue_messages SET visible_at = ? WHERE ${LEASED}`),
    // Visibility 0: visible at once, the receipt stops working; the receive still counts.
    reset: db.prepare(`UPDATE queue_messages SET visible_at = ?, receipt = NULL WHERE ${LEASED}`),
    // Handed back unattempted: the receive does not count.
    release: db.prepare(`UPDATE queue_messages SET visible_at = ?, receipt = NULL, releases = releases + 1 WHERE ${LEASED}`),
    deadLetter: db.prepare('UPDATE queue_messages SET dead = 1, receipt = NULL, dead_reason = ?, dead_at = ? WHERE seq = ? AND queue = ? AND receipt = ? AND dead = 0'),
    stats: db.prepare(`SELECT
        coalesce(sum(dead = 0 AND visible_at <= @now), 0) AS visible,
        coalesce(sum(dead = 0 AND visible_at > @now AND receipt IS NOT NULL), 0) AS inFlight,
        coalesce(sum(dead = 0 AND visible_at > @now AND receipt IS NULL), 0) AS delayed,
        coalesce(sum(dead = 1), 0) AS dead,
        min(CASE WHEN dead = 0 THEN sent_at END) AS oldestSentAt,
        min(CASE WHEN dead = 0 AND visible_at > @now THEN visible_at END) AS nextVisibleAt
      FROM queue_messages WHERE queue = @queue`),
    peek: db.prepare(`SELECT ${JOINED_COLUMNS} FROM queue_messages m JOIN queue_bodies b ON b.seq = m.seq
      WHERE m.queue = ? AND m.dead = 0 AND (m.receipt IS NULL OR m.visible_at <= ?) ORDER BY m.visible_at, m.seq LIMIT ?`),
    peekDead: db.prepare(`SELECT ${JOINED_COLUMNS}, m.dead_reason FROM queue_messages m JOIN queue_bodies b ON b.seq = m.seq
      WHERE m.queue = ? AND m.dead = 1 ORDER BY m.dead_at, m.seq LIMIT ?`),
    keptDead: db.prepare('SELECT 1 FROM queue_messages WHERE queue = ? AND id = ? AND dead = 1').pluck(),
    insertDead: db.prepare(`INSERT INTO queue_messages (queue, id, group_id, dedup_id, sent_at, visible_at, receive_count, dead, dead_reason, dead_at)
      VALUES (@queue, @id, @group, @dedup, @sentAt, @now, @receiveCount, 1, @reason, @now)`),
    purgeBodies: db.prepare('DELETE FROM queue_bodies WHERE seq IN (SELECT seq FROM queue_messages WHERE queue = ? AND dead = 0)'),
    purge: db.prepare('DELETE FROM queue_messages WHERE queue = ? AND dead = 0'),
    // A lease is soft state: see SqliteQueue.soft.
    syncNormal: db.prepare('PRAGMA synchronous = NORMAL'),
    syncFull: db.prepare('PRAGMA synchronous = FULL'),
    redrive: db.prepare(
      'UPDATE queue_messages SET dead = 0, receive_count = 0, releases = 0, visible_at = ?, receipt = NULL, dead_reason = NULL, dead_at = NULL WHERE queue = ? AND dead = 1',
    ),
  }
}

export type Statements = ReturnType<typeof prepareStatements>
