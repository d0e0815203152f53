import {timingSafeEqual} from 'node:crypto'

import type {FastifyInstance, FastifyRequest} from 'fastify'

import {type CapturedRequest, type Execution, type Task, type TaskView, WEBHOOK_METHODS, executionRef, newTimestamp, publicExecution} from './model.js'
import type {Clock} from './scheduler.js'
import type {HooksStore} from './store/types.js'
import {TaskInputError, buildTask, sortTasks} from './tasks.js'

/** The original's header: base64 of the shared token (`X_AUTH_HEADER: base64(token)`). */
export const AUTH_HEADER = 'X_AUTH_HEADER'

export interface RouteDeps {
  store: HooksStore
  /** The API token; undefined = the task API answers 401 to everything. */
  token?: string
  clock: Clock
  version: string
  maintenance(): boolean
  setMaintenance(enabled: boolean): Promise<void>
  /** A webhook execution was stored. */
  onWebhook(execution: Execution): void
  /** A task was created, replaced, started or stopped. */
  onTaskChanged(task: Task): Promise<void>
  /** Abort an execution running on this instance. */
  abortLocal(ref: string): void
  inFlight(): number
}

/**
 * An HTTP answer other than 2xx, with a message for the client. The shared server's error handler
 * answers `{error: message}` with `statusCode` (so do TaskInputError 400 and TaskExistsError 409).
 */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

// Not kept in a captured request: hop-by-hop headers.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection'])

export function capture(request: FastifyRequest): CapturedRequest {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue
    headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
  const query: Record<string, string | string[]> = {}
  const search = request.url.indexOf('?')
  if (search >= 0) {
    for (const [key, value] of new URLSearchParams(request.url.slice(search + 1))) {
      const previous = query[key]
      query[key] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value]
    }
  }
  return {method: request.method, headers, raw_body: body.toString('base64'), query}
}

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
  if (typeof legacy === 'string' && same(Buffer.from(legacy.trim(), 'base64').toString('utf8'))) return true
  return false
}

function jsonBody(request: FastifyRequest): unknown {
  const body = request.body
  if (!Buffer.isBuffer(body) || body.length === 0) throw new ApiError(400, 'expected a JSON body')
  try {
    return JSON.parse(body.toString('utf8'))
  } catch (error) {
    throw new ApiError(400, `malformed JSON: ${(error as Error).message}`)
  }
}

function timestampParam(value: string): number {
  if (!/^\d{1,16}$/.test(value)) throw new ApiError(404, `no execution ${value}`)
  return Number(value)
}

export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const {store, clock} = deps

  // -- intake: no auth, the uuid is the secret (as in CDS) --------------------------------------
  app.route({
    method: [...WEBHOOK_METHODS],
    url: '/webhook/:uuid',
    handler: async (request, reply) => {
      const {uuid} = request.params as {uuid: string}
      const now = clock.now()
      const result = await store.intake({
        task_uuid: uuid,
        type: 'webhook',
        timestamp: newTimestamp(now),
        status: 'ENQUEUED',
        nb_errors: 0,
        request: capture(request),
        created_at: now,
      })
      if (result.outcome === 'unknown') throw new ApiError(404, `no webhook task ${uuid}`)
      if (result.outcome === 'wrong-method') {
        void reply.header('allow', result.allowed)
        throw new ApiError(405, `task ${uuid} accepts ${result.allowed}, not ${request.method}`)
      }
      if (result.outcome === 'stopped') throw new ApiError(409, `task ${uuid} is stopped`)
      const {execution} = result
      deps.onWebhook(execution)
      return reply.code(202).send({task_uuid: uuid, execution: execution.timestamp, status: 'ENQUEUED'})
    },
  })

  // -- everything else needs the token --------------------------------------------------------
  app.register(async (api) => {
    api.addHook('onRequest', async (request, reply) => {
      if (!authorised(request.headers, deps.token)) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send({error: `missing or wrong API token: send "Authorization: Bearer <token>" (or ${AUTH_HEADER}: base64 of it)`})
      }
    })

    const view = async (task: Task): Promise<TaskView> => ({...task, ...(await counts(task.uuid))})
    const counts = async (uuid: string) => {
      const {total, todo} = await store.countExecutions(uuid)
      return {nb_executions_total: total, nb_executions_todo: todo}
    }
    const mustGet = async (uuid: string) => {
      const task = await store.getTask(uuid)
      if (!task) throw new ApiError(404, `no task ${uuid}`)
      return task
    }
    const save = async (task: Task, create: boolean) => {
      if (create) await store.createTask(task)
      else if (!(await store.updateTask(task))) throw new ApiError(404, `no task ${task.uuid}`)
      await deps.onTaskChanged(task)
      return task
    }

    api.post('/task', async (request, reply) => {
      const task = await save(buildTask(jsonBody(request), clock.now()), true)
      return reply.code(201).send(await view(task))
    })

    api.get('/task', async (request) => {
      const {sort} = request.query as {sort?: string}
      const tasks = await Promise.all((await store.listTasks()).map(view))
      return sortTasks(tasks, sort)
    })

    api.post('/task/bulk', async (request, reply) => {
      const documents = bulkDocuments(jsonBody(request))
      const now = clock.now()
      const tasks: Array<{task: Task; create: boolean}> = []
      for (const [i, document] of documents.entries()) {
        const uuid = (document as {uuid?: string})?.uuid
        const existing = uuid ? await store.getTask(uuid) : undefined
        try {
          tasks.push({task: buildTask(document, now, existing), create: !existing})
        } catch (error) {
          if (error instanceof TaskInputError) throw new ApiError(400, `task #${i + 1}: ${error.message}`)
          throw error
        }
      }
      const saved = []
      for (const {task, create} of tasks) saved.push(await view(await save(task, create)))
      return reply.code(200).send(saved)
    })

    api.delete('/task/bulk', async (request) => {
      const documents = bulkDocuments(jsonBody(request))
      const uuids = documents.map((d) => (typeof d === 'string' ? d : (d as {uuid?: string})?.uuid)).filter((u): u is string => Boolean(u))
      let deleted = 0
      for (const uuid of uuids) if (await store.deleteTask(uuid)) deleted++
      return {deleted, requested: uuids.length}
    })

    api.get('/task/:uuid', async (request) => view(await mustGet((request.params as {uuid: string}).uuid)))

    api.put('/task/:uuid', async (request) => {
      const existing = await mustGet((request.params as {uuid: string}).uuid)
      return view(await save(buildTask(jsonBody(request), clock.now(), existing), false))
    })

    api.delete('/task/:uuid', async (request, reply) => {
      const {uuid} = request.params as {uuid: string}
      if (!(await store.deleteTask(uuid))) throw new ApiError(404, `no task ${uuid}`)
      return reply.code(204).send()
    })

    for (const action of ['start', 'stop'] as const) {
      api.post(`/task/:uuid/${action}`, async (request) => {
        const task = await mustGet((request.params as {uuid: string}).uuid)
        return view(await save({...task, stopped: action === 'stop', updated_at: clock.now()}, false))
      })
    }

    api.get('/task/:uuid/execution', async (request) => {
      const {uuid} = request.params as {uuid: string}
      await mustGet(uuid)
      const {limit} = request.query as {limit?: string}
      const n = limit === undefined ? undefined : Number(limit)
      if (n !== undefined && (!Number.isInteger(n) || n < 1)) throw new ApiError(400, 'limit: expected a positive integer')
      return (await store.listExecutions(uuid, {limit: n})).map(publicExecution)
    })

    api.get('/task/:uuid/execution/:ts', async (request) => {
      const {uuid, ts} = request.params as {uuid: string; ts: string}
      const execution = await store.getExecution(uuid, timestampParam(ts))
      if (!execution) throw new ApiError(404, `no execution ${ts} of task ${uuid}`)
      return publicExecution(execution)
    })

    api.post('/task/:uuid/execution/:ts/stop', async (request) => {
      const {uuid, ts} = request.params as {uuid: string; ts: string}
      const timestamp = timestampParam(ts)
      const task = await mustGet(uuid)
      const outcome = await store.stopExecution(uuid, timestamp, clock.now())
      if (outcome === 'unknown') throw new ApiError(404, `no execution ${ts} of task ${uuid}`)
      if (outcome === 'stopping') deps.abortLocal(executionRef({type: task.type, task_uuid: uuid, timestamp}))
      return {task_uuid: uuid, execution: timestamp, result: outcome}
    })

    api.post('/admin/maintenance', async (request) => {
      const {enable} = request.query as {enable?: string}
      if (enable !== 'true' && enable !== 'false') throw new ApiError(400, 'enable: expected ?enable=true or ?enable=false')
      await deps.setMaintenance(enable === 'true')
      return {maintenance: enable === 'true'}
    })

    api.get('/admin/maintenance', async () => ({maintenance: deps.maintenance()}))
  })

  // Unauthenticated like CDS's /mon/status: load balancers and dashboards read it.
  app.get('/mon/status', async () => ({
    version: deps.version,
    store: {kind: store.kind, location: store.location},
    maintenance: deps.maintenance(),
    queue_length: await store.queueLength(),
    in_flight: deps.inFlight(),
  }))
}

/** Bulk bodies: an array, or the original's map keyed by uuid. */
function bulkDocuments(body: unknown): unknown[] {
  if (Array.isArray(body)) return body
  if (body && typeof body === 'object') {
    return Object.entries(body).map(([uuid, document]) =>
      document && typeof document === 'object' && !Array.isArray(document) ? {uuid, ...document} : uuid,
    )
  }
  throw new ApiError(400, 'expected a JSON array of tasks (or an object keyed by task uuid)')
}
