import {randomUUID} from 'node:crypto'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {ActionError} from '../../src/hooks/actions.js'
import type {ActionAttempt} from '../../src/hooks/actions.js'
import type {Execution, Task} from '../../src/hooks/model.js'
import {Scheduler, nextRun, validateSchedule} from '../../src/hooks/scheduler.js'
import {openStore} from '../../src/hooks/store/index.js'
import type {HooksStore} from '../../src/hooks/store/types.js'
import {delivered} from '../../src/core/delivery.js'
import {backoffDelay} from '../../src/core/loop.js'
import {Worker} from '../../src/hooks/worker.js'
import {standIn} from '../helpers/http.js'
import {tempDir} from '../helpers/tmp.js'
import {startService, until} from './helpers.js'

const dir = tempDir('cistern-hooks-scheduler-')
const at = (iso: string) => new Date(iso).getTime()
const iso = (ms: number | undefined) => new Date(ms ?? Number.NaN).toISOString()

describe('cron and time zones', () => {
  it('follows the wall clock of the task time zone across DST changes', () => {
    const paris = {cron: '0 9 * * *', timezone: 'Europe/Paris'}
    // CET (UTC+1) until the last Sunday of March, then CEST (UTC+2)
    expect(iso(nextRun(paris, at('2026-03-28T12:00:00Z')))).toBe('2026-03-29T07:00:00.000Z')
    expect(iso(nextRun(paris, at('2026-03-27T12:00:00Z')))).toBe('2026-03-28T08:00:00.000Z')
    // and back in October
    expect(iso(nextRun(paris, at('2026-10-24T12:00:00Z')))).toBe('2026-10-25T08:00:00.000Z')
    expect(iso(nextRun(paris, at('2026-10-23T12:00:00Z')))).toBe('2026-10-24T07:00:00.000Z')
    const newYork = {cron: '0 12 * * *', timezone: 'America/New_York'}
    expect(iso(nextRun(newYork, at('2026-03-07T18:00:00Z')))).toBe('2026-03-08T16:00:00.000Z')
    expect(iso(nextRun(newYork, at('2026-03-06T18:00:00Z')))).toBe('2026-03-07T17:00:00.000Z')
  })

  it('accepts an optional seconds field', () => {
    expect(iso(nextRun({cron: '*/15 * * * * *', timezone: 'UTC'}, at('2026-01-01T00:00:01Z')))).toBe('2026-01-01T00:00:15.000Z')
    expect(iso(nextRun({cron: '*/5 * * * *', timezone: 'UTC'}, at('2026-01-01T00:00:01Z')))).toBe('2026-01-01T00:05:00.000Z')
  })

  it('names what is wrong with a schedule', () => {
    expect(() => validateSchedule('0 9 * * *', 'Europe/Paris')).not.toThrow()
    expect(() => validateSchedule('0 9 * * *', 'Europe/Atlantis')).toThrow(/unknown time zone "Europe\/Atlantis"/)
    expect(() => validateSchedule('0 25 * * *', 'UTC')).toThrow(/bad cron "0 25 \* \* \*"/)
    expect(() => validateSchedule('every day', 'UTC')).toThrow(/expected 5 fields/)
    expect(() => validateSchedule('1 2 3 4 5 6 7', 'UTC')).toThrow(/expected 5 fields/)
  })

  it('doubles the retry delay up to a cap (the core back-off, at the top of its jitter)', () => {
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, {baseMs: 1000, maxMs: 5000, random: () => 1}))).toEqual([1000, 2000, 4000, 5000])
  })
})

describe('scheduler and worker on a controllable clock', () => {
  const stores: HooksStore[] = []
  afterAll(async () => {
    for (const store of stores) await store.close()
  })

  async function setup(config: Partial<Extract<Task, {type: 'scheduler'}>['config']> = {}, fail = 0) {
    const store = await openStore(`sqlite:${join(dir, `${randomUUID()}.db`)}`)
    stores.push(store)
    const clock = {t: at('2026-03-28T12:00:00Z'), now: () => clock.t}
    const calls: Array<{at: number; execution: Execution}> = []
    // The first execution fails `fail` times; the others succeed.
    let failures = fail
    const actions = {
      async run(_task: Task, execution: Execution): Promise<ActionAttempt> {
        calls.push({at: clock.t, execution})
        if (execution.timestamp === calls[0]!.execution.timestamp && failures-- > 0) throw new ActionError('HTTP 503')
        return {outcome: delivered(), result: {status: 200, duration_ms: 0}}
      },
    }
    const task: Task = {
      uuid: randomUUID(),
      type: 'scheduler',
      config: {cron: '0 9 * * *', timezone: 'Europe/Paris', payload: {job: 'nightly'}, action: {type: 'http', url: 'http://127.0.0.1:9/'}, ...config},
      stopped: false,
      created_at: clock.t,
      updated_at: clock.t,
    }
    await store.createTask(task)
    const scheduler = new Scheduler(store, {clock, planMs: 0})
    // random: 1 takes the top of the back-off's jitter: 60 s, then 120 s
    const worker = new Worker(store, actions, {clock, retryDelayMs: 60_000, retryMax: 3, random: () => 1})
    return {store, clock, calls, task, scheduler, worker}
  }

  it('plans the next run, enqueues it when due, and plans the one after (across the DST change)', async () => {
    const {store, clock, calls, task, scheduler, worker} = await setup()
    expect(await scheduler.tick()).toEqual({enqueued: 0, planned: 1})
    const planned = (await store.plannedExecutions(task.uuid))[0]!
    expect(planned).toMatchObject({status: 'SCHEDULED', scheduled_date: '2026-03-29T07:00:00.000Z', payload: {job: 'nightly'}})
    expect(planned.timestamp).toBe(at('2026-03-29T07:00:00Z') * 1000)
    expect(await scheduler.tick()).toEqual({enqueued: 0, planned: 0})

    clock.t = at('2026-03-29T06:59:59.900Z')
    await scheduler.tick()
    expect(await worker.processOne()).toBe(false)

    clock.t = at('2026-03-29T07:00:00.200Z')
    expect(await scheduler.tick()).toEqual({enqueued: 1, planned: 1})
    expect((await store.plannedExecutions(task.uuid)).map((e) => e.scheduled_date)).toEqual(['2026-03-30T07:00:00.000Z'])
    expect(await worker.processOne()).toBe(true)
    expect(calls.map((c) => c.execution.scheduled_date)).toEqual(['2026-03-29T07:00:00.000Z'])
    expect(calls[0]!.execution.payload).toEqual({job: 'nightly'})
    expect(await store.getExecution(task.uuid, planned.timestamp)).toMatchObject({status: 'DONE', result: {status: 200}})
  })

  it('retries a failed run after the back-off, on the same clock', async () => {
    const {store, clock, calls, task, scheduler, worker} = await setup({cron: '*/10 * * * * *', timezone: 'UTC'}, 2)
    await scheduler.tick()
    clock.t += 10_000
    await scheduler.tick()
    expect(await worker.processOne()).toBe(true)
    const first = calls[0]!.execution
    expect(await store.getExecution(task.uuid, first.timestamp)).toMatchObject({status: 'SCHEDULED', nb_errors: 1, due_at: clock.t + 60_000})
    clock.t += 59_000
    await scheduler.tick()
    // only the next planned runs are due, not the retry
    const due = calls.length
    while (await worker.processOne());
    expect(calls.filter((c) => c.execution.timestamp === first.timestamp).length).toBe(1)
    clock.t += 1000
    await scheduler.tick()
    while (await worker.processOne());
    expect(calls.filter((c) => c.execution.timestamp === first.timestamp).length).toBe(2)
    expect(calls.length).toBeGreaterThan(due)
    expect(await store.getExecution(task.uuid, first.timestamp)).toMatchObject({status: 'SCHEDULED', nb_errors: 2, due_at: clock.t + 120_000})
  })

  it('drops the planned run of a stopped task, and replaces it when the cron changes', async () => {
    const {store, clock, task, scheduler} = await setup()
    await scheduler.tick()
    const planned = (await store.plannedExecutions(task.uuid))[0]!
    await store.updateTask({...task, stopped: true})
    await scheduler.tick()
    expect(await store.plannedExecutions(task.uuid)).toEqual([])
    expect(await store.getExecution(task.uuid, planned.timestamp)).toMatchObject({status: 'DONE', stopped: true})
    clock.t = at('2026-03-29T08:00:00Z')
    expect((await scheduler.tick()).enqueued).toBe(0)

    await store.updateTask({...task, stopped: false, config: {...task.config, cron: '30 18 * * *'}})
    await scheduler.tick()
    expect((await store.plannedExecutions(task.uuid)).map((e) => e.scheduled_date)).toEqual(['2026-03-29T16:30:00.000Z'])
    await store.updateTask({...task, config: {...task.config, cron: '0 20 * * *'}})
    await scheduler.tick()
    expect((await store.plannedExecutions(task.uuid)).map((e) => e.scheduled_date)).toEqual(['2026-03-29T18:00:00.000Z'])
  })
})

describe('scheduler in the service (real clock)', () => {
  it('runs a task with a seconds field within about a second of its time', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const service = await startService(dir)
    const created = await service.api('POST', '/task', {
      type: 'scheduler',
      config: {cron: '* * * * * *', payload: {hello: 'world'}, action: {type: 'http', url: target.url}},
    })
    expect(created.status).toBe(201)
    await until(() => target.requests.length >= 2, 5000, 'two runs')
    const first = target.requests[0]!
    expect(JSON.parse(first.body.toString())).toEqual({hello: 'world'})
    expect(first.headers['content-type']).toBe('application/json')
    const executions = (await service.api('GET', `/task/${created.body.uuid}/execution`)).body as Execution[]
    const done = executions.filter((e) => e.status === 'DONE')
    expect(done.length).toBeGreaterThanOrEqual(1)
    for (const e of done) expect(e.processing_timestamp! - at(e.scheduled_date!)).toBeLessThan(1500)
    await service.api('POST', `/task/${created.body.uuid}/stop`)
  })
})
