/**
 * The embedded queue: one SQLite file (better-sqlite3, WAL, synchronous=FULL) with SQS semantics.
 * Several processes may share the file: every receive claims its rows inside a BEGIN IMMEDIATE
 * transaction, so two receivers never hold the same message. Other pieces keep their own tables
 * in the same file; everything here is prefixed `queue_`.
 *
 * A message row is in one of four states, derived from its columns at time `now`:
 *   dead=1                                        dead (kept with its reason until redrive/purge)
 *   dead=0, visible_at <= now                     visible
 *   dead=0, visible_at >  now, receipt NOT NULL   in flight (leased under `receipt`)
 *   dead=0, visible_at >  now, receipt IS NULL    delayed
 * A receipt handle is `<seq>.<random hex>`: fresh per receive, and a delete/changeVisibility must
 * match it while the lease is live, so an old handle can never touch someone else's lease.
 *
 * Attempts are receives minus releases: release() hands a message back as never attempted, so a
 * message released by a stopping or paused worker never moves toward the dead letters. When the
 * attempts reach maxReceiveCount without the message being settled (its worker was killed while
 * handling it, each time) the next receive moves it to dead, and says so (ReceiveOptions.onDead,
 * else a warn line).
 *
 * Message groups are honoured on every queue: a grouped message is delivered only as its group's
 * head (oldest live message) and only while nothing of its group is in flight. A FIFO queue only
 * adds that a message sent without a group joins the default group ('').
 */
import Database from 'better-sqlite3'
import {randomBytes, randomUUID} from 'node:crypto'
import {existsSync, mkdirSync, statSync} from 'node:fs'
import {homedir} from 'node:os'
import {dirname, resolve} from 'node:path'

import {CisternError, UsageError, errorMessage} from '../errors.js'
import {type Logger, createLogger, silentLogger} from '../log.js'
import {QueueBatchError, StaleReceiptError} from './errors.js'
import {migrate} from './sqlite-schema.js'
import type {
  BatchFailure,
  OpenQueueOptions,
  Queue,
  QueueCapabilities,
  QueueMessage,
  QueueStats,
  ReceiveOptions,
  SendInput,
  SendResult,
} from './types.js'
import {LIMITS, checkSend, checkVisibilityTimeout, pause, receiveParams} from './validate.js'

/** The embedded queue stores large webhook payloads itself (GitHub sends up to 25 MB). */
export const SQLITE_MAX_BODY_BYTES = 32 * 1024 * 1024
const BUSY_TIMEOUT_MS = 10_000
const POLL_MIN_MS = 20
const POLL_MAX_MS = 100
/** How many of the oldest visible messages a receive looks at before walking every group. */
const FIRST_SCAN = 40
/** After that look found too few, how many receives go straight to the walk over every group. */
const FIRST_SKIPS = 8

export interface SqliteQueueUrl {
  path: string
  name: string
  fifo?: boolean
  maxReceiveCount?: number
  visibilityTimeout?: number
}

const URL_FORM = 'sqlite:<path>#<name>[?fifo=true&maxReceiveCount=N&visibilityTimeout=S]'

/** Parses `sqlite:<path>#<name>[?fifo=true&maxReceiveCount=N&visibilityTimeout=S]`. */
export function parseSqliteUrl(url: string): SqliteQueueUrl {
  if (!url.startsWith('sqlite:')) throw new UsageError(`not a sqlite queue URL: "${url}"`, `use ${URL_FORM}`)
  let rest = url.slice('sqlite:'.length)
  if (rest.startsWith('//')) rest = rest.slice(2) // sqlite:///abs/path
  const hash = rest.lastIndexOf('#')
  if (hash < 0) throw new UsageError(`queue URL "${url}" has no queue name`, `add #<name>: ${URL_FORM}`)
  let file = rest.slice(0, hash)
  let fragment = rest.slice(hash + 1)
  let query = ''
  const fragmentQuery = fragment.indexOf('?')
  if (fragmentQuery >= 0) {
    query = fragment.slice(fragmentQuery + 1)
    fragment = fragment.slice(0, fragmentQuery)
  } else if (file.includes('?')) {
    query = file.slice(file.indexOf('?') + 1)
    file = file.slice(0, file.indexOf('?'))
  }
  if (!file) throw new UsageError(`queue URL "${url}" has no file path`, `use ${URL_FORM}`)
  const name = decodeURIComponent(fragment)
  if (!/^[A-Za-z0-9_.-]{1,80}$/.test(name)) {
    throw new UsageError(`queue name "${name}" in "${url}" is not valid`, 'use 1–80 letters, digits, "-", "_" or "."')
  }
  if (file === '~' || file.startsWith('~/')) file = homedir() + file.slice(1)
  const parsed: SqliteQueueUrl = {path: resolve(file), name}
  for (const [key, value] of new URLSearchParams(query)) {
    switch (key) {
      case 'fifo':
        if (!['true', 'false', '1', '0'].includes(value)) throw new UsageError(`fifo=${value} in "${url}": use fifo=true or fifo=false`)
        parsed.fifo = value === 'true' || value === '1'
        break
      case 'maxReceiveCount':
        parsed.maxReceiveCount = urlInteger(url, key, value, 0, 1000)
        break
      case 'visibilityTimeout':
        parsed.visibilityTimeout = urlInteger(url, key, value, 0, LIMITS.maxVisibilityTimeout)
        break
      default:
        throw new UsageError(`unknown parameter "${key}" in queue URL "${url}"`, 'known: fifo, maxReceiveCount, visibilityTimeout')
    }
  }
  // As on SQS, a name ending in .fifo is a FIFO queue.
  if (parsed.fifo === undefined && name.endsWith('.fifo')) parsed.fifo = true
  return parsed
}

function urlInteger(url: string, key: string, value: string, min: number, max: number): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new UsageError(`${key}=${value} in queue URL "${url}" must be a whole number from ${min} to ${max}`)
  }
  return n
}

interface Row {
  seq: number
  id: string
  body: string
  group_id: string | null
  dedup_id: string | null
  attributes: string | null
  sent_at: number
  receive_count: number
  releases: number
  dead_reason?: string | null
}

const COLUMNS = 'seq, id, body, group_id, dedup_id, attributes, sent_at, receive_count, releases'

function openDatabase(path: string, mustExist: boolean): Database.Database {
  if (mustExist && !existsSync(path)) {
    throw new UsageError(`queue database ${path} does not exist`, 'check the path in the queue URL, or send a message first to create it')
  }
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw new UsageError(`queue database ${path} is a directory`, 'point the queue URL at a file: sqlite:<path>/cistern.db#<name>')
  }
  let db: Database.Database | undefined
  try {
    if (!mustExist) mkdirSync(dirname(path), {recursive: true})
    db = new Database(path, {fileMustExist: mustExist})
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    return db
  } catch (error) {
    db?.close()
    throw new UsageError(`cannot open queue database ${path}: ${errorMessage(error)}`, 'check that the file is a SQLite database this user can read and write', error)
  }
}

/** An embedded queue that can also keep dead letters of messages received elsewhere (the facade's store). */
export type DeadLetterStore = Queue & {keepDead(message: QueueMessage, reason: string): Promise<void>}

/** Opens (creating unless `mustExist`) the embedded queue named in a `sqlite:` URL. */
export async function openSqliteQueue(url: string, options: OpenQueueOptions = {}): Promise<DeadLetterStore> {
  const parsed = parseSqliteUrl(url)
  const db = openDatabase(parsed.path, options.mustExist ?? false)
  try {
    const fifo = registerQueue(db, parsed, options)
    const maxReceiveCount = options.maxReceiveCount ?? parsed.maxReceiveCount ?? LIMITS.defaultMaxReceiveCount
    if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 0) throw new UsageError(`maxReceiveCount must be a whole number ≥ 0 (got ${maxReceiveCount})`)
    const visibilityTimeout = checkVisibilityTimeout(options.visibilityTimeout ?? parsed.visibilityTimeout ?? LIMITS.defaultVisibilityTimeout)
    // Dead letters are loud even when the opener gave no logger.
    const loud = options.log ?? createLogger({level: 'warn'})
    return new SqliteQueue(db, url, parsed, {fifo, maxReceiveCount, visibilityTimeout, log: options.log ?? silentLogger, loud})
  } catch (error) {
    db.close()
    if (error instanceof CisternError) throw error
    throw new UsageError(`cannot use queue database ${parsed.path}: ${errorMessage(error)}`, 'check that the file is a SQLite database this user can read and write', error)
  }
}

function queueRow(db: Database.Database, name: string): {fifo: number} | undefined {
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue_queues'").get()
  return table ? (db.prepare('SELECT fifo FROM queue_queues WHERE name = ?').get(name) as {fifo: number} | undefined) : undefined
}

/**
 * Brings the tables up to date and registers the queue (unless mustExist); returns whether this
 * opener's ungrouped sends join the default group. The kind never conflicts: fifo=true (or a .fifo
 * name) marks the queue FIFO for every later opener too, fifo=false only affects this opener's own
 * sends, and without either the queue's recorded kind applies.
 */
function registerQueue(db: Database.Database, parsed: SqliteQueueUrl, options: OpenQueueOptions): boolean {
  const wantFifo = options.fifo ?? parsed.fifo
  const row = db
    .transaction(() => {
      if (options.mustExist && !queueRow(db, parsed.name)) return undefined
      migrate(db, parsed.path)
      if (!options.mustExist) {
        db.prepare('INSERT OR IGNORE INTO queue_queues (name, fifo, created_at) VALUES (?, ?, ?)').run(parsed.name, wantFifo ? 1 : 0, Date.now())
        if (wantFifo) db.prepare('UPDATE queue_queues SET fifo = 1 WHERE name = ? AND fifo = 0').run(parsed.name)
      }
      return queueRow(db, parsed.name)
    })
    .immediate()
  if (!row) throw new UsageError(`no queue "${parsed.name}" in ${parsed.path}`, 'check the name after # in the queue URL')
  return wantFifo ?? row.fifo === 1
}

interface Settings {
  fifo: boolean
  maxReceiveCount: number
  visibilityTimeout: number
  log: Logger
  /** Where dead letters made at receive are reported when the receive has no onDead. */
  loud: Logger
}

/** What one claim did: the messages leased, and those that went dead instead (attempts used up). */
interface Claim {
  messages: QueueMessage[]
  dead: {message: QueueMessage; reason: string}[]
}

class SqliteQueue implements Queue {
  readonly kind = 'sqlite' as const
  readonly capabilities: QueueCapabilities
  readonly url: string
  private closed = false
  /** Receives left that skip the quick look at the oldest visible messages (see claim). */
  private firstSkips = 0
  private readonly closing = new AbortController()
  private readonly name: string
  private readonly path: string
  private readonly stmt
  // Transaction wrappers built once: better-sqlite3 compiles BEGIN/COMMIT per wrapper.
  private readonly tx

  constructor(
    private readonly db: Database.Database,
    url: string,
    parsed: SqliteQueueUrl,
    private readonly settings: Settings,
  ) {
    this.url = url
    this.name = parsed.name
    this.path = parsed.path
    this.capabilities = {send: true, fifo: settings.fifo, groups: true, maxBodyBytes: SQLITE_MAX_BODY_BYTES, deadLetter: true, peek: true}
    // A message is ready when it is visible and either has no group, or heads its group (the
    // group's oldest live message) while nothing of the group is in flight.
    const headOfIdleGroup = (m: string) => `${m}.seq = (SELECT min(seq) FROM queue_messages WHERE queue = @queue AND group_id = ${m}.group_id AND dead = 0)
        AND NOT EXISTS (SELECT 1 FROM queue_messages o
          WHERE o.queue = @queue AND o.group_id = ${m}.group_id AND o.receipt IS NOT NULL AND o.visible_at > @now AND o.dead = 0)`
    // The common case first: the oldest @scan visible messages in (visible_at, seq) order, keeping
    // the ready ones. The ready ones among the first @scan visible messages are exactly the first
    // ready ones in the order readyAll returns them, so when this finds @limit (or @scan covered
    // every visible message) it is readyAll's answer (checked in the queue tests).
    const readyFirst = `SELECT c.seq FROM (
        SELECT seq, group_id, visible_at FROM queue_messages
        WHERE queue = @queue AND dead = 0 AND visible_at <= @now ORDER BY visible_at, seq LIMIT @scan
      ) c
      WHERE c.group_id IS NULL OR (${headOfIdleGroup('c')})
      ORDER BY c.visible_at, c.seq LIMIT @limit`
    // Every ready message: the ungrouped ones (their own index) and the head of every idle group,
    // the groups walked with a loose index scan (one seek per group) so a deep group of many
    // thousand messages costs no more than a shallow one. Only seqs are picked: the chosen rows
    // are read afterwards, when they are leased.
    const readyAll = `WITH RECURSIVE groups(g) AS (
        SELECT (SELECT min(group_id) FROM queue_messages WHERE queue = @queue AND group_id IS NOT NULL)
        UNION ALL
        SELECT (SELECT min(group_id) FROM queue_messages WHERE queue = @queue AND group_id > groups.g) FROM groups WHERE groups.g IS NOT NULL
      ),
      heads AS (
        SELECT m.seq, m.visible_at FROM groups
        JOIN queue_messages m ON m.seq = (SELECT min(seq) FROM queue_messages WHERE queue = @queue AND group_id = groups.g AND dead = 0)
        WHERE m.visible_at <= @now
          AND NOT EXISTS (SELECT 1 FROM queue_messages o
            WHERE o.queue = @queue AND o.group_id = m.group_id AND o.receipt IS NOT NULL AND o.visible_at > @now AND o.dead = 0)
        ORDER BY m.visible_at, m.seq LIMIT @limit
      ),
      loose AS (
        SELECT seq, visible_at FROM queue_messages INDEXED BY queue_messages_ungrouped
        WHERE queue = @queue AND group_id IS NULL AND dead = 0 AND visible_at <= @now ORDER BY visible_at, seq LIMIT @limit
      )
      SELECT seq FROM (SELECT seq, visible_at FROM heads UNION ALL SELECT seq, visible_at FROM loose) ORDER BY visible_at, seq LIMIT @limit`
    this.stmt = {
      insert: db.prepare(
        'INSERT INTO queue_messages (queue, id, body, group_id, dedup_id, attributes, sent_at, visible_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      // A plain read (no lock in WAL mode): idle long polls skip the write transaction.
      anyVisible: db.prepare('SELECT 1 FROM queue_messages WHERE queue = ? AND dead = 0 AND visible_at <= ? LIMIT 1').pluck(),
      visibleUpTo: db.prepare('SELECT count(*) FROM (SELECT 1 FROM queue_messages WHERE queue = @queue AND dead = 0 AND visible_at <= @now LIMIT @scan)').pluck(),
      findDuplicate: db.prepare('SELECT id FROM queue_messages WHERE queue = ? AND dedup_id = ? AND dead = 0 LIMIT 1').pluck(),
      readyFirst: db.prepare(readyFirst).pluck(),
      readyAll: db.prepare(readyAll).pluck(),
      row: db.prepare(`SELECT ${COLUMNS} FROM queue_messages WHERE seq = ?`),
      // Lease and read in one step; no row: its attempts reached maxReceiveCount (@max > 0).
      leaseRow: db.prepare(`UPDATE queue_messages SET receipt = @receipt, visible_at = @until, receive_count = receive_count + 1
        WHERE seq = @seq AND (@max = 0 OR receive_count - releases < @max) RETURNING ${COLUMNS}`),
      kill: db.prepare('UPDATE queue_messages SET dead = 1, receipt = NULL, dead_reason = ?, dead_at = ? WHERE seq = ?'),
      delete: db.prepare('DELETE FROM queue_messages WHERE seq = ? AND queue = ? AND receipt = ? AND dead = 0 AND visible_at > ?'),
      extend: db.prepare('UPDATE queue_messages SET visible_at = ? WHERE seq = ? AND queue = ? AND receipt = ? AND dead = 0 AND visible_at > ?'),
      // Visibility 0: visible at once, the receipt stops working; the receive still counts.
      reset: db.prepare('UPDATE queue_messages SET visible_at = ?, receipt = NULL WHERE seq = ? AND queue = ? AND receipt = ? AND dead = 0 AND visible_at > ?'),
      // Handed back unattempted: the receive does not count.
      release: db.prepare(
        'UPDATE queue_messages SET visible_at = ?, receipt = NULL, releases = releases + 1 WHERE seq = ? AND queue = ? AND receipt = ? AND dead = 0 AND visible_at > ?',
      ),
      deadLetter: db.prepare(
        'UPDATE queue_messages SET dead = 1, receipt = NULL, dead_reason = ?, dead_at = ? WHERE seq = ? AND queue = ? AND receipt = ? AND dead = 0',
      ),
      stats: db.prepare(`SELECT
          coalesce(sum(dead = 0 AND visible_at <= @now), 0) AS visible,
          coalesce(sum(dead = 0 AND visible_at > @now AND receipt IS NOT NULL), 0) AS inFlight,
          coalesce(sum(dead = 0 AND visible_at > @now AND receipt IS NULL), 0) AS delayed,
          coalesce(sum(dead = 1), 0) AS dead,
          min(CASE WHEN dead = 0 THEN sent_at END) AS oldestSentAt,
          min(CASE WHEN dead = 0 AND visible_at > @now THEN visible_at END) AS nextVisibleAt
        FROM queue_messages WHERE queue = @queue`),
      peek: db.prepare(
        `SELECT ${COLUMNS} FROM queue_messages WHERE queue = ? AND dead = 0 AND (receipt IS NULL OR visible_at <= ?) ORDER BY visible_at, seq LIMIT ?`,
      ),
      peekDead: db.prepare(`SELECT ${COLUMNS}, dead_reason FROM queue_messages WHERE queue = ? AND dead = 1 ORDER BY dead_at, seq LIMIT ?`),
      keptDead: db.prepare('SELECT 1 FROM queue_messages WHERE queue = ? AND id = ? AND dead = 1').pluck(),
      keepDead: db.prepare(`INSERT INTO queue_messages (queue, id, body, group_id, dedup_id, attributes, sent_at, visible_at, receive_count, dead, dead_reason, dead_at)
        VALUES (@queue, @id, @body, @group, @dedup, @attributes, @sentAt, @now, @receiveCount, 1, @reason, @now)`),
      purge: db.prepare('DELETE FROM queue_messages WHERE queue = ? AND dead = 0'),
      redrive: db.prepare(
        'UPDATE queue_messages SET dead = 0, receive_count = 0, releases = 0, visible_at = ?, receipt = NULL, dead_reason = NULL, dead_at = NULL WHERE queue = ? AND dead = 1',
      ),
    }
    this.tx = {
      send: db.transaction((messages: SendInput[]) => this.sendNow(messages)),
      receive: db.transaction((max: number, visibilityTimeout: number) => this.claim(max, visibilityTimeout)),
      deleteBatch: db.transaction((handles: string[]) => {
        const now = Date.now()
        const failed: BatchFailure[] = []
        handles.forEach((handle, index) => {
          if (!this.deleteNow(handle, now)) failed.push({index, code: 'StaleReceipt', message: 'receipt handle is stale (re-received, deleted or expired)'})
        })
        return failed
      }),
      keepDead: db.transaction((message: QueueMessage, reason: string) => {
        if (this.stmt.keptDead.get(this.name, message.id) !== undefined) return
        const now = Date.now()
        this.stmt.keepDead.run({
          queue: this.name,
          id: message.id,
          body: message.body,
          group: message.groupId ?? null,
          dedup: message.deduplicationId ?? null,
          attributes: Object.keys(message.attributes).length > 0 ? JSON.stringify(message.attributes) : null,
          sentAt: message.sentAt?.getTime() ?? now,
          receiveCount: message.receiveCount,
          reason,
          now,
        })
      }),
      purge: db.transaction(() => this.stmt.purge.run(this.name).changes),
      redrive: db.transaction(() => this.stmt.redrive.run(Date.now(), this.name).changes),
    }
  }

  private open(): void {
    if (this.closed) throw new CisternError(`queue ${this.url} is closed`)
  }

  /** Runs a database step, turning SQLite's operator-fixable failures into one-line errors. */
  private guard<T>(work: () => T): T {
    try {
      return work()
    } catch (error) {
      throw sqliteError(error, this.path)
    }
  }

  private sendNow(messages: SendInput[]): SendResult[] {
    const now = Date.now()
    const results: SendResult[] = []
    const sentDedup = new Map<string, string>()
    for (const message of messages) {
      const dedup = message.deduplicationId || null
      if (dedup) {
        const existing = sentDedup.get(dedup) ?? (this.stmt.findDuplicate.get(this.name, dedup) as string | undefined)
        if (existing) {
          results.push({id: existing, duplicate: true})
          continue
        }
      }
      const id = randomUUID()
      const group = message.groupId ?? (this.settings.fifo ? '' : null)
      const attributes = message.attributes && Object.keys(message.attributes).length > 0 ? JSON.stringify(message.attributes) : null
      this.stmt.insert.run(this.name, id, message.body, group, dedup, attributes, now, now + (message.delaySeconds ?? 0) * 1000)
      if (dedup) sentDedup.set(dedup, id)
      results.push({id})
    }
    return results
  }

  async send(message: SendInput): Promise<SendResult> {
    return (await this.sendBatch([message]))[0]!
  }

  async sendBatch(messages: SendInput[]): Promise<SendResult[]> {
    this.open()
    for (const message of messages) checkSend(message, SQLITE_MAX_BODY_BYTES)
    if (messages.length === 0) return []
    // One transaction for the whole call: atomic, and one fsync instead of one per message.
    return this.guard(() => this.tx.send.immediate(messages))
  }

  /** The seqs of up to `limit` ready messages, oldest first (see readyFirst and readyAll). */
  private ready(now: number, limit: number): number[] {
    if (this.firstSkips > 0) this.firstSkips--
    else {
      const seqs = this.stmt.readyFirst.all({queue: this.name, now, limit, scan: FIRST_SCAN}) as number[]
      if (seqs.length === limit || (this.stmt.visibleUpTo.get({queue: this.name, now, scan: FIRST_SCAN}) as number) < FIRST_SCAN) return seqs
      // Too few among many visible (a deep group's followers in front): walk the groups, and skip
      // the first look for a while, where it rarely finds enough.
      this.firstSkips = FIRST_SKIPS
    }
    return this.stmt.readyAll.all({queue: this.name, now, limit}) as number[]
  }

  /** Claims up to `max` messages now; runs inside an IMMEDIATE transaction (the cross-process lock). */
  private claim(max: number, visibilityTimeout: number): Claim {
    const now = Date.now()
    const maxCount = this.settings.maxReceiveCount
    const claim: Claim = {messages: [], dead: []}
    // A message whose attempts are used up goes dead instead of out; then look again.
    for (let round = 0; round < 100 && claim.messages.length < max; round++) {
      const seqs = this.ready(now, max - claim.messages.length)
      let killed = 0
      // 18 random hex digits per receipt, drawn in one call for the batch.
      const random = seqs.length > 0 ? randomBytes(9 * seqs.length).toString('hex') : ''
      for (const [i, seq] of seqs.entries()) {
        const receipt = `${seq}.${random.slice(i * 18, i * 18 + 18)}`
        // Same transaction: the row picked above is still there, unchanged until this update.
        const leased = this.stmt.leaseRow.get({receipt, until: now + visibilityTimeout * 1000, seq, max: maxCount}) as Row | undefined
        if (leased) {
          claim.messages.push(toMessage(leased, receipt))
          continue
        }
        const row = this.stmt.row.get(seq) as Row
        const attempts = row.receive_count - row.releases
        const reason = `reached maxReceiveCount ${maxCount} after ${attempts} attempts; the last attempt never settled (was its worker killed while handling it?)`
        this.stmt.kill.run(reason, now, row.seq)
        claim.dead.push({message: toMessage(row, ''), reason})
        killed++
      }
      if (killed === 0) break
    }
    return claim
  }

  async receive(options: ReceiveOptions = {}): Promise<QueueMessage[]> {
    this.open()
    const {maxMessages, waitSeconds, visibilityTimeout} = receiveParams(options, this.settings.visibilityTimeout)
    const deadline = Date.now() + waitSeconds * 1000
    const signals = options.signal ? [options.signal, this.closing.signal] : [this.closing.signal]
    let interval = POLL_MIN_MS
    for (;;) {
      if (this.closed || signals.some((s) => s.aborted)) return []
      let messages: QueueMessage[] = []
      if (this.guard(() => this.stmt.anyVisible.get(this.name, Date.now())) !== undefined) {
        const claim = this.guard(() => this.tx.receive.immediate(maxMessages, visibilityTimeout) as Claim)
        messages = claim.messages
        this.reportDead(claim.dead, options.onDead)
      }
      const left = deadline - Date.now()
      if (messages.length > 0 || left <= 0) return messages
      await pause(Math.min(interval, left), ...signals)
      interval = Math.min(interval * 2, POLL_MAX_MS)
    }
  }

  /** Dead letters made at receive are loud: the caller's onDead, else a warn line. */
  private reportDead(dead: Claim['dead'], onDead: ReceiveOptions['onDead']): void {
    for (const {message, reason} of dead) {
      if (onDead) onDead(message, reason)
      else this.settings.loud.warn('message dead-lettered at receive', {queue: this.url, messageId: message.id, reason})
    }
  }

  private parseReceipt(receiptHandle: string): number | undefined {
    const match = /^(\d+)\.[0-9a-f]+$/.exec(receiptHandle ?? '')
    return match ? Number(match[1]) : undefined
  }

  private deleteNow(receiptHandle: string, now: number): boolean {
    const seq = this.parseReceipt(receiptHandle)
    return seq !== undefined && this.stmt.delete.run(seq, this.name, receiptHandle, now).changes === 1
  }

  async delete(receiptHandle: string): Promise<void> {
    this.open()
    if (!this.guard(() => this.deleteNow(receiptHandle, Date.now()))) throw new StaleReceiptError(receiptHandle)
  }

  async deleteBatch(receiptHandles: string[]): Promise<void> {
    this.open()
    if (receiptHandles.length === 0) return
    const failures = this.guard(() => this.tx.deleteBatch.immediate(receiptHandles) as BatchFailure[])
    if (failures.length > 0) throw new QueueBatchError('delete', failures)
  }

  /** Hands the message back unattempted: visible after `delaySeconds`, the receive not counted. */
  async release(receiptHandle: string, delaySeconds = 0): Promise<void> {
    this.open()
    this.updateLease(this.stmt.release, receiptHandle, checkVisibilityTimeout(delaySeconds, 'release delay'))
  }

  async changeVisibility(receiptHandle: string, seconds: number): Promise<void> {
    this.open()
    checkVisibilityTimeout(seconds)
    // 0 gives the message back now (the old receipt stops working); the receive still counts.
    this.updateLease(seconds === 0 ? this.stmt.reset : this.stmt.extend, receiptHandle, seconds)
  }

  private updateLease(statement: Database.Statement, receiptHandle: string, seconds: number): void {
    const seq = this.parseReceipt(receiptHandle)
    const now = Date.now()
    if (seq === undefined || this.guard(() => statement.run(now + seconds * 1000, seq, this.name, receiptHandle, now).changes) !== 1) {
      throw new StaleReceiptError(receiptHandle)
    }
  }

  async maxAttempts(): Promise<number | undefined> {
    return this.settings.maxReceiveCount || undefined
  }

  async deadLetter(message: QueueMessage, reason: string): Promise<'dead-letter-queue' | 'redrive-policy'> {
    this.open()
    const seq = this.parseReceipt(message.receiptHandle)
    if (seq === undefined || this.guard(() => this.stmt.deadLetter.run(String(reason), Date.now(), seq, this.name, message.receiptHandle).changes) !== 1) {
      throw new StaleReceiptError(message.receiptHandle)
    }
    return 'dead-letter-queue'
  }

  /**
   * Keeps a message received from elsewhere (the API Gateway facade) as a dead letter here, with
   * its reason; once per message id.
   */
  async keepDead(message: QueueMessage, reason: string): Promise<void> {
    this.open()
    this.guard(() => this.tx.keepDead.immediate(message, reason))
  }

  async peek(max = 10): Promise<QueueMessage[]> {
    this.open()
    const rows = this.guard(() => this.stmt.peek.all(this.name, Date.now(), Math.max(1, Math.floor(max))) as Row[])
    return rows.map((row) => toMessage(row, ''))
  }

  /** Dead messages with their reason in `attributes['cistern.deadReason']` (operator view). */
  async peekDead(max = 10): Promise<QueueMessage[]> {
    this.open()
    const rows = this.guard(() => this.stmt.peekDead.all(this.name, Math.max(1, Math.floor(max))) as Row[])
    return rows.map((row) => {
      const message = toMessage(row, '')
      if (row.dead_reason) message.attributes = {...message.attributes, 'cistern.deadReason': row.dead_reason}
      return message
    })
  }

  async stats(): Promise<QueueStats> {
    this.open()
    const now = Date.now()
    const row = this.guard(() => this.stmt.stats.get({queue: this.name, now})) as QueueStats & {oldestSentAt: number | null; nextVisibleAt: number | null}
    const stats: QueueStats = {visible: row.visible, inFlight: row.inFlight, delayed: row.delayed, dead: row.dead}
    if (row.oldestSentAt !== null) stats.oldestAgeSeconds = Math.max(0, Math.floor((now - row.oldestSentAt) / 1000))
    if (row.nextVisibleAt !== null) stats.nextVisibleAt = new Date(row.nextVisibleAt)
    return stats
  }

  async purge(): Promise<number> {
    this.open()
    return this.guard(() => this.tx.purge.immediate() as number)
  }

  async redrive(): Promise<number> {
    this.open()
    return this.guard(() => this.tx.redrive.immediate() as number)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closing.abort()
    this.db.close()
  }
}

/** SQLite failures an operator can act on → CisternError; anything else stays a bug. */
export function sqliteError(error: unknown, path: string): unknown {
  const code = String((error as {code?: unknown})?.code ?? '')
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new CisternError(`queue database ${path} stayed locked for over ${BUSY_TIMEOUT_MS / 1000} s`, {
      fix: 'another process holds a long write transaction on it; try again',
      cause: error,
    })
  }
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_PERM')) {
    return new UsageError(`cannot write the queue database ${path} (${code})`, 'check the permissions of the file, its -wal/-shm files and its directory', error)
  }
  if (code.startsWith('SQLITE_FULL')) return new CisternError(`the disk holding ${path} is full`, {fix: 'free some space', cause: error})
  if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB')) {
    return new UsageError(`queue database ${path} is damaged or not a database (${code})`, 'restore it from a backup or point the queue URL at another file', error)
  }
  if (code.startsWith('SQLITE_IOERR')) return new CisternError(`I/O error on the queue database ${path} (${code})`, {cause: error})
  return error
}

function toMessage(row: Row, receiptHandle: string): QueueMessage {
  const message: QueueMessage = {
    id: row.id,
    body: row.body,
    receiptHandle,
    receiveCount: row.receive_count,
    attempts: row.receive_count - row.releases,
    sentAt: new Date(row.sent_at),
    attributes: row.attributes ? (JSON.parse(row.attributes) as Record<string, string>) : {},
  }
  if (row.group_id) message.groupId = row.group_id
  if (row.dedup_id) message.deduplicationId = row.dedup_id
  return message
}
