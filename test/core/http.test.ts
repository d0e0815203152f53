import {Pool} from 'undici'
import {afterEach, describe, expect, it} from 'vitest'

import {createHttpServer, type HttpServer} from '../../src/core/http.js'
import {silentLogger} from '../../src/core/log.js'

describe('createHttpServer', () => {
  let server: HttpServer | undefined
  afterEach(async () => {
    await server?.close()
    server = undefined
  })

  async function start(options: Partial<Parameters<typeof createHttpServer>[0]> = {}) {
    server = await createHttpServer({log: silentLogger, bodyLimit: 1024, ...options})
    server.app.get('/bug', async () => {
      throw new Error('secret internals')
    })
    server.app.post('/echo', async (request, reply) => {
      const body = request.body as Buffer | undefined
      return reply.send({isBuffer: Buffer.isBuffer(body), hex: body?.toString('hex') ?? null})
    })
    return server.listen(0)
  }

  it('keeps request bodies as the exact bytes sent, whatever the content type', async () => {
    const base = await start()
    const bytes = Buffer.from('{"a": 1,\n  "b":"\u00e9"}  ')
    for (const type of ['application/json', 'application/x-www-form-urlencoded', 'text/plain; charset=latin1']) {
      const res = await fetch(`${base}/echo`, {method: 'POST', body: bytes, headers: {'content-type': type}})
      expect(await res.json()).toEqual({isBuffer: true, hex: bytes.toString('hex')})
    }
  })

  it('answers 413 above the body limit and 404 on unknown routes, as JSON', async () => {
    const base = await start()
    const big = await fetch(`${base}/echo`, {method: 'POST', body: Buffer.alloc(2048, 120), headers: {'content-type': 'application/json'}})
    expect(big.status).toBe(413)
    expect(await big.json()).toHaveProperty('error')
    const missing = await fetch(`${base}/nope`)
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as {error: string}).error).toMatch(/no route for GET \/nope/)
  })

  it('serves /healthz from the health callback (503 when it says not ok or throws)', async () => {
    let health: () => Record<string, unknown> = () => ({state: 'ON'})
    const base = await start({health: () => health()})
    let res = await fetch(`${base}/healthz`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ok: true, state: 'ON'})
    health = () => ({ok: false, reason: 'queue unreadable'})
    res = await fetch(`${base}/healthz`)
    expect(res.status).toBe(503)
    health = () => {
      throw new Error('boom')
    }
    res = await fetch(`${base}/healthz`)
    expect(res.status).toBe(503)
    expect(await res.json()).toEqual({ok: false, error: 'boom'})
  })

  it('serves Prometheus metrics including counters registered by the caller', async () => {
    const base = await start()
    const {Counter} = await import('prom-client')
    const counter = new Counter({name: 'cistern_test_total', help: 'test', registers: [server!.metrics]})
    counter.inc(3)
    const text = await (await fetch(`${base}/metrics`)).text()
    expect(text).toMatch(/cistern_test_total 3/)
    expect(text).toMatch(/process_cpu_user_seconds_total/)
  })

  it('hides internal error messages from clients', async () => {
    const base = await start()
    const res = await fetch(`${base}/bug`)
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({error: 'internal error'})
  })

  it('says which port is taken', async () => {
    const base = await start()
    const port = Number(new URL(base).port)
    const other = await createHttpServer({log: silentLogger, bodyLimit: 1024})
    await expect(other.listen(port)).rejects.toThrow(/port \d+ on 127.0.0.1 is already in use/)
    await other.close()
  })

  // Issue 11.10: closing dropped idle keep-alive connections at once, resetting requests clients were writing on them.
  it('close(): refuses new connections, finishes in-flight requests (told Connection: close), closes idle keep-alive connections', async () => {
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    server = await createHttpServer({log: silentLogger, bodyLimit: 1024})
    server.app.post('/slow', async (_request, reply) => {
      await released
      return reply.send({done: true})
    })
    const base = await server.listen(0)
    const idle = new Pool(base, {connections: 1, keepAliveTimeout: 60_000})
    const busy = new Pool(base, {connections: 1, keepAliveTimeout: 60_000})
    try {
      await (await idle.request({path: '/healthz', method: 'GET'})).body.text()
      const idleClosed = new Promise<void>((resolve) => idle.once('disconnect', () => resolve()))
      const slow = busy.request({path: '/slow', method: 'POST', body: 'x'})
      for (let i = 0; i < 100 && busy.stats.pending + busy.stats.running === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5))
      await new Promise((resolve) => setTimeout(resolve, 50))

      const closing = server.close({idleGraceMs: 100, deadlineMs: 5000})
      await idleClosed
      const refused = await fetch(`${base}/healthz`).catch((error: unknown) => error)
      expect((refused as {cause?: {code?: string}}).cause?.code).toBe('ECONNREFUSED')
      release()
      const answer = await slow
      expect(answer.statusCode).toBe(200)
      expect(answer.headers.connection).toBe('close')
      expect(await answer.body.json()).toEqual({done: true})
      await closing
    } finally {
      server = undefined
      await Promise.all([idle.destroy(), busy.destroy()])
    }
  })
})
