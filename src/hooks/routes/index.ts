import type {FastifyInstance} from 'fastify'

import {adminRoutes} from './admin.js'
import {withToken} from './auth.js'
import type {RouteDeps} from './deps.js'
import {executionRoutes} from './executions.js'
import {intakeRoutes} from './intake.js'
import {monitorRoutes} from './monitor.js'
import {taskRoutes} from './tasks.js'

export type {RouteDeps} from './deps.js'
export {AUTH_HEADER, authorised} from './auth.js'
export {capture} from './intake.js'

/** Every route of `hooks serve`, each group a fastify plugin (the task API behind the token). */
export async function registerRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  await app.register(intakeRoutes, deps)
  await app.register(monitorRoutes, deps)
  await app.register(withToken(taskRoutes), deps)
  await app.register(withToken(executionRoutes), deps)
  await app.register(withToken(adminRoutes), deps)
}
