/**
 * Which requests are running and which were completed recently, per request queue, in a SQLite
 * file (by default the embedded queue's cistern.db) so that every listener on this host shares it:
 * - a request_id completed within the window is answered again from the stored final response,
 *   never run twice (SQS may deliver a message twice; a crash may come between the final
 *   response and the delete);
 * - a request_id running here (or in another listener on this host) is not started again.
 * Claims are leases renewed while the job runs; a claim whose owner process is gone (kill -9)
 * or whose lease lapsed can be taken over.
 */
import Database from 'better-sqlite3'
import {mkdirSync} from 'node:fs'
import {hostname} from 'node:os'
import {dirname} from 'node:path'
import {randomUUID} from 'node:crypto'

import {responseSchema, type Response} from './codec.js'

export type Claim = {kind: 'claimed'; takenOverFrom?: string} | {kind: 'completed'; response: Response; completedAt: Date} | {kind: 'running'; owner: string; leaseUntil: Date}

export interface RequestStore {
  /** This listener's id in claims (`<host>:<pid>:<random>`); its jobs get it as CISTERN_LISTENER_ID. */
  readonly owner: string
  /** Take the request for this listener, or say who has it / what it answered. */
  claim(requestId: string, jobName: string, leaseMs: number): Claim
  renew(requestId: string, leaseMs: number): void
  /** The job ended: keep its final response for the window. */
  complete(requestId: string, response: Response): void
  /**
   * Let the lease lapse now while still marked running (the stop deadline passed and the job is
   * being killed): another listener may take the request over, stopping what is left of the job first.
   */
  expire(requestId: string): void
  /** Give the request up (stopping, or the started response could not be sent). */
  release(requestId: string): void
  /**
   * Requests marked running by a listener on this host that is gone (kill -9): their jobs may
   * still run as orphans. Found at start-up so they are stopped before anything reruns them.
   */
  abandoned(): Array<{requestId: string; owner: string}>
  /** Drop completed entries older than the window; returns how many. */
  prune(): number
  close(): void
}

interface Row {
  state: 'running' | 'completed'
  owner: string | null
  lease_until: number | null
  response: string | null
  updated_at: number
}

export interface StoreOptions {
  /** File path or ':memory:'. */
  path: string
  /** Identifies the request queue: request ids are unique per queue. */
  queue: string
  windowMs: number
  now?: () => number
}

/** `<host>:<pid>:…` of a claim owner on this host, else undefined. */
export function localOwnerPid(owner: string): number | undefined {
  const [ownerHost, pid = ''] = owner.split(':')
  return ownerHost === hostname() && /^\d+$/.test(pid) ? Number(pid) : undefined
}

/** Whether a listener on this host with this pid still runs (EPERM: it does, as another user). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function openRequestStore(options: StoreOptions): RequestStore {
  if (options.path !== ':memory:') mkdirSync(dirname(options.path), {recursive: true})
  const db = new Database(options.path)
  db.pragma('journal_mode = WAL')
  db.pragma('busy_timeout = 10000')
  // WAL + NORMAL survives a crash of the process (what the window guards against); a power loss
  // may forget the last completions, and those requests are then run again, not lost.
  db.pragma('synchronous = NORMAL')
  db.exec(`CREATE TABLE IF NOT EXISTS sqs_listener_requests (
    queue TEXT NOT NULL,
    request_id TEXT NOT NULL,
    job_name TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT,
    lease_until INTEGER,
    response TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (queue, request_id)
  )`)
  const now = options.now ?? Date.now
  const host = hostname()
  const me = `${host}:${process.pid}:${randomUUID().slice(0, 8)}`
  const select = db.prepare<[string, string], Row>('SELECT state, owner, lease_until, response, updated_at FROM sqs_listener_requests WHERE queue = ? AND request_id = ?')
  const upsertRunning = db.prepare(
    `INSERT INTO sqs_listener_requests (queue, request_id, job_name, state, owner, lease_until, response, updated_at)
     VALUES (@queue, @id, @job, 'running', @owner, @lease, NULL, @now)
     ON CONFLICT (queue, request_id) DO UPDATE SET job_name = @job, state = 'running', owner = @owner, lease_until = @lease, response = NULL, updated_at = @now`,
  )
  const renew = db.prepare(`UPDATE sqs_listener_requests SET lease_until = ?, updated_at = ? WHERE queue = ? AND request_id = ? AND owner = ? AND state = 'running'`)
  const complete = db.prepare(
    `INSERT INTO sqs_listener_requests (queue, request_id, job_name, state, owner, lease_until, response, updated_at)
     VALUES (@queue, @id, @job, 'completed', NULL, NULL, @response, @now)
     ON CONFLICT (queue, request_id) DO UPDATE SET job_name = @job, state = 'completed', owner = NULL, lease_until = NULL, response = @response, updated_at = @now`,
  )
  const expire = db.prepare(`UPDATE sqs_listener_requests SET lease_until = 0 WHERE queue = ? AND request_id = ? AND owner = ? AND state = 'running'`)
  const release = db.prepare(`DELETE FROM sqs_listener_requests WHERE queue = ? AND request_id = ? AND owner = ? AND state = 'running'`)
  const prune = db.prepare(`DELETE FROM sqs_listener_requests WHERE queue = ? AND state = 'completed' AND updated_at < ?`)
  const running = db.prepare<[string], {request_id: string; owner: string}>(
    `SELECT request_id, owner FROM sqs_listener_requests WHERE queue = ? AND state = 'running' AND owner IS NOT NULL`,
  )

  const ownerAlive = (owner: string): boolean => {
    if (owner === me) return true
    const pid = localOwnerPid(owner)
    // Another host: cannot tell, trust the lease.
    return pid === undefined || processAlive(pid)
  }
  // A stored response is data from outside this process (another version may have written it).
  const storedResponse = (text: string): Response | undefined => {
    try {
      const parsed = responseSchema.safeParse(JSON.parse(text))
      return parsed.success ? parsed.data : undefined
    } catch {
      return undefined
    }
  }

  const claim = db.transaction((requestId: string, jobName: string, leaseMs: number): Claim => {
    const at = now()
    const row = select.get(options.queue, requestId)
    const response = row?.state === 'completed' && row.updated_at >= at - options.windowMs && row.response ? storedResponse(row.response) : undefined
    if (row && response) return {kind: 'completed', response, completedAt: new Date(row.updated_at)}
    if (row?.state === 'running' && row.owner && (row.lease_until ?? 0) > at && ownerAlive(row.owner)) {
      return {kind: 'running', owner: row.owner, leaseUntil: new Date(row.lease_until ?? 0)}
    }
    upsertRunning.run({queue: options.queue, id: requestId, job: jobName, owner: me, lease: at + leaseMs, now: at})
    return row?.state === 'running' && row.owner && row.owner !== me ? {kind: 'claimed', takenOverFrom: row.owner} : {kind: 'claimed'}
  })

  return {
    owner: me,
    // IMMEDIATE: two listeners racing for one request_id serialise on the write lock.
    claim: (requestId, jobName, leaseMs) => claim.immediate(requestId, jobName, leaseMs),
    renew: (requestId, leaseMs) => {
      renew.run(now() + leaseMs, now(), options.queue, requestId, me)
    },
    complete: (requestId, response) => {
      complete.run({queue: options.queue, id: requestId, job: response.job_name, response: JSON.stringify(response), now: now()})
    },
    expire: (requestId) => {
      expire.run(options.queue, requestId, me)
    },
    release: (requestId) => {
      release.run(options.queue, requestId, me)
    },
    abandoned: () => running.all(options.queue).filter(({owner}) => localOwnerPid(owner) !== undefined && !ownerAlive(owner)).map(({request_id: requestId, owner}) => ({requestId, owner})),
    prune: () => prune.run(options.queue, now() - options.windowMs).changes,
    close: () => db.close(),
  }
}
