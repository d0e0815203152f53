import {randomUUID} from 'node:crypto'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {Execution, Task} from '../../src/hooks/model.js'
import {openStore} from '../../src/hooks/store/index.js'
import {type HooksStore, TaskExistsError} from '../../src/hooks/store/types.js'
import {type RedisServer, hasRedisServer, startRedis} from '../helpers/redis.js'
import {tempDir} from '../helpers/tmp.js'

/** One contract, two stores: everything the routines rely on behaves the same on SQLite and Redis. */
const dir = tempDir('cistern-hooks-store-')
let redis: RedisServer | undefined

beforeAll(async () => {
  if (hasRedisServer()) redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

/** A store, a second connection to it, and a way to spoil one execution's record (as a hand edit would). */
type Factory = () => Promise<{store: HooksStore; twin: () => Promise<HooksStore>; spoil: (execution: Execution) => Promise<void>}>

const factories: Array<[string, Factory]> = [
  [
    'sqlite',
    async () => {
      const file = join(dir, `${randomUUID()}.db`)
      const url = `sqlite:${file}`
      const spoil = async (execution: Execution) => {
        const {default: Database} = await import('better-sqlite3')
        const db = new Database(file)
        db.prepare('UPDATE hooks_executions SET json = ? WHERE task_uuid = ? AND ts = ?').run('{"status":"ENQUEUED","nb_errors":"many"', execution.task_uuid, execution.timestamp)
        db.close()
      }
      return {store: await openStore(url), twin: () => openStore(url), spoil}
    },
  ],
  [
    'redis',
    async () => {
      if (!redis) throw new Error('redis-server is not installed: apt-get install -y redis-server')
      const prefix = `t${randomUUID().slice(0, 8)}`
      const spoil = async (execution: Execution) => {
        const {Redis} = await import('ioredis')
        const client = new Redis(redis!.url)
        await client.set(`${prefix}:tasks:executions:${execution.type}:${execution.task_uuid}:${execution.timestamp}`, '{"status":"ENQUEUED","nb_errors":"many"')
        client.disconnect()
      }
      return {store: await openStore(redis.url, {prefix}), twin: () => openStore(redis!.url, {prefix}), spoil}
    },
  ],
]

function webhookTask(overrides: Partial<Task> = {}): Task {
  return {
    uuid: randomUUID(),
    type: 'webhook',
    config: {method: 'POST', action: {type: 'http', url: 'http://127.0.0.1:9/'}},
    stopped: false,
    created_at: 1,
    updated_at: 1,
    ...overrides,
  } as Task
}

function execution(task: Task, timestamp: number, overrides: Partial<Execution> = {}): Execution {
  return {task_uuid: task.uuid, type: task.type, timestamp, status: 'ENQUEUED', nb_errors: 0, created_at: 1, ...overrides}
}

describe.each(factories)('hooks store contract: %s', (_name, factory) => {
  const opened: HooksStore[] = []
  const open = async () => {
    const made = await factory()
    opened.push(made.store)
    return {
      store: made.store,
      spoil: made.spoil,
      twin: async () => {
        const other = await made.twin()
        opened.push(other)
        return other
      },
    }
  }
  afterAll(async () => {
    for (const store of opened) await store.close()
  })

  it('keeps tasks in creation order, refuses a duplicate uuid, updates and deletes', async () => {
    const {store} = await open()
    const tasks = [webhookTask({name: 'b'}), webhookTask({name: 'a'}), webhookTask({name: 'c'})]
    for (const task of tasks) await store.createTask(task)
    expect((await store.listTasks()).map((t) => t.name)).toEqual(['b', 'a', 'c'])
    await expect(store.createTask(tasks[0]!)).rejects.toBeInstanceOf(TaskExistsError)
    expect(await store.updateTask({...tasks[1]!, stopped: true})).toBe(true)
    expect((await store.getTask(tasks[1]!.uuid))?.stopped).toBe(true)
    expect(await store.updateTask(webhookTask())).toBe(false)
    await store.insertExecution(execution(tasks[0]!, 100))
    expect(await store.deleteTask(tasks[0]!.uuid)).toBe(true)
    expect(await store.deleteTask(tasks[0]!.uuid)).toBe(false)
    expect(await store.getTask(tasks[0]!.uuid)).toBeUndefined()
    expect(await store.listExecutions(tasks[0]!.uuid)).toEqual([])
    // Its queued execution points at nothing now: claiming skips it.
    expect(await store.claim(10, 1000)).toBeUndefined()
  })

  it('queues executions in order and claims each once, DOING under a lease', async () => {
    const {store} = await open()
    const task = webhookTask()
    await store.createTask(task)
    for (const ts of [300, 100, 200]) await store.insertExecution(execution(task, ts))
    expect(await store.queueLength()).toBe(3)
    const first = await store.claim(1000, 5000)
    expect(first).toMatchObject({timestamp: 300, status: 'DOING', processing_timestamp: 1000})
    expect((await store.claim(1000, 5000))?.timestamp).toBe(100)
    expect((await store.claim(1000, 5000))?.timestamp).toBe(200)
    expect(await store.claim(1000, 5000)).toBeUndefined()
    expect(await store.queueLength()).toBe(0)
    expect(await store.countExecutions(task.uuid)).toEqual({total: 3, todo: 3})
    expect(await store.finish({...first!, result: {status: 200, duration_ms: 3}, done_at: 1001})).toBe(true)
    const done = await store.getExecution(task.uuid, 300)
    expect(done).toMatchObject({status: 'DONE', result: {status: 200}, done_at: 1001})
    expect(await store.countExecutions(task.uuid)).toEqual({total: 3, todo: 2})
    expect((await store.listExecutions(task.uuid)).map((e) => e.timestamp)).toEqual([300, 200, 100])
    expect((await store.listExecutions(task.uuid, {limit: 1})).map((e) => e.timestamp)).toEqual([300])
  })

  it('bumps a clashing timestamp, and keeps the first with ifAbsent', async () => {
    const {store} = await open()
    const task = webhookTask()
    await store.createTask(task)
    const a = await store.insertExecution(execution(task, 500))
    const b = await store.insertExecution(execution(task, 500))
    expect([a?.timestamp, b?.timestamp]).toEqual([500, 501])
    const planned = execution(task, 900, {status: 'SCHEDULED', due_at: 900})
    expect(await store.insertExecution(planned, {ifAbsent: true})).toBeDefined()
    expect(await store.insertExecution({...planned, payload: 'other'}, {ifAbsent: true})).toBeUndefined()
    // many at once (the SQLite store commits them together)
    const many = await Promise.all(Array.from({length: 50}, () => store.insertExecution(execution(task, 1000))))
    expect(new Set(many.map((e) => e!.timestamp)).size).toBe(50)
  })

  it('reschedules a failed attempt and enqueues it when due', async () => {
    const {store} = await open()
    const task = webhookTask()
    await store.createTask(task)
    await store.insertExecution(execution(task, 10))
    const claimed = (await store.claim(1000, 5000))!
    expect(await store.reschedule({...claimed, nb_errors: 1, last_error: 'HTTP 500', due_at: 2000})).toBe(true)
    expect(await store.getExecution(task.uuid, 10)).toMatchObject({status: 'SCHEDULED', nb_errors: 1, due_at: 2000})
    expect(await store.enqueueDue(1999)).toEqual([])
    expect(await store.claim(1999, 5000)).toBeUndefined()
    const moved = await store.enqueueDue(2000)
    expect(moved.map((e) => e.timestamp)).toEqual([10])
    expect((await store.getExecution(task.uuid, 10))?.status).toBe('ENQUEUED')
    const again = await store.claim(2000, 5000)
    expect(again).toMatchObject({timestamp: 10, nb_errors: 1, last_error: 'HTTP 500', status: 'DOING'})
    // a planned run is not listed once enqueued
    expect(await store.plannedExecutions(task.uuid)).toEqual([])
  })

  it('recovers an execution whose lease lapsed, and the old claim can no longer write', async () => {
    const {store} = await open()
    const task = webhookTask()
    await store.createTask(task)
    await store.insertExecution(execution(task, 1))
    await store.insertExecution(execution(task, 2))
    const lost = (await store.claim(1000, 100))!
    expect(await store.heartbeat(lost, 1050, 100)).toBe(true)
    expect(await store.recoverExpired(1100, 100)).toBe(0)
    // The instance died: no heartbeat, the lease (and the Redis lock) lapse.
    await new Promise((resolve) => setTimeout(resolve, 150))
    expect(await store.recoverExpired(1200, 100)).toBe(1)
    // Back at the front of the queue, before execution 2.
    const recovered = (await store.claim(1300, 5000))!
    expect(recovered.timestamp).toBe(1)
    expect(await store.finish({...lost, done_at: 1})).toBe(false)
    expect(await store.finish({...recovered, done_at: 2})).toBe(true)
    expect((await store.getExecution(task.uuid, 1))?.done_at).toBe(2)
  })

  it('stops exactly one execution', async () => {
    const {store} = await open()
    const task = webhookTask()
    await store.createTask(task)
    for (const ts of [1, 2, 3]) await store.insertExecution(execution(task, ts))
    const running = (await store.claim(10, 5000))!
    expect(await store.stopExecution(task.uuid, 2, 20)).toBe('stopped')
    expect(await store.getExecution(task.uuid, 2)).toMatchObject({status: 'DONE', stopped: true, last_error: 'stopped by operator'})
    expect(await store.stopExecution(task.uuid, running.timestamp, 20)).toBe('stopping')
    expect(await store.stopRequested(running)).toBe(true)
    expect(await store.stopRequested({...running, timestamp: 3})).toBe(false)
    expect(await store.stopExecution(task.uuid, 2, 20)).toBe('already-done')
    expect(await store.stopExecution(task.uuid, 99, 20)).toBe('unknown')
    // 3 is untouched and still claimable; 2 is not
    expect((await store.claim(30, 5000))?.timestamp).toBe(3)
    expect(await store.claim(30, 5000)).toBeUndefined()
  })

  it('cleans all but the newest N finished executions, never pending ones', async () => {
    const {store} = await open()
    const task = webhookTask()
    await store.createTask(task)
    for (let ts = 1; ts <= 6; ts++) await store.insertExecution(execution(task, ts))
    for (let i = 0; i < 5; i++) {
      const claimed = (await store.claim(10, 5000))!
      await store.finish({...claimed, done_at: 11})
    }
    expect(await store.clean(task.uuid, 2)).toBe(3)
    expect((await store.listExecutions(task.uuid)).map((e) => [e.timestamp, e.status])).toEqual([
      [6, 'ENQUEUED'],
      [5, 'DONE'],
      [4, 'DONE'],
    ])
    expect(await store.clean(task.uuid, 2)).toBe(0)
  })

  it('lists planned runs of a task', async () => {
    const {store} = await open()
    const task: Task = {...webhookTask(), type: 'scheduler', config: {cron: '* * * * *', timezone: 'UTC', action: {type: 'http', url: 'http://127.0.0.1:9/'}}}
    await store.createTask(task)
    await store.insertExecution(execution(task, 60_000_000, {status: 'SCHEDULED', due_at: 60_000, scheduled_date: new Date(60_000).toISOString()}))
    expect((await store.plannedExecutions(task.uuid)).map((e) => e.due_at)).toEqual([60_000])
  })

  it('shares the maintenance flag between instances', async () => {
    const {store, twin} = await open()
    const other = await twin()
    const seen: boolean[] = []
    await other.subscribe?.({maintenance: (enabled) => seen.push(enabled)})
    expect(await store.getMaintenance()).toBe(false)
    await store.setMaintenance(true)
    expect(await other.getMaintenance()).toBe(true)
    await store.setMaintenance(false)
    expect(await other.getMaintenance()).toBe(false)
    if (store.kind === 'redis') {
      await expect.poll(() => seen, {timeout: 2000}).toEqual([true, false])
    }
  })

  it('takes a record it cannot read out of the work queue, names it, and goes on with the next', async () => {
    const {store, spoil} = await open()
    const task = webhookTask()
    await store.createTask(task)
    const bad = (await store.insertExecution(execution(task, 1)))!
    await store.insertExecution(execution(task, 2))
    await spoil(bad)
    await expect(store.claim(10, 5000)).rejects.toThrow(new RegExp(`unreadable hooks record .*${task.uuid}.*1`))
    expect((await store.claim(10, 100))?.timestamp).toBe(2)
    expect(await store.claim(10, 5000)).toBeUndefined()
    // the spoilt one is not recovered with the lapsed lease of the other (Redis' lock lapses in real time)
    await new Promise((resolve) => setTimeout(resolve, 150))
    expect(await store.recoverExpired(1_000_000, 100)).toBe(1)
    expect((await store.claim(1_000_000, 5000))?.timestamp).toBe(2)
  })

  it('intake sees at once a task that another connection stopped, changed or deleted', async () => {
    const {store, twin} = await open()
    const other = await twin()
    const task = webhookTask()
    await store.createTask(task)
    const webhook = (ts: number, method = 'POST') => execution(task, ts, {request: {method, headers: {}, raw_body: '', query: {}}})
    expect((await store.intake(webhook(1))).outcome).toBe('accepted')
    await other.updateTask({...task, stopped: true})
    expect((await store.intake(webhook(2))).outcome).toBe('stopped')
    await other.updateTask({...task, config: {...task.config, method: 'PUT'}} as Task)
    expect(await store.intake(webhook(3))).toEqual({outcome: 'wrong-method', allowed: 'PUT'})
    await other.deleteTask(task.uuid)
    expect((await store.intake(webhook(4, 'PUT'))).outcome).toBe('unknown')
  })

  it('never hands one execution to two instances claiming at once', async () => {
    const {store, twin} = await open()
    const other = await twin()
    const task = webhookTask()
    await store.createTask(task)
    await Promise.all(Array.from({length: 60}, (_, i) => store.insertExecution(execution(task, i + 1))))
    const claimed: number[] = []
    const drain = async (s: HooksStore) => {
      for (let i = 0; i < 200; i++) {
        const e = await s.claim(100, 10_000)
        if (!e) return
        claimed.push(e.timestamp)
        await s.finish({...e, done_at: 101})
      }
    }
    await Promise.all([drain(store), drain(other), drain(store), drain(other)])
    expect(claimed.length).toBe(60)
    expect(new Set(claimed).size).toBe(60)
    expect(await store.countExecutions(task.uuid)).toEqual({total: 60, todo: 0})
  })
})

describe('opening a store', () => {
  it('names what is wrong with a store URL', async () => {
    await expect(openStore('ftp://example.com/x')).rejects.toThrow(/unknown hooks store "ftp:\/\/example.com\/x"/)
    await expect(openStore(`sqlite:${join(dir, 'x.db')}?synchronous=sometimes`)).rejects.toThrow(/bad synchronous=sometimes/)
    await expect(openStore('redis://127.0.0.1:9/0')).rejects.toThrow(/cannot reach Redis at redis:\/\/127.0.0.1:9\/0/)
    await expect(openStore('redis://:hunter2secret@127.0.0.1:9/0')).rejects.not.toThrow(/hunter2secret/)
  })

  it('keeps its tables in the shared db file, prefixed hooks_', async () => {
    const file = join(dir, 'shared.db')
    const store = await openStore(`sqlite:${file}?synchronous=normal`)
    await store.close()
    const {default: Database} = await import('better-sqlite3')
    const db = new Database(file, {readonly: true})
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as Array<{name: string}>
    db.close()
    expect(tables.map((t) => t.name).filter((n) => !n.startsWith('sqlite_'))).toEqual(['hooks_executions', 'hooks_meta', 'hooks_tasks'])
  })
})
