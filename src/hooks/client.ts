import {z} from 'zod'

import {CisternError, TargetUnhealthyError, UsageError, errorMessage} from '../core/errors.js'
import {HttpClient, type HttpMethod, TransportError} from '../core/http-client.js'
import {readSecretFile, registerSecret} from '../core/secrets.js'
import {executionSchema, taskViewSchema} from './model.js'
import {serviceStatusSchema} from './status.js'

export const DEFAULT_SERVER = 'http://127.0.0.1:8091'

/** The API token: a file (the one secret-file reader: one line, trimmed) or CISTERN_HOOKS_TOKEN. Registered as a secret. */
export function readToken(tokenFile?: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (tokenFile) return readSecretFile(tokenFile, {what: 'API token', source: '--token-file (or hooks.tokenFile)'})
  const token = env.CISTERN_HOOKS_TOKEN?.trim()
  registerSecret(token)
  return token === '' ? undefined : token
}

export const executionStopSchema = z.object({task_uuid: z.string(), execution: z.number(), result: z.enum(['stopped', 'stopping', 'already-done'])})
export type ExecutionStopResult = z.infer<typeof executionStopSchema>

const deletedSchema = z.object({deleted: z.number(), requested: z.number()})
const maintenanceSchema = z.object({maintenance: z.boolean()})
const errorAnswer = z.object({error: z.string()})

/** The client commands' way to a running `hooks serve`: every answer parsed with the API's schemas. */
export class HooksClient {
  readonly server: string
  private readonly http: HttpClient

  constructor(
    server: string,
    private readonly token: string | undefined,
    timeoutMs = 15_000,
  ) {
    if (!URL.canParse(server)) throw new UsageError(`bad --server "${server}"`, `use the service's base URL, e.g. ${DEFAULT_SERVER}`)
    this.server = new URL(server).toString().replace(/\/$/, '')
    this.http = new HttpClient({connections: 1, timeoutMs})
  }

  async request<T>(schema: z.ZodType<T>, method: HttpMethod, path: string, body?: unknown): Promise<T> {
    let response
    try {
      response = await this.http.request({
        method,
        url: this.server + path,
        headers: {
          ...(this.token ? {authorization: `Bearer ${this.token}`} : {}),
          ...(body === undefined ? {} : {'content-type': 'application/json'}),
        },
        ...(body === undefined ? {} : {body: JSON.stringify(body)}),
      })
    } catch (error) {
      const cause = error instanceof TransportError ? error.failure.code : errorMessage(error)
      throw new TargetUnhealthyError(`cannot reach the hooks service at ${this.server} (${cause})`, 'start it with `cistern hooks serve` or set --server / CISTERN_HOOKS_URL')
    } finally {
      await this.http.close()
    }
    const text = response.body.toString('utf8')
    const parsed = parseJson(text)
    if (response.status >= 200 && response.status < 300) {
      const answer = schema.safeParse(parsed)
      if (!answer.success) throw new CisternError(`the hooks service answered ${method} ${path} with something else than expected: ${answer.error.issues.at(0)?.message ?? 'invalid'}`, {fix: 'check that --server points at cistern hooks serve of the same version'})
      return answer.data
    }
    const message = errorAnswer.safeParse(parsed).data?.error ?? `HTTP ${response.status}`
    if (response.status === 401) {
      throw new UsageError(
        `the hooks service refused the API token (401)`,
        this.token ? 'set CISTERN_HOOKS_TOKEN (or --token-file) to the token the service was started with' : 'set CISTERN_HOOKS_TOKEN or --token-file',
      )
    }
    if (response.status === 400) throw new UsageError(`the hooks service refused the request: ${message}`)
    if (response.status >= 500) throw new TargetUnhealthyError(`the hooks service failed: ${message} (HTTP ${response.status})`)
    throw new CisternError(`${message} (HTTP ${response.status})`)
  }

  createTask(document: unknown) {
    return this.request(taskViewSchema, 'POST', '/task', document)
  }
  listTasks(sort?: string) {
    return this.request(z.array(taskViewSchema), 'GET', `/task${sort ? `?sort=${encodeURIComponent(sort)}` : ''}`)
  }
  getTask(uuid: string) {
    return this.request(taskViewSchema, 'GET', `/task/${encodeURIComponent(uuid)}`)
  }
  updateTask(uuid: string, document: unknown) {
    return this.request(taskViewSchema, 'PUT', `/task/${encodeURIComponent(uuid)}`, document)
  }
  async deleteTasks(uuids: string[]): Promise<{deleted: number; requested: number}> {
    const only = uuids.at(0)
    if (uuids.length === 1 && only !== undefined) {
      await this.request(z.unknown(), 'DELETE', `/task/${encodeURIComponent(only)}`)
      return {deleted: 1, requested: 1}
    }
    return this.request(deletedSchema, 'DELETE', '/task/bulk', uuids)
  }
  setStopped(uuid: string, stopped: boolean) {
    return this.request(taskViewSchema, 'POST', `/task/${encodeURIComponent(uuid)}/${stopped ? 'stop' : 'start'}`)
  }
  executions(uuid: string, limit?: number) {
    return this.request(z.array(executionSchema), 'GET', `/task/${encodeURIComponent(uuid)}/execution${limit ? `?limit=${limit}` : ''}`)
  }
  execution(uuid: string, timestamp: string) {
    return this.request(executionSchema, 'GET', `/task/${encodeURIComponent(uuid)}/execution/${encodeURIComponent(timestamp)}`)
  }
  stopExecution(uuid: string, timestamp: string) {
    return this.request(executionStopSchema, 'POST', `/task/${encodeURIComponent(uuid)}/execution/${encodeURIComponent(timestamp)}/stop`)
  }
  setMaintenance(enabled: boolean) {
    return this.request(maintenanceSchema, 'POST', `/admin/maintenance?enable=${enabled}`)
  }
  /** GET /mon/status: a 503 (the store is unreachable) still carries the status, which says so. */
  async status() {
    try {
      return await this.request(serviceStatusSchema, 'GET', '/mon/status')
    } catch (error) {
      if (!(error instanceof TargetUnhealthyError) || !error.message.includes('HTTP 503')) throw error
      throw new TargetUnhealthyError(`the hooks service at ${this.server} cannot reach its store`, 'check the store (Redis) it was started with')
    }
  }
}

function parseJson(text: string): unknown {
  if (text === '') return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

/** The client of the client commands' --server and --token-file (else CISTERN_HOOKS_TOKEN). */
export function clientFrom(flags: {server: string; 'token-file'?: string}): HooksClient {
  return new HooksClient(flags.server, readToken(flags['token-file']))
}
