import type {FastifyInstance, FastifyReply, FastifyRequest} from 'fastify'
import type {Registry} from 'prom-client'

import {CisternError} from './errors.js'
import type {Logger} from './log.js'

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
  close(): Promise<void>
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
    close: () => app.close(),
  }
}
