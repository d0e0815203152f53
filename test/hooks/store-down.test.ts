import {randomUUID} from 'node:crypto'

import {Redis} from 'ioredis'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {standIn} from '../helpers/http.js'
import {type RedisServer, startRedis} from '../helpers/redis.js'
import {tempDir} from '../helpers/tmp.js'
import {startService, until, webhookTask} from './helpers.js'

/**
 * issue 11.7: with the store unreachable (Redis killed, or hanging), /healthz and /mon/status
 * answer 503 within 2 s, intake answers 503 within its own timeout and stores nothing later (a
 * sender that retries makes one execution, not two), and stop() ends within its deadline.
 */
const dir = tempDir('cistern-hooks-store-down-')
let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis.stop()
})

async function timed<T>(work: () => Promise<T>): Promise<{value: T; ms: number}> {
  const started = Date.now()
  const value = await work()
  return {value, ms: Date.now() - started}
}

async function setup(prefix: string) {
  const target = await standIn()
  afterAll(() => target.close())
  const service = await startService(dir, {store: redis.url, storePrefix: `${prefix}-${randomUUID().slice(0, 8)}`, intakeTimeoutMs: 1000})
  const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
  const post = (body: string) => fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body, signal: AbortSignal.timeout(10_000)})
  const bodies = () => target.requests.map((r) => r.body.toString())
  const stored = async (body: string) => {
    const executions = (await service.api('GET', `/task/${task.uuid}/execution`)).body as Array<{request: {raw_body: string}}>
    return executions.filter((e) => Buffer.from(e.request.raw_body, 'base64').toString() === body).length
  }
  return {service, task, post, bodies, stored}
}

describe('hooks with its Redis unreachable', () => {
  it('answers /healthz and /mon/status 503 within 2 s, intake 503 within its timeout; the retry is the only copy', async () => {
    const {service, post, bodies, stored} = await setup('killed')
    await redis.kill()
    try {
      const health = await timed(() => fetch(`${service.url}/healthz`))
      expect(health.value.status).toBe(503)
      expect(health.ms).toBeLessThan(2000)
      const status = await timed(() => fetch(`${service.url}/mon/status`))
      expect(status.value.status).toBe(503)
      expect(status.ms).toBeLessThan(2000)
      expect(await status.value.json()).toMatchObject({store: {kind: 'redis', reachable: false}, queue_length: -1})
      const intake = await timed(() => post('sent twice'))
      expect(intake.value.status).toBe(503)
      expect(intake.ms).toBeLessThan(2000)
    } finally {
      await redis.restart()
    }
    await until(async () => (await fetch(`${service.url}/healthz`)).status === 200, 15_000, 'Redis to be back')
    // The sender retries: 202 this time.
    expect((await post('sent twice')).status).toBe(202)
    await until(() => bodies().includes('sent twice'), 10_000, 'the forward')
    // The first attempt, replayed by the client after the reconnect, stored nothing.
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(await stored('sent twice')).toBe(1)
    expect(bodies().filter((b) => b === 'sent twice')).toHaveLength(1)
  })

  it('a Redis that hangs: intake 503 within its timeout, and the write that runs late stores nothing', async () => {
    const {service, post, bodies, stored} = await setup('hung')
    const admin = new Redis(redis.url)
    const pid = Number(/process_id:(\d+)/.exec(await admin.info('server'))?.[1])
    admin.disconnect()
    expect(pid).toBeGreaterThan(0)
    process.kill(pid, 'SIGSTOP')
    try {
      const intake = await timed(() => post('late'))
      expect(intake.value.status).toBe(503)
      expect(intake.ms).toBeLessThan(2000)
      expect((await timed(() => fetch(`${service.url}/healthz`))).value.status).toBe(503)
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    await until(async () => (await fetch(`${service.url}/healthz`)).status === 200, 10_000, 'Redis to answer again')
    expect((await post('late')).status).toBe(202)
    await until(() => bodies().includes('late'), 10_000, 'the forward')
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(await stored('late')).toBe(1)
  })

  it('stops within its deadline while Redis is down', async () => {
    const {service, post} = await setup('stop')
    expect((await post('before')).status).toBe(202)
    await redis.kill()
    try {
      const stop = await timed(() => service.stop(1500))
      expect(stop.ms).toBeLessThan(2500)
    } finally {
      await redis.restart()
    }
  })
})
