import {randomUUID} from 'node:crypto'
import {join} from 'node:path'

import {afterAll} from 'vitest'

import {type HooksService, type HooksServiceOptions, startHooksService} from '../../src/hooks/service.js'

export const TOKEN = 'test-token-0123456789'

/** A hooks service on a free loopback port with test timings (fast ticks, short leases); stopped after the file. */
export async function startService(dir: string, options: HooksServiceOptions = {}): Promise<HooksService & {api: Api}> {
  const service = await startHooksService({
    store: `sqlite:${join(dir, `${randomUUID()}.db`)}`,
    port: 0,
    token: TOKEN,
    concurrency: 1,
    retryDelayMs: 20,
    leaseMs: 2000,
    targetBackoff: {baseMs: 20, maxMs: 200},
    tickMs: 20,
    maintenancePollMs: 100,
    ...options,
  })
  afterAll(() => service.stop(1000))
  return Object.assign(service, {api: client(service.url)})
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests poke at the JSON answers of the API
export type Api = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{status: number; body: any; headers: Headers}>

export function client(url: string, token: string | null = TOKEN): Api {
  return async (method, path, body, headers = {}) => {
    const response = await fetch(url + path, {
      method,
      headers: {
        ...(token ? {authorization: `Bearer ${token}`} : {}),
        ...(body === undefined ? {} : {'content-type': 'application/json'}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    })
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = text ? JSON.parse(text) : undefined
    } catch {
      // not JSON
    }
    return {status: response.status, body: parsed, headers: response.headers}
  }
}

/** Poll until `check` returns a truthy value (bounded). */
export async function until<T>(check: () => Promise<T> | T, timeoutMs = 5000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

export function webhookTask(url: string, extra: Record<string, unknown> = {}) {
  return {type: 'webhook', config: {method: 'POST', action: {type: 'http', url}}, ...extra}
}
