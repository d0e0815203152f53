import type {FastifyPluginAsync} from 'fastify'

import type {RouteDeps} from './deps.js'

/** GET /mon/status: unauthenticated like CDS's (load balancers and dashboards read it); 503 when the store does not answer. */
export const monitorRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  app.get('/mon/status', async (_request, reply) => {
    const status = await deps.status()
    return reply.code(status.store.reachable ? 200 : 503).send(status)
  })
}
