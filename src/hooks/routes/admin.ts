import type {FastifyPluginAsync} from 'fastify'

import {ApiError} from '../errors.js'
import type {RouteDeps} from './deps.js'

/** Maintenance mode (token): intake and scheduling continue, processing pauses, on every instance. */
export const adminRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  app.post<{Querystring: {enable?: string}}>('/admin/maintenance', async (request) => {
    const {enable} = request.query
    if (enable !== 'true' && enable !== 'false') throw new ApiError(400, 'enable: expected ?enable=true or ?enable=false')
    await deps.setMaintenance(enable === 'true')
    return {maintenance: enable === 'true'}
  })

  app.get('/admin/maintenance', async () => ({maintenance: deps.maintenance()}))
}
