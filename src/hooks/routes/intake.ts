import type {FastifyPluginAsync, FastifyRequest} from 'fastify'

import {ApiError, StoreUnavailableError} from '../errors.js'
import {redactHeaders} from '../headers.js'
import {type CapturedRequest, WEBHOOK_METHODS, newTimestamp} from '../model.js'
import {withinMs} from '../time.js'
import type {RouteDeps} from './deps.js'

// Not kept in a captured request: hop-by-hop headers.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection'])

/** The request as an execution keeps it: secret headers `[redacted]` (issue 12), the body's bytes, the query. */
export function capture(request: FastifyRequest): CapturedRequest {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue
    headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
  const query = new Map<string, string | string[]>()
  const search = request.url.indexOf('?')
  if (search >= 0) {
    for (const [key, value] of new URLSearchParams(request.url.slice(search + 1))) {
      const previous = query.get(key)
      query.set(key, previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value])
    }
  }
  return {method: request.method, headers: redactHeaders(headers), raw_body: body.toString('base64'), query: Object.fromEntries(query)}
}

/**
 * POST|GET|PUT|DELETE /webhook/{uuid}: no auth, the uuid is the secret (as in CDS). 202 once the
 * execution is stored; 503 when the store does not answer within the intake timeout — and then
 * it is not stored later either (the store refuses a write past its deadline), so the sender's
 * retry is the only copy.
 */
export const intakeRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  app.route<{Params: {uuid: string}}>({
    method: [...WEBHOOK_METHODS],
    url: '/webhook/:uuid',
    handler: async (request, reply) => {
      const {uuid} = request.params
      const now = deps.clock.now()
      const deadline = now + deps.intakeTimeoutMs
      const execution = {task_uuid: uuid, type: 'webhook' as const, timestamp: newTimestamp(now), status: 'ENQUEUED' as const, nb_errors: 0, request: capture(request), created_at: now}
      const result = await withinMs(deps.store.intake(execution, {deadline}), deps.intakeTimeoutMs, 'storing the webhook')
      switch (result.outcome) {
        case 'unknown':
          throw new ApiError(404, `no webhook task ${uuid}`)
        case 'wrong-method':
          void reply.header('allow', result.allowed)
          throw new ApiError(405, `task ${uuid} accepts ${result.allowed}, not ${request.method}`)
        case 'stopped':
          throw new ApiError(409, `task ${uuid} is stopped`)
        case 'late':
          throw new StoreUnavailableError(`storing the webhook: not stored within ${deps.intakeTimeoutMs / 1000} s`)
        case 'accepted':
          deps.onWebhook(result.execution)
          return reply.code(202).send({task_uuid: uuid, execution: result.execution.timestamp, status: 'ENQUEUED'})
      }
    },
  })
}
