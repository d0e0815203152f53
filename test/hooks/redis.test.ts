import {randomUUID} from 'node:crypto'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {openStore} from '../../src/hooks/store/index.js'
import {standIn} from '../helpers/http.js'
import {type RedisServer, startRedis} from '../helpers/redis.js'
import {tempDir} from '../helpers/tmp.js'
import {startService, until, webhookTask} from './helpers.js'

/** Several instances on one real Redis, and Redis going away mid-load. */
const dir = tempDir('cistern-hooks-redis-')
let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis.stop()
})

const executionsSeen = (requests: Array<{headers: Record<string, unknown>}>) => requests.map((r) => String(r.headers['x-cistern-hooks-execution']))

describe('hooks service on Redis', () => {
  it('two instances process every execution exactly once', async () => {
    const target = await standIn(async (_req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 2))
      res.end('ok')
    })
    afterAll(() => target.close())
    const prefix = `two-${randomUUID().slice(0, 8)}`
    const a = await startService(dir, {store: redis.url, storePrefix: prefix, concurrency: 4})
    const b = await startService(dir, {store: redis.url, storePrefix: prefix, concurrency: 4})
    const {body: task} = await a.api('POST', '/task', webhookTask(target.url))
    expect((await b.api('GET', `/task/${task.uuid}`)).status).toBe(200)

    const accepted: string[] = []
    await Promise.all(
      Array.from({length: 10}, async (_, lane) => {
        for (let i = 0; i < 12; i++) {
          const via = (lane + i) % 2 ? a : b
          const r = await fetch(`${via.url}/webhook/${task.uuid}`, {method: 'POST', body: `${lane}-${i}`})
          expect(r.status).toBe(202)
          accepted.push(String(((await r.json()) as {execution: number}).execution))
        }
      }),
    )
    expect(new Set(accepted).size).toBe(120)
    await until(() => target.requests.length >= 120, 10_000, '120 forwards')
    await until(async () => (await a.api('GET', `/task/${task.uuid}`)).body.nb_executions_todo === 0, 5000, 'all DONE')
    await new Promise((resolve) => setTimeout(resolve, 200))
    const seen = executionsSeen(target.requests)
    expect(seen.length).toBe(120)
    expect(new Set(seen)).toEqual(new Set(accepted))
    expect((await a.api('GET', '/mon/status')).body).toMatchObject({queue_length: 0, store: {kind: 'redis'}})
    // both instances did a share of the work (each has 4 slots on the same queue), and the shares add up
    const done = async (url: string) => Number(/cistern_hooks_executions_total\{outcome="done"\} (\d+)/.exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? 0)
    const [doneA, doneB] = [await done(a.url), await done(b.url)]
    expect(doneA).toBeGreaterThan(0)
    expect(doneB).toBeGreaterThan(0)
    expect(doneA + doneB).toBe(120)
  })

  it('two instances run each planned run of a schedule once', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const prefix = `cron-${randomUUID().slice(0, 8)}`
    const a = await startService(dir, {store: redis.url, storePrefix: prefix, concurrency: 2})
    const b = await startService(dir, {store: redis.url, storePrefix: prefix, concurrency: 2})
    const {body: task} = await a.api('POST', '/task', {type: 'scheduler', config: {cron: '* * * * * *', payload: {n: 1}, action: {type: 'http', url: target.url}}})
    await until(() => target.requests.length >= 3, 8000, 'three runs')
    await a.api('POST', `/task/${task.uuid}/stop`)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const runs = target.requests.map((r) => String(r.headers['x-cistern-hooks-execution']))
    expect(new Set(runs).size).toBe(runs.length)
    // planned timestamps are whole seconds in µs, each at most once (a late tick may skip one under load)
    const seconds = runs.map((ts) => Number(ts) / 1e6).sort((x, y) => x - y)
    for (const [i, s] of seconds.entries()) {
      expect(Number.isInteger(s)).toBe(true)
      if (i > 0) expect(s - seconds[i - 1]!).toBeGreaterThanOrEqual(1)
    }
    expect((await b.api('GET', `/task/${task.uuid}`)).body.stopped).toBe(true)
  })

  it('follows maintenance set on another instance at once, and reads it at start', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const prefix = `mnt-${randomUUID().slice(0, 8)}`
    const a = await startService(dir, {store: redis.url, storePrefix: prefix, maintenancePollMs: 60_000})
    const b = await startService(dir, {store: redis.url, storePrefix: prefix, maintenancePollMs: 60_000})
    const {body: task} = await a.api('POST', '/task', webhookTask(target.url))
    await a.api('POST', '/admin/maintenance?enable=true')
    // pub/sub, not the (disabled) poll
    await until(() => b.maintenance(), 2000, 'b to follow')
    const c = await startService(dir, {store: redis.url, storePrefix: prefix})
    expect(c.maintenance()).toBe(true)
    for (let i = 0; i < 4; i++) await fetch(`${[a, b, c][i % 3]!.url}/webhook/${task.uuid}`, {method: 'POST', body: `m${i}`})
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(target.requests.length).toBe(0)
    await c.api('POST', '/admin/maintenance?enable=false')
    await until(() => target.requests.length === 4, 5000, 'the backlog')
    expect([a.maintenance(), b.maintenance(), c.maintenance()]).toEqual([false, false, false])
  })

  it('recovers an execution claimed by an instance that died', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const prefix = `dead-${randomUUID().slice(0, 8)}`
    const service = await startService(dir, {store: redis.url, storePrefix: prefix, leaseMs: 300})
    await service.api('POST', '/admin/maintenance?enable=true')
    const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
    const intake = (await (await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: 'orphan'})).json()) as {execution: number}
    // Another instance claims it and dies without finishing (no heartbeat).
    const dying = await openStore(redis.url, {prefix})
    const claimed = await dying.claim(Date.now(), 300)
    expect(claimed?.timestamp).toBe(intake.execution)
    await dying.close()
    await service.api('POST', '/admin/maintenance?enable=false')
    await until(() => target.requests.length === 1, 5000, 'the recovered execution')
    expect(target.requests[0]!.body.toString()).toBe('orphan')
  })

  it('loses no accepted execution when Redis restarts mid-load', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const prefix = `restart-${randomUUID().slice(0, 8)}`
    const service = await startService(dir, {store: redis.url, storePrefix: prefix, concurrency: 4, leaseMs: 1000, retryMax: 20})
    const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
    const accepted = new Set<string>()
    let refused = 0
    let restarted = false
    const senders = Array.from({length: 4}, async (_, lane) => {
      for (let i = 0; i < 40; i++) {
        if (lane === 0 && i === 15 && !restarted) {
          restarted = true
          await redis.kill()
          await new Promise((resolve) => setTimeout(resolve, 300))
          await redis.restart()
        }
        try {
          const r = await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: `${lane}-${i}`, signal: AbortSignal.timeout(15_000)})
          if (r.status === 202) accepted.add(String(((await r.json()) as {execution: number}).execution))
          else refused++
        } catch {
          refused++
        }
      }
    })
    await Promise.all(senders)
    expect(restarted).toBe(true)
    expect(accepted.size).toBeGreaterThan(100)
    await until(
      () => {
        const seen = new Set(executionsSeen(target.requests))
        return [...accepted].every((id) => seen.has(id))
      },
      15_000,
      'every accepted execution to be forwarded',
    )
    // Refused intake (5xx while Redis was away) is the sender's to retry; nothing accepted was lost.
    expect(accepted.size + refused).toBe(160)
  })
})
