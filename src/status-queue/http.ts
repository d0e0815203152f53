import http from 'node:http'
import https from 'node:https'

/** Commit-status answers are a few hundred bytes; anything far bigger is not GitHub talking. */
const MAX_RESPONSE_BYTES = 1024 * 1024

export interface NodeFetchOptions {
  /** Sockets kept per host (match the request concurrency). */
  maxSockets?: number
  /** Per-attempt timeout; the error it raises is retryable. */
  timeoutMs?: number
}

/**
 * A `fetch` for Octokit over node:http(s) keep-alive agents. Octokit only needs method, headers,
 * a string body and a buffered answer; node:http does that with about half the CPU of the
 * built-in fetch, which is what bounds statuses/s once GitHub answers quickly. TLS is Node's own,
 * so NODE_EXTRA_CA_CERTS (a GitHub Enterprise behind a private CA) applies. Redirects are not
 * followed: a POST that GitHub redirects is a wrong GITHUB_URL, reported as such by the caller.
 */
export function nodeFetch(options: NodeFetchOptions = {}): typeof fetch {
  const agentOptions = {keepAlive: true, maxSockets: options.maxSockets ?? 16, maxFreeSockets: options.maxSockets ?? 16}
  const agents = {'http:': new http.Agent(agentOptions), 'https:': new https.Agent(agentOptions)}
  const timeoutMs = options.timeoutMs ?? 30_000

  const fetchImpl = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> =>
    new Promise((resolve, reject) => {
      const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
      const agent = agents[url.protocol as keyof typeof agents]
      if (!agent) return reject(new TypeError(`unsupported protocol ${url.protocol}`))
      const outer = init.signal ?? undefined
      if (outer?.aborted) return reject(abortError())
      let settled = false
      const fail = (error: Error) => {
        if (settled) return
        settled = true
        cleanup()
        reject(error)
      }
      const request = (url.protocol === 'https:' ? https : http).request(url, {
        method: init.method ?? 'GET',
        headers: init.headers as Record<string, string> | undefined,
        agent,
      })
      const timer = setTimeout(() => {
        request.destroy()
        fail(new Error(`no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      const onAbort = () => {
        request.destroy()
        fail(abortError())
      }
      outer?.addEventListener('abort', onAbort, {once: true})
      const cleanup = () => {
        clearTimeout(timer)
        outer?.removeEventListener('abort', onAbort)
      }
      request.on('error', fail)
      request.on('response', (response) => {
        const chunks: Buffer[] = []
        let size = 0
        response.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > MAX_RESPONSE_BYTES) {
            response.destroy()
            fail(new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`))
          } else chunks.push(chunk)
        })
        response.on('error', fail)
        response.on('end', () => {
          if (settled) return
          settled = true
          cleanup()
          const headers = new Headers()
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value)
          }
          const status = response.statusCode ?? 502
          const nullBody = status === 204 || status === 205 || status === 304 || (init.method ?? 'GET') === 'HEAD'
          resolve(new Response(nullBody ? null : Buffer.concat(chunks), {status, statusText: response.statusMessage, headers}))
        })
      })
      request.end(typeof init.body === 'string' || init.body instanceof Uint8Array ? init.body : undefined)
    })
  return fetchImpl as typeof fetch
}

export function abortError(): Error {
  return Object.assign(new Error('request aborted'), {name: 'AbortError'})
}
