/**
 * The embedded queue: one SQLite file (better-sqlite3, WAL, synchronous=FULL) with SQS semantics.
 * Several processes may share the file: every receive claims its rows inside a BEGIN IMMEDIATE
 * transaction, so two receivers never hold the same message. Other pieces keep their own tables
 * in the same file; everything here is prefixed `queue_` (the file, its schema versions and its
 * disk space: sqlite-file.ts; the SQL: sqlite-sql.ts).
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
import type Database from 'better-sqlite3'
import {randomUUID} from 'node:crypto'
import {homedir} from 'node:os'
import {resolve} from 'node:path'

import {CisternError, UsageError, errorMessage} from '../errors.js'
import {type Logger, createLogger, silentLogger} from '../log.js'
import {QueueBatchError, StaleReceiptError} from './errors.js'
import {BUSY_TIMEOUT_MS, type Synchronous, convertToIncrementalVacuum, giveBackSpace, migrate, openDatabase} from './sqlite-file.js'
import {type BodyRow, type LeasedRow, type MessageRow, type Statements, prepareStatements} from './sqlite-sql.js'
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
import {LIMITS, checkSend, checkVisibilityTimeout, chunks, pause, receiveParams} from './validate.js'

/** The embedded queue stores large webhook payloads itself (GitHub sends up to 25 MB). */
export const SQLITE_MAX_BODY_BYTES = 32 * 1024 * 1024
const POLL_MIN_MS = 20
const POLL_MAX_MS = 100
/** How many of the oldest visible messages a receive looks at before walking every group. */
const FIRST_SCAN = 40
/** After that look found too few, how many receives go straight to the walk over every group. */
const FIRST_SKIPS = 8
/** Messages deleted (by this connection) before an empty receive looks at giving disk space back. */
const RECLAIM_AFTER_DELETES = 256

export interface SqliteQueueUrl {
  path: string
  name: string
  fifo?: boolean
  maxReceiveCount?: number
  visibilityTimeout?: number
  synchronous?: Synchronous
}

const URL_FORM = 'sqlite:<path>#<name>[?fifo=true&maxReceiveCount=N&visibilityTimeout=S&synchronous=full|normal]'

/** Parses `sqlite:<path>#<name>[?fifo=true&maxReceiveCount=N&visibilityTimeout=S&synchronous=full|normal]`. */
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
      case 'synchronous':
        // normal: a commit does not wait for its fsync; durable through a crash of cistern, not a power cut.
        if (value !== 'full' && value !== 'normal') throw new UsageError(`synchronous=${value} in "${url}": use synchronous=full (the default) or synchronous=normal`)
        parsed.synchronous = value
        break
      default:
        throw new UsageError(`unknown parameter "${key}" in queue URL "${url}"`, 'known: fifo, maxReceiveCount, visibilityTimeout, synchronous')
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

/** An embedded queue that can also keep dead letters of messages received elsewhere (the facade's store). */
export type DeadLetterStore = Queue & {keepDead(message: QueueMessage, reason: string): Promise<void>; peekDead(max?: number): Promise<QueueMessage[]>}

/** Opens (creating unless `mustExist`) the embedded queue named in a `sqlite:` URL. */
export async function openSqliteQueue(url: string, options: OpenQueueOptions = {}): Promise<DeadLetterStore> {
  const parsed = parseSqliteUrl(url)
  const log = options.log ?? silentLogger
  const db = openDatabase(parsed.path, {mustExist: options.mustExist ?? false, synchronous: parsed.synchronous})
  try {
    const fifo = registerQueue(db, parsed, options)
    convertToIncrementalVacuum(db, parsed.path, log)
    const maxReceiveCount = options.maxReceiveCount ?? parsed.maxReceiveCount ?? LIMITS.defaultMaxReceiveCount
    if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 0) throw new UsageError(`maxReceiveCount must be a whole number ≥ 0 (got ${maxReceiveCount})`)
    const visibilityTimeout = checkVisibilityTimeout(options.visibilityTimeout ?? parsed.visibilityTimeout ?? LIMITS.defaultVisibilityTimeout)
    // Dead letters are loud even when the opener gave no logger.
    const loud = options.log ?? createLogger({level: 'warn'})
    return new SqliteQueue(db, url, parsed, {fifo, synchronous: parsed.synchronous ?? 'full', maxReceiveCount, visibilityTimeout, log, loud})
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
  synchronous: Synchronous
  maxReceiveCount: number
  visibilityTimeout: number
  log: Logger
  /** Where dead letters made at receive are reported when the receive has no onDead. */
  loud: Logger
}

/** A visible message as the first look reads it from an index: [seq, visible_at, group_id]. */
/** [seq, visible_at] of a visible message; a grouped one adds its group_id. */
type Visible = [number, number]
type GroupedVisible = [number, number, string]

/** What one claim did: the messages leased, and those that went dead instead (attempts used up). */
interface Claim {
  messages: QueueMessage[]
  dead: Array<{message: QueueMessage; reason: string}>
}

class SqliteQueue implements DeadLetterStore {
  readonly kind = 'sqlite' as const
  readonly capabilities: QueueCapabilities
  readonly url: string
  private closed = false
  /** Receives left that skip the quick look at the oldest visible messages (see ready). */
  private firstSkips = 0
  /** Messages this connection deleted since it last looked at giving disk space back. */
  private deletedSinceReclaim = 0
  /** The last receive returned all it asked for. */
  private lastReceiveFull = false
  private readonly closing = new AbortController()
  private readonly name: string
  private readonly path: string
  private readonly stmt: Statements
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
    this.stmt = prepareStatements(db)
    this.tx = {
      send: db.transaction((messages: SendInput[]) => this.sendNow(messages)),
      receive: db.transaction((max: number, visibilityTimeout: number) => this.claim(max, visibilityTimeout)),
      deleteBatch: db.transaction((handles: string[]) => this.deleteNow(handles)),
      keepDead: db.transaction((message: QueueMessage, reason: string) => this.keepDeadNow(message, reason)),
      purge: db.transaction(() => {
        this.stmt.purgeBodies.run(this.name)
        return this.stmt.purge.run(this.name).changes
      }),
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
      const dedup = message.deduplicationId === '' ? null : (message.deduplicationId ?? null) // an empty id is none
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
      const {lastInsertRowid} = this.stmt.insertMessage.run(this.name, id, group, dedup, now, now + (message.delaySeconds ?? 0) * 1000)
      this.stmt.insertBody.run(lastInsertRowid, message.body, attributes)
      if (dedup) sentDedup.set(dedup, id)
      results.push({id})
    }
    return results
  }

  async send(message: SendInput): Promise<SendResult> {
    const [result] = await this.sendBatch([message])
    if (!result) throw new CisternError(`the embedded queue ${this.url} sent a message without a result`) // one result per message
    return result
  }

  async sendBatch(messages: SendInput[]): Promise<SendResult[]> {
    this.open()
    for (const message of messages) checkSend(message, SQLITE_MAX_BODY_BYTES)
    if (messages.length === 0) return []
    // One transaction for the whole call: atomic, and one fsync instead of one per message.
    return this.guard(() => this.tx.send.immediate(messages))
  }

  /**
   * The seqs of up to `limit` ready messages, oldest first. The common cases look at the oldest
   * visible messages only: ungrouped ones are ready whenever visible, and a grouped one when it
   * heads its group with nothing of the group in flight (one check per group). The ready ones among
   * the oldest visible messages are exactly the first ready ones overall, so the look is the answer
   * unless it ran out of grouped messages it did not see (a deep group's followers in front of the
   * other groups' heads): then readyAll walks every group, and the next receives go straight to it.
   */
  private ready(now: number, limit: number): number[] {
    if (this.firstSkips > 0) {
      this.firstSkips--
      return this.readyAll(now, limit)
    }
    const loose = this.stmt.firstLoose(limit).raw().all(this.name, now) as Visible[]
    const heads = new Map<string, number>()
    for (const scan of [limit, FIRST_SCAN]) {
      const grouped = this.stmt.firstGrouped(scan).raw().all(this.name, now) as GroupedVisible[]
      const seqs = this.pick(loose, grouped, limit, scan, now, heads)
      if (seqs) return seqs
    }
    this.firstSkips = FIRST_SKIPS
    return this.readyAll(now, limit)
  }

  /**
   * Every ready message: the oldest ungrouped ones and the head of every idle group (the groups
   * walked with one index seek each, so a deep group costs no more than a shallow one).
   */
  private readyAll(now: number, limit: number): number[] {
    const candidates = this.stmt.firstLoose(limit).raw().all(this.name, now) as Visible[]
    let group = this.stmt.firstGroup.get(this.name) as string | null
    for (let walked = 0; group !== null && walked < 1_000_000; walked++) {
      const head = this.stmt.headOf.get(this.name, group) as [number, number] | undefined
      if (head && head[1] <= now && this.stmt.groupBusy.get(this.name, group, now) === undefined) candidates.push(head)
      group = this.stmt.nextGroup.get(this.name, group) as string | null
    }
    return candidates
      .sort((a, b) => a[1] - b[1] || a[0] - b[0])
      .slice(0, limit)
      .map(([seq]) => seq)
  }

  /**
   * Merges the oldest visible ungrouped and grouped messages in (visible_at, seq) order, keeping the
   * ready ones; undefined when the grouped ones seen (`scan` of them, all used) may not be all that
   * matter. `heads` caches, per group, its head's seq when nothing of it is in flight, else 0.
   */
  private pick(loose: Visible[], grouped: GroupedVisible[], limit: number, scan: number, now: number, heads: Map<string, number>): number[] | undefined {
    const seqs: number[] = []
    let l = 0
    let g = 0
    while (seqs.length < limit) {
      const a = loose[l]
      const b = grouped[g]
      if (b === undefined && grouped.length === scan) return undefined
      if (a !== undefined && (b === undefined || a[1] < b[1] || (a[1] === b[1] && a[0] < b[0]))) {
        seqs.push(a[0])
        l++
        continue
      }
      if (b === undefined) break // and a too: both lists used up
      g++
      const group = b[2]
      let head = heads.get(group)
      if (head === undefined) {
        head = this.stmt.groupBusy.get(this.name, group, now) === undefined ? (this.stmt.groupHead.get(this.name, group) as number) : 0
        heads.set(group, head)
      }
      if (b[0] === head) seqs.push(b[0])
    }
    return seqs
  }

  /** Claims up to `max` messages now; runs inside an IMMEDIATE transaction (the cross-process lock). */
  private claim(max: number, visibilityTimeout: number): Claim {
    const now = Date.now()
    const maxCount = this.settings.maxReceiveCount
    const claim: Claim = {messages: [], dead: []}
    // A message whose attempts are used up goes dead instead of out; then look again.
    for (let round = 0; round < 100 && claim.messages.length < max; round++) {
      const seqs = this.ready(now, max - claim.messages.length)
      if (seqs.length === 0) break
      // Same transaction: the rows picked above are still there, unchanged until this update.
      const leased = this.stmt.leaseBatch(seqs.length).all(now + visibilityTimeout * 1000, ...seqs, maxCount, maxCount) as LeasedRow[]
      const bodies = this.bodiesOf(leased.map((row) => row.seq))
      const bySeq = new Map(leased.map((row) => [row.seq, row]))
      // In the order picked (the lease returns rows in any order).
      for (const row of seqs.flatMap((seq) => bySeq.get(seq) ?? [])) claim.messages.push(toMessage(row, bodyOf(bodies, row.seq), row.receipt))
      if (leased.length === seqs.length) break
      for (const seq of seqs.filter((seq) => !bySeq.has(seq))) {
        const row = this.stmt.message.get(seq) as MessageRow
        const reason = `reached maxReceiveCount ${maxCount} after ${row.receive_count - row.releases} attempts; the last attempt never settled (was its worker killed while handling it?)`
        this.stmt.kill.run(reason, now, seq)
        claim.dead.push({message: toMessage(row, this.stmt.body.get(seq) as BodyRow, ''), reason})
      }
    }
    return claim
  }

  private bodiesOf(seqs: number[]): Map<number, BodyRow> {
    if (seqs.length === 0) return new Map()
    const rows = this.stmt.bodies(seqs.length).all(...seqs) as Array<BodyRow & {seq: number}>
    return new Map(rows.map((row) => [row.seq, row]))
  }

  /**
   * A lease is soft state: if a power cut loses one, the message is simply visible again sooner and
   * delivered again (at least once holds). So receives, extensions and releases commit without
   * waiting for an fsync (synchronous NORMAL, WAL order kept); sends, deletes and dead letters wait
   * (FULL), and the next of those syncs everything before it too. A queue opened with
   * synchronous=normal never waits.
   */
  private soft<T>(work: () => T): T {
    if (this.settings.synchronous === 'normal') return work()
    this.stmt.syncNormal.run()
    try {
      return work()
    } finally {
      this.stmt.syncFull.run()
    }
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
      // A full batch last time: more are likely waiting, so skip the look before the write lock.
      if (this.lastReceiveFull || this.guard(() => this.stmt.anyVisible.get({queue: this.name, now: Date.now()})) === 1) {
        const claim = this.guard(() => this.soft(() => this.tx.receive.immediate(maxMessages, visibilityTimeout)))
        messages = claim.messages
        this.lastReceiveFull = messages.length === maxMessages
        this.reportDead(claim.dead, options.onDead)
      }
      if (messages.length === 0) this.reclaimAfterDrain()
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

  /**
   * The queue came up empty after this connection deleted a good many messages: give the space
   * back now, while almost nothing is left to move (issue 14: a drained file kept its largest size).
   */
  private reclaimAfterDrain(): void {
    if (this.deletedSinceReclaim < RECLAIM_AFTER_DELETES) return
    this.deletedSinceReclaim = 0
    try {
      const pages = giveBackSpace(this.db)
      if (pages > 0) this.settings.log.debug('gave disk space back after the queue drained', {queue: this.name, pages})
    } catch (error) {
      // Another process holding the file busy: the next drain tries again.
      this.settings.log.debug('could not give disk space back now', {queue: this.name, error: errorMessage(error)})
    }
  }

  private parseReceipt(receiptHandle: string): number | undefined {
    const match = /^(\d+)\.[0-9a-f]+$/.exec(receiptHandle)
    return match ? Number(match[1]) : undefined
  }

  /** Deletes what the handles lease (10 per statement); the handles that lease nothing are the failures. */
  private deleteNow(handles: string[]): BatchFailure[] {
    const now = Date.now()
    const deleted = new Set<number>()
    for (const batch of chunks(handles.map((handle) => ({handle, seq: this.parseReceipt(handle)})).filter((h) => h.seq !== undefined))) {
      const pairs = batch.flatMap(({handle, seq}) => [seq, handle])
      const seqs = this.stmt.deleteLeased(batch.length).all(...pairs, this.name, now) as Array<{seq: number}>
      if (seqs.length > 0) this.stmt.deleteBodies(seqs.length).run(...seqs.map((row) => row.seq))
      for (const row of seqs) deleted.add(row.seq)
    }
    this.deletedSinceReclaim += deleted.size
    const failed: BatchFailure[] = []
    handles.forEach((handle, index) => {
      const seq = this.parseReceipt(handle)
      if (seq === undefined || !deleted.has(seq)) failed.push({index, code: 'StaleReceipt', message: 'receipt handle is stale (re-received, deleted or expired)'})
    })
    return failed
  }

  async delete(receiptHandle: string): Promise<void> {
    this.open()
    if (this.guard(() => this.tx.deleteBatch.immediate([receiptHandle])).length > 0) throw new StaleReceiptError(receiptHandle)
  }

  async deleteBatch(receiptHandles: string[]): Promise<void> {
    this.open()
    if (receiptHandles.length === 0) return
    const failures = this.guard(() => this.tx.deleteBatch.immediate(receiptHandles))
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
    if (seq === undefined || this.guard(() => this.soft(() => statement.run(now + seconds * 1000, seq, this.name, receiptHandle, now).changes)) !== 1) {
      throw new StaleReceiptError(receiptHandle)
    }
  }

  async maxAttempts(): Promise<number | undefined> {
    return this.settings.maxReceiveCount || undefined
  }

  async deadLetter(message: QueueMessage, reason: string): Promise<'dead-letter-queue' | 'redrive-policy'> {
    this.open()
    const seq = this.parseReceipt(message.receiptHandle)
    if (seq === undefined || this.guard(() => this.stmt.deadLetter.run(reason, Date.now(), seq, this.name, message.receiptHandle).changes) !== 1) {
      throw new StaleReceiptError(message.receiptHandle)
    }
    return 'dead-letter-queue'
  }

  private keepDeadNow(message: QueueMessage, reason: string): void {
    if (this.stmt.keptDead.get(this.name, message.id) !== undefined) return
    const now = Date.now()
    const {lastInsertRowid} = this.stmt.insertDead.run({
      queue: this.name,
      id: message.id,
      group: message.groupId ?? null,
      dedup: message.deduplicationId ?? null,
      sentAt: message.sentAt?.getTime() ?? now,
      receiveCount: message.receiveCount,
      reason,
      now,
    })
    this.stmt.insertBody.run(lastInsertRowid, message.body, Object.keys(message.attributes).length > 0 ? JSON.stringify(message.attributes) : null)
  }

  /**
   * Keeps a message received from elsewhere (the API Gateway facade) as a dead letter here, with
   * its reason; once per message id.
   */
  async keepDead(message: QueueMessage, reason: string): Promise<void> {
    this.open()
    this.guard(() => this.tx.keepDead.immediate(message, reason))
  }

  /** A plain read (no lock in WAL mode) on the group index. */
  async groupHasLiveMessages(groupId: string): Promise<boolean> {
    this.open()
    return this.guard(() => this.stmt.groupLive.get(this.name, groupId)) !== undefined
  }

  async peek(max = 10): Promise<QueueMessage[]> {
    this.open()
    const rows = this.guard(() => this.stmt.peek.all(this.name, Date.now(), Math.max(1, Math.floor(max))) as Array<MessageRow & BodyRow>)
    return rows.map((row) => toMessage(row, row, ''))
  }

  /** Dead messages with their reason in `attributes['cistern.deadReason']` (operator view). */
  async peekDead(max = 10): Promise<QueueMessage[]> {
    this.open()
    const rows = this.guard(() => this.stmt.peekDead.all(this.name, Math.max(1, Math.floor(max))) as Array<MessageRow & BodyRow>)
    return rows.map((row) => {
      const message = toMessage(row, row, '')
      if (row.dead_reason) message.attributes = {...message.attributes, 'cistern.deadReason': row.dead_reason}
      return message
    })
  }

  async stats(): Promise<QueueStats> {
    this.open()
    const now = Date.now()
    const row = this.guard(() => this.stmt.stats.get({queue: this.name, now})) as Pick<QueueStats, 'visible' | 'inFlight' | 'delayed' | 'dead'> & {oldestSentAt: number | null; nextVisibleAt: number | null}
    const stats: QueueStats = {visible: row.visible, inFlight: row.inFlight, delayed: row.delayed, dead: row.dead}
    if (row.oldestSentAt !== null) stats.oldestAgeSeconds = Math.max(0, Math.floor((now - row.oldestSentAt) / 1000))
    if (row.nextVisibleAt !== null) stats.nextVisibleAt = new Date(row.nextVisibleAt)
    return stats
  }

  async purge(): Promise<number> {
    this.open()
    const purged = this.guard(() => this.tx.purge.immediate())
    this.deletedSinceReclaim += purged
    this.reclaimAfterDrain()
    return purged
  }

  async redrive(): Promise<number> {
    this.open()
    return this.guard(() => this.tx.redrive.immediate())
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
  const code = typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : ''
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

/** The body of a message just leased (read in the same transaction, so it is there). */
function bodyOf(bodies: Map<number, BodyRow>, seq: number): BodyRow {
  const body = bodies.get(seq)
  if (!body) throw new CisternError(`the embedded queue lost the body of message ${seq} while leasing it`)
  return body
}

function toMessage(row: MessageRow, body: BodyRow, receiptHandle: string): QueueMessage {
  const message: QueueMessage = {
    id: row.id,
    body: body.body,
    receiptHandle,
    receiveCount: row.receive_count,
    attempts: row.receive_count - row.releases,
    sentAt: new Date(row.sent_at),
    attributes: body.attributes ? (JSON.parse(body.attributes) as Record<string, string>) : {},
  }
  if (row.group_id) message.groupId = row.group_id
  if (row.dedup_id) message.deduplicationId = row.dedup_id
  return message
}
