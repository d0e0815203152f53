import Database from 'better-sqlite3'
import {hostname} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import type {Response} from '../../src/sqs-listener/codec.js'
import {localOwnerPid, openRequestStore} from '../../src/sqs-listener/store.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-sqs-store-')
let n = 0
const final: Response = {job_name: 'j', request_id: 'r1', result: 'success', message: 'done'}

describe('request store', () => {
  it('claims once, answers a completed request from its stored response within the window, forgets after', () => {
    let now = 1_000_000
    const store = openRequestStore({path: join(dir, `s${++n}.db`), queue: 'q', windowMs: 60_000, now: () => now})
    expect(store.claim('r1', 'j', 10_000)).toEqual({kind: 'claimed'})
    expect(store.claim('r1', 'j', 10_000)).toMatchObject({kind: 'running'}) // by this very listener
    store.complete('r1', final)
    expect(store.claim('r1', 'j', 10_000)).toMatchObject({kind: 'completed', response: final})
    now += 61_000
    expect(store.prune()).toBe(1)
    expect(store.claim('r1', 'j', 10_000)).toEqual({kind: 'claimed'})
    store.close()
  })

  it('keeps request ids of different queues apart', () => {
    const path = join(dir, `s${++n}.db`)
    const a = openRequestStore({path, queue: 'qa', windowMs: 60_000})
    const b = openRequestStore({path, queue: 'qb', windowMs: 60_000})
    a.complete('r1', final)
    expect(b.claim('r1', 'j', 1000)).toEqual({kind: 'claimed'})
    a.close()
    b.close()
  })

  it('another listener (same file) sees a running claim until it is released or its lease lapses', () => {
    let now = 5_000_000
    const path = join(dir, `s${++n}.db`)
    const a = openRequestStore({path, queue: 'q', windowMs: 60_000, now: () => now})
    const b = openRequestStore({path, queue: 'q', windowMs: 60_000, now: () => now})
    expect(a.claim('r1', 'j', 10_000)).toEqual({kind: 'claimed'})
    expect(b.claim('r1', 'j', 10_000)).toMatchObject({kind: 'running'})
    a.renew('r1', 10_000)
    now += 9_000
    expect(b.claim('r1', 'j', 10_000)).toMatchObject({kind: 'running'})
    a.release('r1')
    expect(b.claim('r1', 'j', 10_000)).toEqual({kind: 'claimed'})
    // b holds it now; a's lease logic: b stops renewing → lapses
    now += 10_001
    expect(a.claim('r1', 'j', 10_000)).toEqual({kind: 'claimed', takenOverFrom: b.owner})
    a.close()
    b.close()
  })

  it('takes over a claim whose owner process on this host is gone (kill -9)', () => {
    const path = join(dir, `s${++n}.db`)
    const store = openRequestStore({path, queue: 'q', windowMs: 60_000})
    const db = new Database(path)
    db.prepare(
      `INSERT INTO sqs_listener_requests (queue, request_id, job_name, state, owner, lease_until, response, updated_at) VALUES ('q', 'r9', 'j', 'running', ?, ?, NULL, ?)`,
    ).run(`${hostname()}:2147483646:dead`, Date.now() + 600_000, Date.now())
    db.close()
    expect(store.claim('r9', 'j', 10_000)).toEqual({kind: 'claimed', takenOverFrom: `${hostname()}:2147483646:dead`})
    expect(localOwnerPid(`${hostname()}:2147483646:dead`)).toBe(2147483646)
    expect(localOwnerPid('other-host:12:x')).toBeUndefined()
    store.close()
  })

  it('lists the running claims of listeners on this host that are gone (their jobs are orphans), not of live ones', () => {
    const path = join(dir, `s${++n}.db`)
    const store = openRequestStore({path, queue: 'q', windowMs: 60_000})
    const other = openRequestStore({path, queue: 'other-queue', windowMs: 60_000})
    const db = new Database(path)
    const insert = db.prepare(
      `INSERT INTO sqs_listener_requests (queue, request_id, job_name, state, owner, lease_until, response, updated_at) VALUES (?, ?, 'j', 'running', ?, ?, NULL, ?)`,
    )
    const dead = `${hostname()}:2147483646:dead`
    insert.run('q', 'orphaned', dead, Date.now() + 600_000, Date.now())
    insert.run('q', 'elsewhere', 'other-host:12:x', Date.now() + 600_000, Date.now())
    insert.run('other-queue', 'not-this-queue', dead, Date.now() + 600_000, Date.now())
    db.close()
    expect(store.claim('mine', 'j', 10_000)).toEqual({kind: 'claimed'})
    expect(store.abandoned()).toEqual([{requestId: 'orphaned', owner: dead}])
    store.close()
    other.close()
  })

  it('a stored response it cannot read is not answered again: the request is claimed and run', () => {
    const path = join(dir, `s${++n}.db`)
    const store = openRequestStore({path, queue: 'q', windowMs: 60_000})
    const db = new Database(path)
    db.prepare(
      `INSERT INTO sqs_listener_requests (queue, request_id, job_name, state, owner, lease_until, response, updated_at) VALUES ('q', 'r5', 'j', 'completed', NULL, NULL, ?, ?)`,
    ).run(JSON.stringify({job_name: 'j', result: 'maybe'}), Date.now())
    db.close()
    expect(store.claim('r5', 'j', 10_000)).toEqual({kind: 'claimed'})
    store.close()
  })
})
