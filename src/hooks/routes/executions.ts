import type {FastifyPluginAsync} from 'fastify'

import {ApiError} from '../errors.js'
import {executionRef, publicExecution} from '../model.js'
import type {RouteDeps} from './deps.js'

interface OneExecution {
  Params: {uuid: string; ts: string}
}

function timestampParam(value: string): number {
  if (!/^\d{1,16}$/.test(value)) throw new ApiError(404, `no execution ${value}`)
  return Number(value)
}

/** The executions API (token): list a task's executions, show one, stop one. */
export const executionRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  const {store} = deps
  const mustGet = async (uuid: string) => {
    const task = await store.getTask(uuid)
    if (!task) throw new ApiError(404, `no task ${uuid}`)
    return task
  }

  app.get<{Params: {uuid: string}; Querystring: {limit?: string}}>('/task/:uuid/execution', async (request) => {
    const {uuid} = request.params
    await mustGet(uuid)
    const {limit} = request.query
    const n = limit === undefined ? undefined : Number(limit)
    if (n !== undefined && (!Number.isInteger(n) || n < 1)) throw new ApiError(400, 'limit: expected a positive integer')
    return (await store.listExecutions(uuid, {limit: n})).map(publicExecution)
  })

  app.get<OneExecution>('/task/:uuid/execution/:ts', async (request) => {
    const {uuid, ts} = request.params
    const execution = await store.getExecution(uuid, timestampParam(ts))
    if (!execution) throw new ApiError(404, `no execution ${ts} of task ${uuid}`)
    return publicExecution(execution)
  })

  app.post<OneExecution>('/task/:uuid/execution/:ts/stop', async (request) => {
    const {uuid, ts} = request.params
    const timestamp = timestampParam(ts)
    const task = await mustGet(uuid)
    const outcome = await store.stopExecution(uuid, timestamp, deps.clock.now())
    if (outcome === 'unknown') throw new ApiError(404, `no execution ${ts} of task ${uuid}`)
    if (outcome === 'stopping') deps.abortLocal(executionRef({type: task.type, task_uuid: uuid, timestamp}))
    return {task_uuid: uuid, execution: timestamp, result: outcome}
  })
}
