import {readFileSync} from 'node:fs'

import {CisternError, TargetUnhealthyError, UsageError} from '../core/errors.js'
import {registerSecret} from '../core/log.js'
import type {Execution, TaskView} from './model.js'

export const DEFAULT_SERVER = 'http://127.0.0.1:8091'

/** The API token: CISTERN_HOOKS_TOKEN, or the first line of a file. Registered as a secret. */
export function readToken(tokenFile?: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  let token: string | undefined
  if (tokenFile) {
    try {
      token = readFileSync(tokenFile, 'utf8').split(/\r?\n/)[0].trim()
    } catch (error) {
      throw new UsageError(`cannot read the token file ${tokenFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'check --token-file')
    }
    if (!token) throw new UsageError(`the token file ${tokenFile} is empty`, 'put the API token on its first line')
  } else {
    token = env.CISTERN_HOOKS_TOKEN?.trim() || undefined
  }
  registerSecret(token)
  return token
}

export interface ExecutionStopResult {
  task_uuid: string
  execution: number
  result: 'stopped' | 'stopping' | 'already-done'
}

export interface ServiceStatus {
  version: string
  store: {kind: string; location: string}
  maintenance: boolean
  queue_length: number
  in_flight: number
}

/** The client commands' way to a running `hooks serve`. */
export class HooksClient {
  readonly server: string

  constructor(
    server: string,
    private readonly token: string | undefined,
    private readonly timeoutMs = 15_000,
  ) {
    try {
      this.server = new URL(server).toString().replace(/\/$/, '')
    } catch {
      throw new UsageError(`bad --server "${server}"`, `use the service's base URL, e.g. ${DEFAULT_SERVER}`)
    }
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response
    try {
      response = await fetch(this.server + path, {
        method,
        headers: {
          ...(this.token ? {authorization: `Bearer ${this.token}`} : {}),
          ...(body === undefined ? {} : {'content-type': 'application/json'}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      })
    } catch (error) {
      const cause = (error as {cause?: {code?: string}}).cause?.code ?? (error as Error).message
      throw new TargetUnhealthyError(`cannot reach the hooks service at ${this.server} (${cause})`, 'start it with `cistern hooks serve` or set --server / CISTERN_HOOKS_URL')
    }
    const text = await response.text()
    let parsed: unknown
    try {
      parsed = text ? JSON.parse(text) : undefined
    } catch {
      parsed = text
    }
    if (response.ok) return parsed as T
    const message = (parsed as {error?: string})?.error ?? `HTTP ${response.status}`
    if (response.status === 401) {
      throw new UsageError(`the hooks service refused the API token (401)`, this.token ? 'set CISTERN_HOOKS_TOKEN (or --token-file) to the token the service was started with' : 'set CISTERN_HOOKS_TOKEN or --token-file')
    }
    if (response.status === 400) throw new UsageError(`the hooks service refused the request: ${message}`)
    if (response.status >= 500) throw new TargetUnhealthyError(`the hooks service failed: ${message} (HTTP ${response.status})`)
    throw new CisternError(`${message} (HTTP ${response.status})`)
  }

  createTask(document: unknown) {
    return this.request<TaskView>('POST', '/task', document)
  }
  listTasks(sort?: string) {
    return this.request<TaskView[]>('GET', `/task${sort ? `?sort=${encodeURIComponent(sort)}` : ''}`)
  }
  getTask(uuid: string) {
    return this.request<TaskView>('GET', `/task/${encodeURIComponent(uuid)}`)
  }
  updateTask(uuid: string, document: unknown) {
    return this.request<TaskView>('PUT', `/task/${encodeURIComponent(uuid)}`, document)
  }
  async deleteTasks(uuids: string[]): Promise<{deleted: number; requested: number}> {
    if (uuids.length === 1) {
      await this.request('DELETE', `/task/${encodeURIComponent(uuids[0])}`)
      return {deleted: 1, requested: 1}
    }
    return this.request('DELETE', '/task/bulk', uuids)
  }
  setStopped(uuid: string, stopped: boolean) {
    return this.request<TaskView>('POST', `/task/${encodeURIComponent(uuid)}/${stopped ? 'stop' : 'start'}`)
  }
  executions(uuid: string, limit?: number) {
    return this.request<Execution[]>('GET', `/task/${encodeURIComponent(uuid)}/execution${limit ? `?limit=${limit}` : ''}`)
  }
  execution(uuid: string, timestamp: string) {
    return this.request<Execution>('GET', `/task/${encodeURIComponent(uuid)}/execution/${encodeURIComponent(timestamp)}`)
  }
  stopExecution(uuid: string, timestamp: string) {
    return this.request<ExecutionStopResult>('POST', `/task/${encodeURIComponent(uuid)}/execution/${encodeURIComponent(timestamp)}/stop`)
  }
  setMaintenance(enabled: boolean) {
    return this.request<{maintenance: boolean}>('POST', `/admin/maintenance?enable=${enabled}`)
  }
  status() {
    return this.request<ServiceStatus>('GET', '/mon/status')
  }
}
