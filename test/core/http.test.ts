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
})
