import type {FastifyPluginAsync} from 'fastify'

import {ApiError, TaskInputError} from '../errors.js'
import {publicTask} from '../headers.js'
import type {Task, TaskView} from '../model.js'
import {buildTask, sortTasks} from '../tasks.js'
import {jsonBody} from './body.js'
import type {RouteDeps} from './deps.js'

interface ByUuid {
  Params: {uuid: string}
}

/** The task API (token): create, list, show, replace, delete, start and stop tasks, one by one or in bulk. */
export const taskRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  const {store, clock} = deps

  const view = async (task: Task): Promise<TaskView> => {
    const {total, todo} = await store.countExecutions(task.uuid)
    return {...publicTask(task), nb_executions_total: total, nb_executions_todo: todo}
  }
  const mustGet = async (uuid: string): Promise<Task> => {
    const task = await store.getTask(uuid)
    if (!task) throw new ApiError(404, `no task ${uuid}`)
    return task
  }
  const save = async (task: Task, create: boolean): Promise<Task> => {
    if (create) await store.createTask(task)
    else if (!(await store.updateTask(task))) throw new ApiError(404, `no task ${task.uuid}`)
    await deps.onTaskChanged(task)
    return task
  }

  app.post('/task', async (request, reply) => {
    const task = await save(buildTask(jsonBody(request), clock.now()), true)
    return reply.code(201).send(await view(task))
  })

  app.get<{Querystring: {sort?: string}}>('/task', async (request) => {
    const tasks = await Promise.all((await store.listTasks()).map(view))
    return sortTasks(tasks, typeof request.query.sort === 'string' ? request.query.sort : undefined)
  })

  app.post('/task/bulk', async (request, reply) => {
    const documents = bulkDocuments(jsonBody(request))
    const now = clock.now()
    const tasks: Array<{task: Task; create: boolean}> = []
    for (const [i, document] of documents.entries()) {
      const uuid = uuidOf(document)
      const existing = uuid ? await store.getTask(uuid) : undefined
      try {
        tasks.push({task: buildTask(document, now, existing), create: !existing})
      } catch (error) {
        if (error instanceof TaskInputError) throw new ApiError(400, `task #${i + 1}: ${error.message}`)
        throw error
      }
    }
    const saved: TaskView[] = []
    for (const {task, create} of tasks) saved.push(await view(await save(task, create)))
    return reply.code(200).send(saved)
  })

  app.delete('/task/bulk', async (request) => {
    const uuids = bulkDocuments(jsonBody(request))
      .map(uuidOf)
      .filter((uuid): uuid is string => uuid !== undefined)
    let deleted = 0
    for (const uuid of uuids) if (await store.deleteTask(uuid)) deleted++
    return {deleted, requested: uuids.length}
  })

  app.get<ByUuid>('/task/:uuid', async (request) => view(await mustGet(request.params.uuid)))

  app.put<ByUuid>('/task/:uuid', async (request) => {
    const existing = await mustGet(request.params.uuid)
    return view(await save(buildTask(jsonBody(request), clock.now(), existing), false))
  })

  app.delete<ByUuid>('/task/:uuid', async (request, reply) => {
    const {uuid} = request.params
    if (!(await store.deleteTask(uuid))) throw new ApiError(404, `no task ${uuid}`)
    return reply.code(204).send()
  })

  for (const action of ['start', 'stop'] as const) {
    app.post<ByUuid>(`/task/:uuid/${action}`, async (request) => {
      const task = await mustGet(request.params.uuid)
      return view(await save({...task, stopped: action === 'stop', updated_at: clock.now()}, false))
    })
  }
}

/** Bulk bodies: an array, or the original's map keyed by uuid. */
function bulkDocuments(body: unknown): unknown[] {
  if (Array.isArray(body)) return body
  if (body && typeof body === 'object') {
    return Object.entries(body).map(([uuid, document]: [string, unknown]) =>
      document && typeof document === 'object' && !Array.isArray(document) ? {uuid, ...document} : uuid,
    )
  }
  throw new ApiError(400, 'expected a JSON array of tasks (or an object keyed by task uuid)')
}

/** A bulk entry's uuid: the entry itself (a string) or its `uuid` field. */
function uuidOf(document: unknown): string | undefined {
  if (typeof document === 'string') return document || undefined
  if (document && typeof document === 'object' && 'uuid' in document && typeof document.uuid === 'string') return document.uuid || undefined
  return undefined
}
