import {randomUUID} from 'node:crypto'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {Redis} from 'ioredis'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {Task} from '../../src/hooks/model.js'
import {standIn} from '../helpers/http.js'
import {type RedisServer, startRedis} from '../helpers/redis.js'
import {tempDir} from '../helpers/tmp.js'
import {startService, until, webhookTask} from './helpers.js'

/**
 * issue 12: no stored credentials. A webhook's Authorization, Cookie, X-Hub-Signature* and API-key
 * headers are kept as `[redacted]` in the execution (SQLite and Redis) and the executions API; an
 * http action's secret header comes from the service's environment or a file, and task JSON shows
 * its name only.
 */
const dir = tempDir('cistern-hooks-secrets-')
let redis: RedisServer

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis.stop()
})

const SENDER_SECRETS = {
  authorization: 'Bearer sender-bearer-5c1d2e3f4a',
  cookie: 'session=sender-cookie-9f8e7d6c',
  'x-hub-signature-256': 'sha256=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0',
  'x-api-key': 'sender-api-key-77aa66bb',
  'x-gitlab-token': 'sender-gitlab-token-1234',
}

/** Every byte the store holds: the SQLite file, or every Redis key's value. */
async function storeBytes(kind: 'sqlite' | 'redis', where: string): Promise<string> {
  if (kind === 'sqlite') return readFileSync(where).toString('latin1') + readWal(where)
  const client = new Redis(redis.url)
  try {
    const keys = await client.keys(`${where}:*`)
    const values = await Promise.all(keys.map(async (key) => ((await client.type(key)) === 'string' ? ((await client.get(key)) ?? '') : (await client.zrange(key, 0, -1)).join(' '))))
    return values.join('\n')
  } finally {
    client.disconnect()
  }
}

function readWal(file: string): string {
  try {
    return readFileSync(`${file}-wal`).toString('latin1')
  } catch {
    return ''
  }
}

describe.each(['sqlite', 'redis'] as const)('no stored credentials: %s', (kind) => {
  it('keeps a webhook sender\'s secret headers as [redacted] and does not forward them', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const file = join(dir, `${randomUUID()}.db`)
    const prefix = `secrets-${randomUUID().slice(0, 8)}`
    const service = await startService(dir, kind === 'sqlite' ? {store: `sqlite:${file}`} : {store: redis.url, storePrefix: prefix})
    const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
    const intake = await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: '{"ok":1}', headers: {...SENDER_SECRETS, 'x-github-event': 'push'}})
    expect(intake.status).toBe(202)
    const {execution} = (await intake.json()) as {execution: number}
    const done = await until(async () => {
      const e = (await service.api('GET', `/task/${task.uuid}/execution/${execution}`)).body
      return e.status === 'DONE' ? e : undefined
    })
    for (const name of Object.keys(SENDER_SECRETS)) expect(done.request.headers[name], name).toBe('[redacted]')
    expect(done.request.headers['x-github-event']).toBe('push')
    const listed = JSON.stringify((await service.api('GET', `/task/${task.uuid}/execution`)).body)
    const stored = await storeBytes(kind, kind === 'sqlite' ? file : prefix)
    const forwarded = JSON.stringify(target.requests[0]?.headers)
    expect(target.requests[0]?.headers['x-github-event']).toBe('push')
    for (const secret of Object.values(SENDER_SECRETS)) {
      const token = secret.split(/[ =]/).at(-1) ?? secret
      expect(listed).not.toContain(token)
      expect(stored).not.toContain(token)
      expect(forwarded).not.toContain(token)
    }
  })

  it('takes an http action\'s secret header from the environment or a file, shows only its name, refuses it in the task', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const file = join(dir, `${randomUUID()}.db`)
    const prefix = `headers-${randomUUID().slice(0, 8)}`
    const tokenFile = join(dir, `${randomUUID()}.token`)
    writeFileSync(tokenFile, 'file-held-token-31415926\n')
    process.env.HOOKS_TEST_JENKINS_AUTH = 'Basic ZW52LWhlbGQtc2VjcmV0LTI3MTgyOA=='
    const service = await startService(dir, kind === 'sqlite' ? {store: `sqlite:${file}`} : {store: redis.url, storePrefix: prefix})
    const action = {type: 'http', url: target.url, header_from_env: {Authorization: 'HOOKS_TEST_JENKINS_AUTH'}, header_from_file: {'X-Api-Key': tokenFile}, headers: {'X-Plain': 'shown'}}
    const created = await service.api('POST', '/task', {type: 'webhook', config: {action}})
    expect(created.status).toBe(201)
    expect(created.body.config.action).toEqual(action)
    await fetch(`${service.url}/webhook/${created.body.uuid}`, {method: 'POST', body: 'x'})
    await until(() => target.requests.length === 1, 5000, 'the forward')
    expect(target.requests[0]?.headers).toMatchObject({authorization: 'Basic ZW52LWhlbGQtc2VjcmV0LTI3MTgyOA==', 'x-api-key': 'file-held-token-31415926', 'x-plain': 'shown'})
    const everything = JSON.stringify([(await service.api('GET', '/task')).body, (await service.api('GET', `/task/${created.body.uuid}/execution`)).body]) + (await storeBytes(kind, kind === 'sqlite' ? file : prefix))
    expect(everything).not.toContain('ZW52LWhlbGQtc2VjcmV0LTI3MTgyOA')
    expect(everything).not.toContain('file-held-token-31415926')

    // a secret header's value in the task itself is refused, with the way to give it
    const refused = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'http', url: target.url, headers: {Authorization: 'Bearer x'}}}})
    expect(refused.status).toBe(400)
    expect(refused.body.error).toMatch(/config\.action\.headers\.Authorization: .*header_from_env/)

    // a task stored before this rule shows the header's name, never its value, and still works
    const legacy: Task = {
      uuid: randomUUID(),
      type: 'webhook',
      stopped: false,
      created_at: 1,
      updated_at: 1,
      config: {method: 'POST', action: {type: 'http', url: target.url, headers: {Authorization: 'Bearer legacy-stored-token-42'}}},
    }
    await service.store.createTask(legacy)
    const shown = JSON.stringify([(await service.api('GET', `/task/${legacy.uuid}`)).body, (await service.api('GET', '/task')).body])
    expect(shown).toContain('"Authorization":"[redacted]"')
    expect(shown).not.toContain('legacy-stored-token-42')
    await fetch(`${service.url}/webhook/${legacy.uuid}`, {method: 'POST', body: 'y'})
    await until(() => target.requests.length === 2, 5000, 'the legacy forward')
    expect(target.requests[1]?.headers.authorization).toBe('Bearer legacy-stored-token-42')
  })

  it('holds an execution back while its header variable is missing (the target\'s credentials, not the execution\'s fault)', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const service = await startService(dir, kind === 'sqlite' ? {store: `sqlite:${join(dir, `${randomUUID()}.db`)}`} : {store: redis.url, storePrefix: `missing-${randomUUID().slice(0, 8)}`})
    const variable = `HOOKS_TEST_UNSET_AUTH_${kind.toUpperCase()}`
    const {body: task} = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'http', url: target.url, header_from_env: {Authorization: variable}}}})
    const {execution} = (await (await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: 'x'})).json()) as {execution: number}
    const waiting = await until(async () => {
      const e = (await service.api('GET', `/task/${task.uuid}/execution/${execution}`)).body
      return e.last_error ? e : undefined
    })
    expect(waiting).toMatchObject({status: expect.stringMatching(/SCHEDULED|ENQUEUED|DOING/), nb_errors: 0})
    expect(waiting.last_error).toContain(`$${variable}`)
    expect(target.requests).toHaveLength(0)
    process.env[variable] = 'Bearer now-set-0987654321'
    try {
      await until(() => target.requests.length === 1, 10_000, 'the forward once the variable is set')
    } finally {
      Reflect.deleteProperty(process.env, variable)
    }
    expect(target.requests[0]?.headers.authorization).toBe('Bearer now-set-0987654321')
  })
})
