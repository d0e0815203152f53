import {Octokit} from '@octokit/rest'
import {createServer, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'
import {afterAll, describe, expect, it} from 'vitest'

import {ExitCode, TargetUnhealthyError, transportFailureOf} from '../../src/core/errors.js'
import {HttpClient, ResponseTooLargeError, TransportError} from '../../src/core/http-client.js'
import {standIn} from '../helpers/http.js'

// A real collection between awaits: a timeout that a collected signal would lose must still fire.
setFlagsFromString('--expose_gc')
const gc = runInNewContext('gc') as () => void

/** A loopback server that counts the connections it accepted and can hang or reset requests. */
async function countingServer(answer: (res: ServerResponse, body: Buffer, url: string) => void) {
  const sockets = new Set<Socket>()
  let connections = 0
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => answer(res, Buffer.concat(chunks), req.url ?? '/'))
  })
  server.on('connection', (socket: Socket) => {
    connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    get connections() {
      return connections
    },
    get open() {
      return sockets.size
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

const clients: HttpClient[] = []
function client(options: ConstructorParameters<typeof HttpClient>[0] = {}): HttpClient {
  const made = new HttpClient(options)
  clients.push(made)
  return made
}
afterAll(async () => {
  for (const made of clients) await made.close()
})

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection')
    },
    (error: unknown) => error,
  )
}

describe('HttpClient.request', () => {
  it('sends method, headers and body; returns status, headers and body for any status', async () => {
    const target = await standIn((req, res) => {
      res.statusCode = req.url === '/missing' ? 404 : 201
      res.setHeader('x-echo', String(req.headers['x-trace']))
      res.setHeader('set-cookie', ['a=1', 'b=2'])
      res.end(Buffer.concat([Buffer.from(`${req.method} `), req.body]))
    })
    try {
      const http = client()
      const created = await http.request({method: 'POST', url: `${target.url}/hook?x=1`, headers: {'x-trace': 't-1', 'content-type': 'application/json'}, body: '{"a":1}'})
      expect(created.status).toBe(201)
      expect(created.body.toString()).toBe('POST {"a":1}')
      expect(created.headers['x-echo']).toBe('t-1')
      expect(created.headers['set-cookie']).toBe('a=1, b=2')
      expect(created.ms).toBeGreaterThan(0)
      expect(target.requests[0]).toMatchObject({method: 'POST', url: '/hook?x=1', headers: expect.objectContaining({'content-type': 'application/json', 'content-length': '7'})})

      const bytes = Buffer.from([0, 255, 1, 254])
      await http.request({method: 'PUT', url: `${target.url}/b`, body: bytes})
      expect(target.requests[1]!.body.equals(bytes)).toBe(true)
      expect((await http.request({url: `${target.url}/missing`})).status).toBe(404)
    } finally {
      await target.close()
    }
  })

  it('keeps connections alive per origin: many requests, few connections', async () => {
    const target = await countingServer((res) => res.end('ok'))
    try {
      const http = client({connections: 4})
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({length: 4}, () => http.request({method: 'POST', url: `${target.url}/x`, body: 'b'})))
      }
      expect(target.connections).toBeLessThanOrEqual(4)
    } finally {
      await target.close()
    }
  })

  it('a hanging target is a timeout (kind timeout, exit 3), even after garbage collections', async () => {
    const target = await countingServer(() => {
      // never answers
    })
    try {
      const http = client({timeoutMs: 30_000})
      const pending = failure(http.request({url: `${target.url}/hang`, timeoutMs: 400}))
      for (let i = 0; i < 5; i++) {
        gc()
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      const error = await pending
      expect(error).toBeInstanceOf(TransportError)
      expect(error).toBeInstanceOf(TargetUnhealthyError)
      expect((error as TransportError).exitCode).toBe(ExitCode.unhealthy)
      expect((error as TransportError).failure).toMatchObject({kind: 'timeout'})
      expect((error as TransportError).message).toBe(`GET ${target.url}/hang: no answer in time (127.0.0.1:${new URL(target.url).port})`)
    } finally {
      await target.close()
    }
  })

  it('a body that stalls half way is a timeout too', async () => {
    const target = await countingServer((res) => {
      res.writeHead(200, {'content-length': '100'})
      res.write('partial')
    })
    try {
      const error = await failure(client().request({url: `${target.url}/slow`, timeoutMs: 300}))
      expect((error as TransportError).failure.kind).toBe('timeout')
    } finally {
      await target.close()
    }
  })

  it('a closed port is refused; a dropped connection is reset; an unknown name is dns', async () => {
    const closed = await countingServer(() => undefined)
    const closedUrl = closed.url
    await closed.close()
    const refused = await failure(client().request({method: 'POST', url: `${closedUrl}/github-webhook/`, body: '{}'}))
    expect(refused).toBeInstanceOf(TransportError)
    expect((refused as TransportError).failure).toEqual({kind: 'refused', code: 'ECONNREFUSED', where: closedUrl.replace('http://', '')})
    expect((refused as TransportError).oneLine).toBe(
      `POST ${closedUrl}/github-webhook/: connection refused by ${closedUrl.replace('http://', '')} — check that it is up and that the URL is right`,
    )

    const dropping = await countingServer((res) => res.socket?.destroy())
    try {
      const reset = await failure(client().request({url: `${dropping.url}/x`}))
      expect((reset as TransportError).failure.kind).toBe('reset')
    } finally {
      await dropping.close()
    }

    const dns = await failure(client().request({url: 'http://cistern-test.invalid/', timeoutMs: 10_000}))
    expect((dns as TransportError).failure.kind).toBe('dns')
  })

  it("the caller's abort rejects with its reason and is not a transport failure", async () => {
    const target = await countingServer(() => undefined)
    try {
      const controller = new AbortController()
      const pending = failure(client().request({url: `${target.url}/x`, signal: controller.signal}))
      setTimeout(() => controller.abort(new Error('stopping')), 50)
      const error = await pending
      expect(error).toEqual(new Error('stopping'))
      expect(transportFailureOf(error)).toBeUndefined()
      const already = await failure(client().request({url: `${target.url}/x`, signal: AbortSignal.abort()}))
      expect((already as Error).name).toBe('AbortError')
    } finally {
      await target.close()
    }
  })

  it('refuses an answer larger than maxResponseBytes', async () => {
    const target = await standIn((_req, res) => {
      res.end(Buffer.alloc(2048, 'x'))
    })
    try {
      const error = await failure(client({maxResponseBytes: 1024}).request({url: `${target.url}/big`}))
      expect(error).toBeInstanceOf(ResponseTooLargeError)
      expect((await client().request({url: `${target.url}/big`, maxResponseBytes: 4096})).body).toHaveLength(2048)
    } finally {
      await target.close()
    }
  })

  it('close() lets requests in flight finish, then closes the idle keep-alive connections', async () => {
    let release: (() => void) | undefined
    const target = await countingServer((res, _body, url) => {
      if (url === '/slow') release = () => res.end('late')
      else res.end('ok')
    })
    try {
      const http = new HttpClient()
      await http.request({url: `${target.url}/a`})
      const slow = http.request({url: `${target.url}/slow`})
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(target.open).toBeGreaterThanOrEqual(1)
      const closing = http.close()
      release?.()
      expect((await slow).body.toString()).toBe('late')
      await closing
      for (let i = 0; i < 50 && target.open > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
      expect(target.open).toBe(0)
    } finally {
      await target.close()
    }
  })
})

describe('HttpClient.fetch (Octokit)', () => {
  it('carries Octokit requests and answers', async () => {
    const github = await standIn((req, res) => {
      res.statusCode = 201
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({state: JSON.parse(req.body.toString()).state, url: req.url}))
    })
    try {
      const octokit = new Octokit({auth: 'ghp_fetchtest', baseUrl: `${github.url}/api/v3`, request: {fetch: client().fetch}})
      const {status, data} = await octokit.rest.repos.createCommitStatus({owner: 'acme', repo: 'web', sha: 'a'.repeat(40), state: 'success'})
      expect(status).toBe(201)
      expect(data).toMatchObject({state: 'success', url: `/api/v3/repos/acme/web/statuses/${'a'.repeat(40)}`})
      expect(github.requests[0]!.headers.authorization).toBe('token ghp_fetchtest')
    } finally {
      await github.close()
    }
  })

  it('a timeout reaches Octokit as a RequestError whose cause says timeout (not "GitHub answered 500")', async () => {
    const target = await countingServer(() => undefined)
    try {
      const quiet = {debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined}
      const octokit = new Octokit({baseUrl: target.url, log: quiet, request: {fetch: client({timeoutMs: 300}).fetch}})
      const error = await failure(octokit.rest.repos.get({owner: 'acme', repo: 'web'}))
      expect(error).toMatchObject({name: 'HttpError'})
      expect(transportFailureOf(error)?.kind).toBe('timeout')
    } finally {
      await target.close()
    }
  })

  it('answers 204 and HEAD without a body, and passes headers given as Headers', async () => {
    const target = await standIn((req, res) => {
      res.statusCode = req.method === 'HEAD' ? 200 : 204
      res.setHeader('x-seen', String(req.headers['x-a']))
      res.end()
    })
    try {
      const fetch = client().fetch
      const empty = await fetch(`${target.url}/x`, {method: 'DELETE', headers: new Headers({'x-a': 'from-headers'})})
      expect(empty.status).toBe(204)
      expect(empty.headers.get('x-seen')).toBe('from-headers')
      expect(await empty.text()).toBe('')
      expect((await fetch(`${target.url}/x`, {method: 'HEAD'})).status).toBe(200)
    } finally {
      await target.close()
    }
  })

  it('answers are whole Responses: text, json, arrayBuffer, body stream, clone, read once', async () => {
    const target = await standIn((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end('{"ok":true,"name":"Zoë"}')
    })
    try {
      const fetch = client().fetch
      const answer = await fetch(`${target.url}/x`)
      expect(answer).toBeInstanceOf(Response)
      expect(answer.ok).toBe(true)
      expect(answer.headers.get('content-type')).toBe('application/json')
      const copy = answer.clone()
      expect(await answer.json()).toEqual({ok: true, name: 'Zoë'})
      expect(answer.bodyUsed).toBe(true)
      await expect(answer.text()).rejects.toThrow(TypeError)
      expect(new TextDecoder().decode(await copy.arrayBuffer())).toBe('{"ok":true,"name":"Zoë"}')
      const streamed = await fetch(`${target.url}/x`)
      expect(await new Response(streamed.body).text()).toBe('{"ok":true,"name":"Zoë"}')
    } finally {
      await target.close()
    }
  })
})
