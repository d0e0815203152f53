import {timingSafeEqual} from 'node:crypto'

import type {FastifyPluginAsync, FastifyRequest} from 'fastify'

import type {RouteDeps} from './deps.js'

/** The original's header: base64 of the shared token (`X_AUTH_HEADER: base64(token)`). */
export const AUTH_HEADER = 'X_AUTH_HEADER'

/** Accepts `Authorization: Bearer <token>` or the original's `X_AUTH_HEADER: base64(<token>)`. */
export function authorised(headers: FastifyRequest['headers'], token: string | undefined): boolean {
  if (!token) return false
  const expected = Buffer.from(token)
  const same = (given: string) => {
    const got = Buffer.from(given)
    return got.length === expected.length && timingSafeEqual(got, expected)
  }
  const authorization = headers.authorization
  if (typeof authorization === 'string' && /^bearer /i.test(authorization) && same(authorization.slice(7).trim())) return true
  const legacy = headers[AUTH_HEADER.toLowerCase()] ?? headers['x-auth-header']
  return typeof legacy === 'string' && same(Buffer.from(legacy.trim(), 'base64').toString('utf8'))
}

/** Registers `routes` behind the API token: 401 with how to send it, for anything else. */
export function withToken(routes: FastifyPluginAsync<RouteDeps>): FastifyPluginAsync<RouteDeps> {
  return async (app, deps) => {
    app.addHook('onRequest', async (request, reply) => {
      if (!authorised(request.headers, deps.token)) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send({error: `missing or wrong API token: send "Authorization: Bearer <token>" (or ${AUTH_HEADER}: base64 of it)`})
      }
    })
    await app.register(routes, deps)
  }
}
