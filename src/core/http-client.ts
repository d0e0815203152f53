import type {Agent, Dispatcher} from 'undici'

import {TargetUnhealthyError, type TransportFailure, describeTransportFailure, transportFailureOf} from './errors.js'
import {displayUrl} from './log.js'

/**
 * The one outgoing HTTP client (Jenkins, GitHub, Travis, hooks actions), on undici: keep-alive
 * connections pooled per origin, a deadline per request, transport failures classified the way
 * docs/delivery.md's verdicts need them, and close() for shutdown.
 *
 * Timeouts cannot be garbage-collected: each request's deadline is a timer this client holds until
 * the request settles (plus undici's own headersTimeout/bodyTimeout), never a composed
 * `AbortSignal.any([signal, AbortSignal.timeout()])`, which Node 20 can collect before it fires.
 *
 * Redirects are not followed (a POST that is redirected is a wrong URL, for the caller to say).
 * TLS is Node's, so NODE_EXTRA_CA_CERTS applies (a GitHub Enterprise behind a private CA).
 */

export interface HttpClientOptions {
  /** Connections kept per origin (match the request concurrency; default 64). */
  connections?: number
  /** Deadline of a request that gives none, in ms: connect, send, headers and body (default 30 s). */
  timeoutMs?: number
  /** Largest answer body read, in bytes (default 4 MiB); a bigger one is an error. */
  maxResponseBytes?: number
  /** How long an idle keep-alive connection is kept, in ms (default 4 s; the server's Keep-Alive hint wins when shorter). */
  keepAliveTimeoutMs?: number
}

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS'

export interface HttpRequest {
  method?: HttpMethod
  /** A URL object is sent as it is (a caller that sends to the same URLs again and again keeps them parsed). */
  url: string | URL
  headers?: Record<string, string>
  body?: string | Uint8Array
  /** This request's deadline, in ms (else the client's). */
  timeoutMs?: number
  /** Aborting rejects with the signal's reason. */
  signal?: AbortSignal
  maxResponseBytes?: number
}

export interface HttpResponse {
  status: number
  /** Lower-case names; a repeated header's values joined with ", " (as fetch's Headers.get does). */
  headers: Record<string, string>
  body: Buffer
  /** Milliseconds from sending to the end of the body. */
  ms: number
}

/**
 * No answer came: refused, reset, DNS, timeout or TLS (see TransportFailure). The target is down,
 * not the message at fault: exit 3 when it ends a run. `code` lets transportFailureOf() find the
 * kind through any wrapper (Octokit's RequestError keeps it as its cause).
 */
export class TransportError extends TargetUnhealthyError {
  readonly code: string

  constructor(
    readonly failure: TransportFailure,
    readonly method: string,
    readonly url: string,
    cause?: unknown,
  ) {
    super(`${method} ${displayUrl(url, url)}: ${describeTransportFailure(failure)}`, 'check that it is up and that the URL is right', cause)
    this.name = 'TransportError'
    this.code = failure.code
  }
}

/** An answer bigger than maxResponseBytes: the far end is not what it should be. */
export class ResponseTooLargeError extends TargetUnhealthyError {
  constructor(method: string, url: string, limit: number) {
    super(`${method} ${displayUrl(url, url)}: the answer is larger than ${limit} bytes`, 'check that the URL points at the right service')
    this.name = 'ResponseTooLargeError'
  }
}

interface Undici {
  agent: Agent
  request: typeof import('undici').request
}

export class HttpClient {
  private undici?: Promise<Undici>
  /** undici once loaded: a request then does not wait a turn for it. */
  private loaded?: Undici
  private readonly timeoutMs: number
  private readonly maxResponseBytes: number

  constructor(private readonly options: HttpClientOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 30_000
    this.maxResponseBytes = options.maxResponseBytes ?? 4 * 1024 * 1024
  }

  /**
   * Send one request and read the whole answer. Any status is an answer (the caller judges it);
   * no answer is a TransportError; an abort rejects with the signal's reason.
   */
  async request(request: HttpRequest): Promise<HttpResponse> {
    const method = request.method ?? 'GET'
    const url = String(request.url)
    const deadline = new Deadline(request.timeoutMs ?? this.timeoutMs, request.signal)
    const started = performance.now()
    try {
      const {agent, request: send} = this.loaded ?? (await this.load())
      const options = {
        method,
        headers: request.headers,
        body: request.body,
        signal: deadline.signal,
        // undici's own timers bound the wait for headers and between body chunks as well.
        headersTimeout: deadline.ms,
        bodyTimeout: deadline.ms,
      }
      // The agent's own request with the origin and path: ~15 µs less per request than undici's
      // request(url), which parses the URL again (a drain sends thousands to the same few URLs).
      const target = request.url instanceof URL ? request.url : undefined
      const response =
        target && !target.username && !target.password
          ? await agent.request({...options, origin: target.origin, path: target.pathname + target.search})
          : await send(url, {...options, dispatcher: agent})
      const body = await readBody(response.body, request.maxResponseBytes ?? this.maxResponseBytes, method, url)
      return {status: response.statusCode, headers: flatHeaders(response.headers), body, ms: performance.now() - started}
    } catch (error) {
      throw deadline.explain(error, method, url)
    } finally {
      deadline.clear()
    }
  }

  /**
   * A WHATWG `fetch` over this client, for Octokit (`new Octokit({request: {fetch: client.fetch}})`):
   * method, headers, a string or byte body, a buffered answer. A failure without an answer rejects
   * with the TransportError, which Octokit keeps as its RequestError's cause.
   */
  readonly fetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = typeof input === 'string' || input instanceof URL ? input : input.url
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase() as HttpMethod
    const response = await this.request({
      method,
      url,
      headers: headerRecord(init.headers ?? (input instanceof Request ? input.headers : undefined)),
      body: await bodyBytes(init.body),
      signal: init.signal ?? undefined,
    })
    const nullBody = response.status === 204 || response.status === 205 || response.status === 304 || method === 'HEAD'
    const BufferedResponse = (bufferedResponse ??= defineBufferedResponse())
    return new BufferedResponse(nullBody ? undefined : response.body, {status: response.status, headers: response.headers})
  }

  /** Finish requests in flight, then close every keep-alive connection (shutdown, end of a run). */
  async close(): Promise<void> {
    const loaded = this.undici
    this.undici = undefined
    this.loaded = undefined
    if (loaded) await (await loaded).agent.close()
  }

  /** undici loads on the first request: commands that never send one do not pay for it at start-up. */
  private load(): Promise<Undici> {
    this.undici ??= import('undici').then(({Agent, request}) => {
      const undici = {
        request,
        agent: new Agent({
          connections: this.options.connections ?? 64,
          keepAliveTimeout: this.options.keepAliveTimeoutMs ?? 4000,
          connect: {timeout: this.timeoutMs},
        }),
      }
      this.loaded = undici
      return undici
    })
    return this.undici
  }
}

/**
 * One request's deadline: a timer held until the request settles, and the caller's signal
 * forwarded by a listener removed afterwards. Either aborts the signal undici is given.
 */
class Deadline {
  private readonly controller = new AbortController()
  private readonly timer: NodeJS.Timeout
  private timedOut = false

  constructor(
    readonly ms: number,
    private readonly outer?: AbortSignal,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true
      this.controller.abort()
    }, ms)
    if (outer?.aborted) this.controller.abort(outer.reason)
    else outer?.addEventListener('abort', this.forward, {once: true})
  }

  get signal(): AbortSignal {
    return this.controller.signal
  }

  clear(): void {
    clearTimeout(this.timer)
    this.outer?.removeEventListener('abort', this.forward)
  }

  /** The error to throw for what happened: the caller's abort, a timeout, another transport failure, or the error itself. */
  explain(error: unknown, method: string, url: string): unknown {
    if (this.outer?.aborted) return abortReason(this.outer)
    if (this.timedOut) return new TransportError({kind: 'timeout', code: 'ETIMEDOUT', where: hostOf(url)}, method, url, error)
    if (error instanceof TransportError || error instanceof ResponseTooLargeError) return error
    const failure = transportFailureOf(error)
    return failure ? new TransportError(failure, method, url, error) : error
  }

  private readonly forward = (): void => {
    this.controller.abort(this.outer?.reason)
  }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason instanceof Error ? signal.reason : new DOMException('the request was aborted', 'AbortError')
}

function hostOf(url: string): string | undefined {
  return URL.canParse(url) ? new URL(url).host : undefined
}

/** The whole answer, by 'data' events (an async iterator per answer costs more than the rest of reading a small one). */
function readBody(body: Dispatcher.ResponseData['body'], limit: number, method: string, url: string): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    body.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        body.destroy()
        reject(new ResponseTooLargeError(method, url, limit))
        return
      }
      chunks.push(chunk)
    })
    body.once('error', reject)
    body.once('end', () => {
      resolve(chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks, size))
    })
  })
}

function flatHeaders(headers: Dispatcher.ResponseData['headers']): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    out[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}

/**
 * A Response whose body is already in memory. Reading it costs a toString instead of a web stream:
 * about 50 µs less CPU per request on Node 20 (bench/http-client.js), which is what bounds
 * status-queue once GitHub answers quickly. The stream is built only for a caller that asks for `body`.
 *
 * Defined at the first fetch, not with the module: the global Response is a getter whose first read
 * loads Node's bundled undici (20–50 ms of start-up for every command that holds an HttpClient).
 */
function defineBufferedResponse() {
  return class BufferedResponse extends Response {
    override readonly text = (): Promise<string> => this.read((bytes) => bytes.toString('utf8'))
    override readonly json = (): Promise<unknown> => this.read((bytes) => JSON.parse(bytes.toString('utf8')) as unknown)
    override readonly arrayBuffer = (): Promise<ArrayBuffer> => this.read((bytes) => new Uint8Array(bytes).buffer)
    override readonly blob = (): Promise<Blob> => this.read((bytes) => new Blob([bytes]))
    override readonly clone = (): Response => new BufferedResponse(this.bytes, {status: this.status, headers: this.headers})
    private used = false

    constructor(
      private readonly bytes: Buffer | undefined,
      init: ResponseInit,
    ) {
      super(null, init)
      if (bytes) {
        let stream: ReadableStream | null | undefined
        Object.defineProperty(this, 'body', {get: () => (stream ??= new Response(bytes).body)})
      }
      Object.defineProperty(this, 'bodyUsed', {get: () => this.used})
    }

    private async read<T>(as: (bytes: Buffer) => T): Promise<T> {
      if (this.used) throw new TypeError('the body has already been read')
      this.used = true
      return as(this.bytes ?? Buffer.alloc(0))
    }
  }
}

let bufferedResponse: ReturnType<typeof defineBufferedResponse> | undefined

function headerRecord(headers: RequestInit['headers']): Record<string, string> | undefined {
  if (headers === undefined) return undefined
  // Octokit passes a plain record: use it as it is (the common, cheap case).
  if (!(headers instanceof Headers) && !Array.isArray(headers)) return headers as Record<string, string>
  return Object.fromEntries(new Headers(headers).entries())
}

async function bodyBytes(body: RequestInit['body']): Promise<string | Uint8Array | undefined> {
  if (body === undefined || body === null) return undefined
  if (typeof body === 'string' || body instanceof Uint8Array) return body
  if (body instanceof ArrayBuffer) return new Uint8Array(body)
  return new Uint8Array(await new Response(body).arrayBuffer())
}
