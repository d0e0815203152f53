import type {IncomingMessage, Server, ServerResponse} from 'node:http'
import {Server as NetServer, type Socket} from 'node:net'

import type {FastifyInstance, FastifyReply, FastifyRequest} from 'fastify'
import type {Registry} from 'prom-client'

import {CisternError} from './errors.js'
import type {Logger} from './log.js'
import {sleep} from './loop.js'

export interface HttpServerOptions {
  log: Logger
  /** Largest request body accepted, in bytes (413 beyond). */
  bodyLimit: number
  /** Extra fields for GET /healthz (e.g. queue depth, state). Throwing or ok:false → 503. */
  health?: () => Promise<Record<string, unknown>> | Record<string, unknown>
  /** Request timeout in ms for slow clients (default 30 s). */
  requestTimeoutMs?: number
}

export interface HttpServer {
  app: FastifyInstance
  /** The Prometheus registry served on /metrics (default process metrics included). */
  metrics: Registry
  /** Listen on host:port (port 0 = any free port); resolves to the base URL. */
  listen(port: number, host?: string): Promise<string>
  /**
   * Stops gracefully (docs/delivery.md, "Shutdown"): no new connections; every answer from now on,
   * in flight or not, says `Connection: close`; in-flight requests finish; a keep-alive connection
   * is closed once it has been idle for `idleGraceMs` (a client busy on it sends its next request
   * within that time and gets its answer, instead of a reset); after `deadlineMs` what remains is
   * cut. Then fastify closes (its onClose hooks run).
   */
  close(options?: CloseOptions): Promise<void>
}

export interface CloseOptions {
  /** Cut what is still open after this long (default 10 s). */
  deadlineMs?: number
  /** Close a keep-alive connection once it has been idle this long (default 250 ms). */
  idleGraceMs?: number
}

/**
 * The HTTP server `spigot serve` and `hooks serve` share (fastify). Bodies are kept as raw Buffers
 * whatever the content type — the spigot must forward the exact bytes GitHub signed — and each
 * route parses what it needs. GET /healthz and GET /metrics are built in.
 */
export async function createHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const [{default: Fastify}, prom] = await Promise.all([import('fastify'), import('prom-client')])
  const log = options.log
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    // Webhook senders (GitHub) and load generators keep connections open.
    keepAliveTimeout: 65_000,
    return503OnClosing: true,
  })

  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', {parseAs: 'buffer', bodyLimit: options.bodyLimit}, (_req, body, done) => done(null, body))

  const metrics = new prom.Registry()
  prom.collectDefaultMetrics({register: metrics})

  app.setErrorHandler((error: Error & {statusCode?: number; code?: string}, request: FastifyRequest, reply: FastifyReply) => {
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500
    if (status >= 500) log.error('request failed', {method: request.method, url: request.url, error: error.message})
    else log.warn('request rejected', {method: request.method, url: request.url, status, reason: error.code ?? error.message})
    const message = status >= 500 && !(error instanceof CisternError) ? 'internal error' : error.message
    void reply.code(status).send({error: message})
  })

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({error: `no route for ${request.method} ${request.url.split('?')[0]}`})
  })

  app.get('/healthz', async (_request, reply) => {
    try {
      const extra = (await options.health?.()) ?? {}
      const ok = extra.ok !== false
      return await reply.code(ok ? 200 : 503).send({ok, ...extra})
    } catch (error) {
      return reply.code(503).send({ok: false, error: (error as Error).message})
    }
  })

  app.get('/metrics', async (_request, reply) => {
    return reply.header('content-type', metrics.contentType).send(await metrics.metrics())
  })

  const connections = new Connections(app.server)
  let closing: Promise<void> | undefined

  return {
    app,
    metrics,
    async listen(port: number, host = '127.0.0.1') {
      try {
        await app.listen({port, host})
      } catch (error) {
        const code = (error as {code?: string}).code
        if (code === 'EADDRINUSE') throw new CisternError(`port ${port} on ${host} is already in use`, {fix: 'pick another with --port', exitCode: 2})
        if (code === 'EACCES') throw new CisternError(`not allowed to listen on ${host}:${port}`, {fix: 'use a port above 1024 or run as a user allowed to bind it', exitCode: 2})
        throw error
      }
      const address = app.server.address()
      const bound = typeof address === 'object' && address ? address.port : port
      const shown = host.includes(':') ? `[${host}]` : host
      return `http://${shown}:${bound}`
    },
    close(options = {}) {
      closing ??= (async () => {
        // Not http.Server#close(): it also drops idle keep-alive connections at once, and a client
        // writing its next request on one at that moment gets a reset (issue 11.10: 12–17 of them).
        if (app.server.listening) NetServer.prototype.close.call(app.server)
        await connections.drain(options.idleGraceMs ?? 250, options.deadlineMs ?? 10_000)
        await app.close()
      })()
      return closing
    },
  }
}

interface Connection {
  /** Requests being answered on it. */
  active: number
  /** socket.bytesRead when it was last seen idle: more since means a request is on its way. */
  bytesSeen: number
  /** How long closing has seen it idle, in ms (see Connections.drain). */
  idleSeen: number
}

const LOOK_EVERY_MS = 25

/**
 * The server's connections and the requests in flight on each, for a graceful close. The raw
 * server's events, not fastify hooks: they also see the requests fastify answers by itself (413, 404).
 */
class Connections {
  private readonly sockets = new Map<Socket, Connection>()
  private readonly answering = new Set<ServerResponse>()
  private closing = false

  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.sockets.set(socket, {active: 0, bytesSeen: 0, idleSeen: 0})
      socket.once('close', () => this.sockets.delete(socket))
    })
    // Before fastify's own listener, so the header is set before any answer starts.
    server.prependListener('request', (request: IncomingMessage, response: ServerResponse) => {
      const connection = this.sockets.get(request.socket)
      if (connection) connection.active++
      this.answering.add(response)
      if (this.closing) response.setHeader('connection', 'close')
      response.once('close', () => {
        this.answering.delete(response)
        if (connection) connection.active--
      })
    })
  }

  /**
   * Until every connection has closed: idle ones once closing has seen them idle for `idleGraceMs`,
   * all of them after `deadlineMs`. Idleness is counted only between looks that came close together:
   * while the event loop is blocked (a commit), a client's next request may be waiting unread in
   * its socket, and the look after the block comes only after the loop has read it.
   */
  async drain(idleGraceMs: number, deadlineMs: number): Promise<void> {
    this.closing = true
    // Answers already on their way may still be told: node then closes the connection after them.
    for (const response of this.answering) if (!response.headersSent) response.setHeader('connection', 'close')
    const started = performance.now()
    let lastLook = started
    while (this.sockets.size > 0) {
      const now = performance.now()
      const watched = now - lastLook <= LOOK_EVERY_MS * 4 ? now - lastLook : 0
      lastLook = now
      const cut = now - started >= deadlineMs
      for (const [socket, connection] of this.sockets) if (cut || this.idleSeen(socket, connection, watched) >= idleGraceMs) socket.destroy()
      if (this.sockets.size === 0 || cut) break
      await sleep(LOOK_EVERY_MS)
      // Look after this turn's I/O was read: a request waiting in the socket then counts as activity.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /** Adds `watched` ms to how long the connection has been seen idle; activity starts it again. */
  private idleSeen(socket: Socket, connection: Connection, watched: number): number {
    if (connection.active > 0 || socket.bytesRead !== connection.bytesSeen) {
      connection.bytesSeen = socket.bytesRead
      connection.idleSeen = 0
    } else connection.idleSeen += watched
    return connection.idleSeen
  }
}
