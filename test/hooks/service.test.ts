import {createServer} from 'node:http'

import {afterAll, describe, expect, it} from 'vitest'

import {standIn} from '../helpers/http.js'
import {tempDir} from '../helpers/tmp.js'
import {TOKEN, client, startService, until, webhookTask} from './helpers.js'

const dir = tempDir('cistern-hooks-service-')

describe('webhook intake → execution → http action', () => {
  it('forwards the captured request byte for byte and records the execution', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const service = await startService(dir)
    const created = await service.api('POST', '/task', webhookTask(`${target.url}/hook`, {name: 'jenkins'}))
    expect(created.status).toBe(201)
    const uuid = created.body.uuid as string
    expect(created.body).toMatchObject({type: 'webhook', name: 'jenkins', stopped: false, nb_executions_total: 0})

    const body = Buffer.from('{"ref":"refs/heads/main", "x": "é"}\n')
    const intake = await fetch(`${service.url}/webhook/${uuid}?branch=main&a=1&a=2`, {
      method: 'POST',
      headers: {'content-type': 'application/json', 'x-github-event': 'push'},
      body,
    })
    expect(intake.status).toBe(202)
    const answer = (await intake.json()) as {execution: number; task_uuid: string}
    expect(answer.task_uuid).toBe(uuid)

    await until(() => target.requests.length === 1, 5000, 'the forward')
    const forwarded = target.requests[0]!
    expect(forwarded.method).toBe('POST')
    expect(forwarded.url).toBe('/hook?branch=main&a=1&a=2')
    expect(forwarded.body.equals(body)).toBe(true)
    expect(forwarded.headers['x-github-event']).toBe('push')
    expect(forwarded.headers['x-cistern-hooks-execution']).toBe(String(answer.execution))

    const execution = await until(async () => {
      const r = await service.api('GET', `/task/${uuid}/execution/${answer.execution}`)
      return r.body?.status === 'DONE' ? r.body : undefined
    })
    expect(execution).toMatchObject({status: 'DONE', nb_errors: 0, result: {status: 200, output: 'ok'}})
    expect(Buffer.from(execution.request.raw_body, 'base64').equals(body)).toBe(true)
    expect(execution.request.query).toEqual({branch: 'main', a: ['1', '2']})
    expect(execution.claim).toBeUndefined()
    const list = await service.api('GET', `/task/${uuid}/execution`)
    expect(list.body.map((e: {timestamp: number}) => e.timestamp)).toEqual([answer.execution])
    const task = await service.api('GET', `/task/${uuid}`)
    expect(task.body).toMatchObject({nb_executions_total: 1, nb_executions_todo: 0})
  })

  it('answers 404 unknown, 405 wrong method, 409 stopped, 413 oversized', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const service = await startService(dir, {bodyLimit: 1000})
    const {body: task} = await service.api('POST', '/task', {type: 'webhook', config: {method: 'PUT', action: {type: 'http', url: target.url}}})
    const hook = (method: string, uuid = task.uuid, body?: Buffer) =>
      fetch(`${service.url}/webhook/${uuid}`, {method, body, headers: body ? {'content-type': 'application/octet-stream'} : {}})

    expect((await hook('PUT', '0b6c2d56-5d7e-4b3e-9d55-2a1f6bd7a7a4')).status).toBe(404)
    expect((await hook('PUT', 'not-a-uuid')).status).toBe(404)
    const wrong = await hook('POST', task.uuid, Buffer.from('{}'))
    expect(wrong.status).toBe(405)
    expect(wrong.headers.get('allow')).toBe('PUT')
    expect((await hook('PUT', task.uuid, Buffer.alloc(1001, 'a'))).status).toBe(413)
    expect((await hook('PUT', task.uuid, Buffer.alloc(1000, 'a'))).status).toBe(202)
    expect((await service.api('POST', `/task/${task.uuid}/stop`)).body.stopped).toBe(true)
    expect((await hook('PUT', task.uuid, Buffer.from('x'))).status).toBe(409)
    expect((await service.api('POST', `/task/${task.uuid}/start`)).body.stopped).toBe(false)
    expect((await hook('PUT', task.uuid, Buffer.from('x'))).status).toBe(202)
    await until(() => target.requests.length === 2)
    expect(target.requests.map((r) => r.body.length)).toEqual([1000, 1])
  })
})

describe('task API', () => {
  it('refuses a missing or wrong token and accepts the original X_AUTH_HEADER', async () => {
    const service = await startService(dir)
    expect((await client(service.url, null)('GET', '/task')).status).toBe(401)
    expect((await client(service.url, 'wrong-token-0123456789')('GET', '/task')).status).toBe(401)
    expect((await client(service.url, null)('GET', '/task', undefined, {authorization: TOKEN})).status).toBe(401)
    const legacy = client(service.url, null)
    expect((await legacy('GET', '/task', undefined, {X_AUTH_HEADER: Buffer.from(TOKEN).toString('base64')})).status).toBe(200)
    expect((await legacy('GET', '/task', undefined, {X_AUTH_HEADER: Buffer.from('nope').toString('base64')})).status).toBe(401)
    expect((await legacy('POST', '/admin/maintenance?enable=true')).status).toBe(401)
    // intake and monitoring need no token
    expect((await legacy('GET', '/mon/status')).status).toBe(200)
    expect((await legacy('GET', '/healthz')).status).toBe(200)
  })

  it('a service started without a token keeps its API closed', async () => {
    const service = await startService(dir, {token: undefined})
    expect((await service.api('GET', '/task')).status).toBe(401)
  })

  it('rejects malformed JSON, bad cron, unknown time zone and unknown fields with 400', async () => {
    const service = await startService(dir)
    const action = {type: 'http', url: 'http://127.0.0.1:9/'}
    const cases: Array<[unknown, RegExp]> = [
      ['{"type": "webhook",', /malformed JSON/],
      [[], /JSON object/],
      [{type: 'cron', config: {}}, /type/],
      [{type: 'scheduler', config: {cron: '61 * * * *', action}}, /bad cron/],
      [{type: 'scheduler', config: {cron: '* * *', action}}, /bad cron "\* \* \*": expected 5 fields/],
      [{type: 'scheduler', config: {cron: '0 9 * * *', timezone: 'Mars/Olympus', action}}, /unknown time zone "Mars\/Olympus"/],
      [{type: 'webhook', config: {method: 'PATCH', action}}, /config\.method/],
      [{type: 'webhook', config: {action: {type: 'http', url: 'ftp://x'}}}, /config\.action\.url/],
      [{type: 'webhook', config: {action: {type: 'carrier-pigeon'}}}, /config\.action/],
      [{type: 'webhook', config: {action}, extra: 1}, /extra|unrecognized/i],
    ]
    for (const [body, message] of cases) {
      const r = await service.api('POST', '/task', body)
      expect(r.status, JSON.stringify(body)).toBe(400)
      expect(r.body.error, JSON.stringify(body)).toMatch(message)
    }
    expect((await service.api('GET', '/task')).body).toEqual([])
  })

  it('creates, lists (sortable), replaces, deletes, and handles bulk', async () => {
    const service = await startService(dir)
    const action = {type: 'http', url: 'http://127.0.0.1:9/'}
    const ids: string[] = []
    for (const name of ['b', 'c', 'a']) ids.push((await service.api('POST', '/task', {name, type: 'webhook', config: {action}})).body.uuid)
    const names = async (sort?: string) => (await service.api('GET', `/task${sort ? `?sort=${sort}` : ''}`)).body.map((t: {name: string}) => t.name)
    expect(await names()).toEqual(['b', 'c', 'a'])
    expect(await names('name')).toEqual(['a', 'b', 'c'])
    expect(await names('-name')).toEqual(['c', 'b', 'a'])
    expect((await service.api('GET', '/task?sort=colour')).status).toBe(400)
    expect((await service.api('POST', '/task', {uuid: ids[0], type: 'webhook', config: {action}})).status).toBe(409)

    const put = await service.api('PUT', `/task/${ids[0]}`, {name: 'b2', type: 'webhook', config: {method: 'GET', action}})
    expect(put.status).toBe(200)
    expect(put.body).toMatchObject({uuid: ids[0], name: 'b2', config: {method: 'GET'}})
    expect((await service.api('PUT', `/task/${ids[0]}`, {type: 'scheduler', config: {cron: '* * * * *', action}})).status).toBe(400)
    expect((await service.api('PUT', '/task/0b6c2d56-5d7e-4b3e-9d55-2a1f6bd7a7a4', {type: 'webhook', config: {action}})).status).toBe(404)

    expect((await service.api('DELETE', `/task/${ids[1]}`)).status).toBe(204)
    expect((await service.api('DELETE', `/task/${ids[1]}`)).status).toBe(404)
    expect((await service.api('GET', `/task/${ids[1]}`)).status).toBe(404)

    const bulk = await service.api('POST', '/task/bulk', [
      {name: 'x', type: 'webhook', config: {action}},
      {uuid: ids[2], name: 'a-renamed', type: 'webhook', config: {action}},
    ])
    expect(bulk.status).toBe(200)
    expect(await names()).toEqual(['b2', 'a-renamed', 'x'])
    const badBulk = await service.api('POST', '/task/bulk', [{name: 'y', type: 'webhook', config: {action}}, {type: 'nope'}])
    expect(badBulk.status).toBe(400)
    expect(badBulk.body.error).toMatch(/task #2/)
    expect(await names()).toEqual(['b2', 'a-renamed', 'x'])
    const removed = await service.api('DELETE', '/task/bulk', [ids[0], ids[2]])
    expect(removed.body).toEqual({deleted: 2, requested: 2})
    expect(await names()).toEqual(['x'])
  })
})

describe('routines', () => {
  it('a target that fails (5xx) does not burn attempts; a payload it refuses (400) is retried, then dead with last_error', async () => {
    let failures = 2
    const target = await standIn((_req, res) => {
      res.statusCode = failures-- > 0 ? 500 : 200
      res.end('answer')
    })
    afterAll(() => target.close())
    const service = await startService(dir, {retryMax: 3, retryDelayMs: 30})
    const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
    const first = ((await (await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: 'a'})).json()) as {execution: number})
    const done = await until(async () => {
      const e = (await service.api('GET', `/task/${task.uuid}/execution/${first.execution}`)).body
      return e.status === 'DONE' ? e : undefined
    })
    // 5xx: the target was down, not the execution at fault (docs/delivery.md): no attempt counted
    expect(done).toMatchObject({nb_errors: 0, result: {status: 200}})
    expect(done.dead).toBeUndefined()
    expect(done.last_error).toMatch(/answered 500/)
    expect(target.requests.length).toBe(3)

    // this payload refused each time: three attempts, then dead (DONE with the error)
    target.respond((_req, res) => {
      res.statusCode = 400
      res.end('bad request')
    })
    const second = ((await (await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: 'b'})).json()) as {execution: number})
    const failed = await until(async () => {
      const e = (await service.api('GET', `/task/${task.uuid}/execution/${second.execution}`)).body
      return e.status === 'DONE' ? e : undefined
    })
    expect(failed).toMatchObject({nb_errors: 3, dead: true, result: {status: 400, output: 'bad request'}})
    expect(failed.last_error).toMatch(/answered 400/)
    expect(target.requests.length).toBe(6)
    const status = (await service.api('GET', '/mon/status')).body
    expect(status).toMatchObject({dead_letters: 1, executions: {dead: 1}})
  })

  it('gets every execution through a flapping target', async () => {
    let n = 0
    const target = await standIn((_req, res) => {
      res.statusCode = n++ % 2 === 0 ? 503 : 200
      res.end()
    })
    afterAll(() => target.close())
    const service = await startService(dir, {retryMax: 5, retryDelayMs: 10, concurrency: 2})
    const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
    for (let i = 0; i < 6; i++) expect((await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: `f${i}`})).status).toBe(202)
    const executions = await until(async () => {
      const list = (await service.api('GET', `/task/${task.uuid}/execution`)).body as Array<{status: string; result: {status: number}; nb_errors: number}>
      return list.length === 6 && list.every((e) => e.status === 'DONE') ? list : undefined
    }, 10_000)
    expect(executions.every((e) => e.result.status === 200 && e.nb_errors < 5)).toBe(true)
    const delivered = new Set(target.requests.filter((_r, i) => i % 2 === 1).map((r) => r.body.toString()))
    expect(delivered).toEqual(new Set(['f0', 'f1', 'f2', 'f3', 'f4', 'f5']))
  })

  it('gives up on a target that hangs after the action timeout, and retries', async () => {
    let hang = true
    const target = await standIn(async (_req, res) => {
      if (hang) {
        hang = false
        await new Promise((resolve) => setTimeout(resolve, 5000))
      }
      res.end('late but fine')
    })
    afterAll(() => target.close())
    const service = await startService(dir, {retryDelayMs: 20})
    const {body: task} = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'http', url: target.url, timeout_seconds: 0.3}}})
    const intake = ((await (await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: 'x'})).json()) as {execution: number})
    const done = await until(async () => {
      const e = (await service.api('GET', `/task/${task.uuid}/execution/${intake.execution}`)).body
      return e.status === 'DONE' ? e : undefined
    })
    // a timeout is the target's: retried without counting an attempt
    expect(done).toMatchObject({nb_errors: 0, result: {status: 200}})
    expect(done.last_error).toMatch(/no answer within 0.3 s/)
    expect(target.requests.length).toBe(2)
  })

  it('delivers once the target, down at first, comes up', async () => {
    const probe = await standIn()
    const port = probe.port
    await probe.close()
    const service = await startService(dir, {retryMax: 50, retryDelayMs: 20})
    const {body: task} = await service.api('POST', '/task', webhookTask(`http://127.0.0.1:${port}/up`))
    const intake = ((await (await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: 'payload'})).json()) as {execution: number})
    const failing = await until(async () => {
      const e = (await service.api('GET', `/task/${task.uuid}/execution/${intake.execution}`)).body
      return e.last_error ? e : undefined
    })
    // refused connections are the target's: waited out, never counted against the execution
    expect(failing.last_error).toMatch(/connection refused/)
    expect(failing.nb_errors).toBe(0)
    expect((await service.api('GET', '/mon/status')).body.targets_down).toEqual([expect.objectContaining({target: `http://127.0.0.1:${port}`})])
    const received: string[] = []
    const server = createServer((req, res) => {
      let data = ''
      req.on('data', (c: Buffer) => (data += c.toString()))
      req.on('end', () => {
        received.push(data)
        res.end('ok')
      })
    })
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const done = await until(async () => {
      const e = (await service.api('GET', `/task/${task.uuid}/execution/${intake.execution}`)).body
      return e.status === 'DONE' ? e : undefined
    }, 10_000)
    expect(done.result.status).toBe(200)
    expect(received).toEqual(['payload'])
  })

  it('maintenance: intake continues, nothing is processed; off drains the backlog in order', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const service = await startService(dir)
    const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
    expect((await service.api('POST', '/admin/maintenance?enable=true')).body).toEqual({maintenance: true})
    expect((await service.api('POST', '/admin/maintenance?enable=maybe')).status).toBe(400)
    for (let i = 0; i < 5; i++) {
      expect((await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: `m${i}`})).status).toBe(202)
    }
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(target.requests.length).toBe(0)
    const status = await service.api('GET', '/mon/status')
    expect(status.body).toMatchObject({maintenance: true, queue_length: 5, store: {kind: 'sqlite'}})
    expect(status.body.version).toMatch(/^\d+\.\d+\.\d+/)
    expect((await service.api('GET', `/task/${task.uuid}`)).body.nb_executions_todo).toBe(5)
    await service.api('POST', '/admin/maintenance?enable=false')
    await until(() => target.requests.length === 5)
    expect(target.requests.map((r) => r.body.toString())).toEqual(['m0', 'm1', 'm2', 'm3', 'm4'])
    expect((await service.api('GET', '/mon/status')).body).toMatchObject({maintenance: false, queue_length: 0})
  })

  it('follows a maintenance flag set by another instance on the same store', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const a = await startService(dir)
    const b = await startService(dir, {store: a.store.location})
    expect(b.maintenance()).toBe(false)
    await a.api('POST', '/admin/maintenance?enable=true')
    await until(() => b.maintenance(), 2000, 'b to follow')
    await a.api('POST', '/admin/maintenance?enable=false')
    await until(() => !b.maintenance(), 2000, 'b to follow back')
  })

  it('stops exactly the execution asked for, even while it runs', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const service = await startService(dir, {leaseMs: 300})
    target.respond(async (req, res) => {
      if (req.body.toString() === 'slow') await new Promise((resolve) => setTimeout(resolve, 10_000))
      res.end('ok')
    })
    const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
    const send = async (body: string) => (((await (await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body})).json()) as {execution: number})).execution
    const slow = await send('slow')
    const queued = await send('queued')
    const kept = await send('kept')
    await until(() => target.requests.length === 1, 5000, 'the slow request')
    expect((await service.api('POST', `/task/${task.uuid}/execution/${queued}/stop`)).body.result).toBe('stopped')
    expect((await service.api('POST', `/task/${task.uuid}/execution/${slow}/stop`)).body.result).toBe('stopping')
    expect((await service.api('POST', `/task/${task.uuid}/execution/123/stop`)).status).toBe(404)
    const get = async (ts: number) => (await service.api('GET', `/task/${task.uuid}/execution/${ts}`)).body
    await until(async () => (await get(kept)).status === 'DONE', 5000, 'the kept one')
    expect(await get(slow)).toMatchObject({status: 'DONE', stopped: true, last_error: 'stopped by operator', nb_errors: 0})
    expect(await get(queued)).toMatchObject({status: 'DONE', stopped: true})
    expect(await get(kept)).toMatchObject({status: 'DONE', result: {status: 200}})
    expect(target.requests.map((r) => r.body.toString())).toEqual(['slow', 'kept'])
  })

  it('on stop, an execution still running past the deadline goes back to the queue, not counted as a failure', async () => {
    let first = true
    const target = await standIn(async (_req, res) => {
      if (first) {
        first = false
        await new Promise((resolve) => setTimeout(resolve, 5000))
      }
      res.end('ok')
    })
    afterAll(() => target.close())
    const a = await startService(dir)
    const {body: task} = await a.api('POST', '/task', webhookTask(target.url))
    const intake = ((await (await fetch(`${a.url}/webhook/${task.uuid}`, {method: 'POST', body: 'x'})).json()) as {execution: number})
    await until(() => target.requests.length === 1, 5000, 'the first attempt')
    await a.stop(200)
    const b = await startService(dir, {store: a.store.location})
    const done = await until(async () => {
      const e = (await b.api('GET', `/task/${task.uuid}/execution/${intake.execution}`)).body
      return e.status === 'DONE' ? e : undefined
    })
    expect(done).toMatchObject({nb_errors: 0, result: {status: 200}})
    expect(done.last_error).toBeUndefined()
    expect(target.requests.length).toBe(2)
  })

  it('the cleaner keeps the newest N executions of each task', async () => {
    const target = await standIn()
    afterAll(() => target.close())
    const service = await startService(dir, {keep: 3, cleanIntervalMs: 60_000})
    const {body: task} = await service.api('POST', '/task', webhookTask(target.url))
    for (let i = 0; i < 6; i++) await fetch(`${service.url}/webhook/${task.uuid}`, {method: 'POST', body: `${i}`})
    await until(async () => (await service.api('GET', `/task/${task.uuid}`)).body.nb_executions_todo === 0)
    expect(await service.cleaner.clean()).toBe(3)
    const left = (await service.api('GET', `/task/${task.uuid}/execution`)).body
    expect(left.map((e: {request: {raw_body: string}}) => Buffer.from(e.request.raw_body, 'base64').toString())).toEqual(['5', '4', '3'])
  })

  it('serves Prometheus metrics and healthz', async () => {
    const service = await startService(dir)
    const metrics = await (await fetch(`${service.url}/metrics`)).text()
    expect(metrics).toMatch(/cistern_hooks_queue_length 0/)
    expect(metrics).toMatch(/cistern_hooks_maintenance 0/)
    const health = ((await (await fetch(`${service.url}/healthz`)).json()) as {execution: number})
    expect(health).toMatchObject({ok: true, store: 'sqlite', maintenance: false})
  })
})
