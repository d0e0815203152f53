import {isUtf8} from 'node:buffer'
import {createHash} from 'node:crypto'

import {errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import type {Queue, SendInput, SendResult} from '../core/queue/types.js'
import type {JenkinsTarget, SpigotConfig} from './config.js'
import {type Delivery, deliver} from './jenkins.js'
import type {LargePayloadStore} from './large-payload.js'
import {KEPT_HEADERS, type SpigotMessage, encodeMessage, groupOf} from '../core/webhook-message.js'
import {type Route, routeFor} from './routes.js'
import {describeWebhook, parsePayload, verifySignature} from './webhook.js'

/**
 * The spigot's intake decision, independent of the transport (fastify in `spigot serve`, API
 * Gateway in the Lambda): verify → parse → route → forward (state ON) or queue → an HTTP answer.
 * The rule that matters: a 2xx answer only once Jenkins accepted the webhook or the queue durably
 * holds it; anything else is an error status GitHub shows in its delivery log.
 */

export interface IntakeRequest {
  rawBody: Buffer
  headers: Record<string, string | string[] | undefined>
  /**
   * The original `send_from_queue` Lambda replays through the intake with `?from_queue=True`: such
   * a webhook is already queued, so a failure is reported and never queued again.
   */
  fromQueue?: boolean
  /** The original event's `from_queue` value, kept in the queued message (default 'false'). */
  fromQueueValue?: string
}

export type IntakeOutcome = 'accepted' | 'forwarded' | 'queued' | 'rejected'

export interface QueuedCopy {
  target: string
  id: string
  duplicate: boolean
  large?: boolean
}

export interface IntakeResult {
  status: number
  /** The JSON answer. */
  body: Record<string, unknown>
  /**
   * For metrics: accepted (2xx, nothing to do: ping, unrouted), forwarded (Jenkins took it),
   * queued (at least one copy queued), rejected (an error status).
   */
  outcome: IntakeOutcome
  reason: string
  event?: string
  delivery?: string
  deliveries?: Array<{target: string; path: string} & Delivery>
  queued?: QueuedCopy[]
}

export type SpigotStateValue = 'ON' | 'OFF'

export interface IntakeOptions {
  config: Pick<SpigotConfig, 'routes' | 'targets' | 'unrouted' | 'forwardTimeoutMs' | 'webhookSecret'>
  queue: Queue
  /** The spigot's state, read per request (serve: the state store; Lambda: the stage variable). */
  state: () => Promise<SpigotStateValue>
  log: Logger
  /** Where payloads too big for the queue go; without it they get 413. */
  largePayloads?: LargePayloadStore
  /** PR comment when a pull_request webhook is queued (non-fatal, not awaited). */
  commenter?: {queued(message: SpigotMessage): Promise<void>}
  /** Embedded queue: commit in a worker thread so the fsync does not block the event loop (serve). */
  writerThread?: boolean
}

export interface Intake {
  handle(request: IntakeRequest): Promise<IntakeResult>
  /** Wait for queued sends and stop the writer thread (not the queue). */
  close(): Promise<void>
}

export function createIntake(options: IntakeOptions): Intake {
  const {config, queue, log} = options
  const sender = groupCommit(queue, {thread: options.writerThread, log})
  const send = sender.send

  function reject(status: number, reason: string, error: string, extra: Partial<IntakeResult> = {}): IntakeResult {
    return {status, outcome: 'rejected', reason, body: {error}, ...extra}
  }

  async function readState(): Promise<SpigotStateValue | undefined> {
    try {
      return await options.state()
    } catch (error) {
      log.error('could not read the spigot state: queueing to be safe', {error: errorMessage(error)})
      return undefined
    }
  }

  return {
    close: () => sender.close(),
    async handle(request) {
      const raw = request.rawBody
      // One pass over the headers instead of one per lookup.
      const headers = lowerCased(request.headers)
      const event = headers['x-github-event']?.trim()
      const delivery = headers['x-github-delivery']?.trim() || undefined

      if (config.webhookSecret !== undefined) {
        const signature = headers['x-hub-signature-256']
        if (!verifySignature(config.webhookSecret, raw, signature)) {
          const why = signature ? 'X-Hub-Signature-256 does not match the body' : 'missing X-Hub-Signature-256'
          log.warn('webhook rejected: bad signature', {reason: why, ...defined({event, delivery}), bytes: raw.length})
          return reject(401, 'signature', `${why} (check the webhook secret)`, {event, delivery})
        }
      }

      if (!event) {
        log.warn('webhook rejected: no X-GitHub-Event header', {...defined({delivery}), bytes: raw.length})
        return reject(400, 'missing-event', 'missing X-GitHub-Event header: not a GitHub webhook', {delivery})
      }

      const parsed = parsePayload(raw, headers['content-type'])
      if (!parsed.ok) {
        log.warn('webhook rejected: bad payload', {...defined({event, delivery}), reason: parsed.reason, bytes: raw.length})
        return reject(400, 'malformed', parsed.reason, {event, delivery})
      }
      const about = describeWebhook(event, parsed.body, delivery)

      if (event === 'ping') {
        log.info('ping received', about)
        return {status: 200, outcome: 'accepted', reason: 'ping', event, delivery, body: {ok: true, event: 'ping', message: 'pong: nothing forwarded'}}
      }

      let routes: Route[] | undefined
      try {
        routes = routeFor(event, config as SpigotConfig)
      } catch (error) {
        log.error('bad route table', {...about, error: errorMessage(error)})
        return reject(500, 'route-table', errorMessage(error), {event, delivery})
      }
      if (!routes || routes.length === 0) {
        if (config.unrouted === 'reject') {
          log.warn('webhook rejected: no route for this event', about)
          return reject(400, 'unrouted', `no route for the "${event}" event`, {event, delivery})
        }
        log.info('webhook ignored: no route for this event', about)
        return {status: 202, outcome: 'accepted', reason: 'unrouted', event, delivery, body: {ok: true, event, ignored: `no route for the "${event}" event`}}
      }

      const state = await readState()
      const kept = keptHeaders(headers)
      const toQueue: Array<{route: Route; cause: string}> = []
      const deliveries: IntakeResult['deliveries'] = []

      if (state === 'ON') {
        const results = await Promise.all(
          routes.map(async (route) => ({route, delivery: await deliver(route.target, route.path, raw, kept, {timeoutMs: config.forwardTimeoutMs})})),
        )
        for (const {route, delivery: outcome} of results) {
          deliveries.push({target: route.target.name, path: route.path, ...outcome})
          if (outcome.kind === 'accepted') {
            log.info('webhook forwarded', {...about, target: route.target.name, path: route.path, status: outcome.status, ms: outcome.ms})
          } else {
            const level = outcome.kind === 'client-error' ? 'warn' : 'info'
            log[level]('forward failed', {...about, target: route.target.name, path: route.path, kind: outcome.kind, status: outcome.status, error: outcome.error, ms: outcome.ms})
            toQueue.push({route, cause: `jenkins-${outcome.kind}`})
          }
        }
        if (toQueue.length === 0) {
          return {status: 200, outcome: 'forwarded', reason: 'jenkins-accepted', event, delivery, deliveries, body: {ok: true, forwarded: deliveries.map((d) => d.target)}}
        }
        if (request.fromQueue) {
          // Already queued (the original drain): report the failure so it stays in its queue.
          return reject(502, 'forward-failed', `Jenkins did not accept the webhook: ${deliveries.filter((d) => d.kind !== 'accepted').map((d) => `${d.target}: ${d.error ?? d.kind}`).join('; ')}`, {event, delivery, deliveries})
        }
      } else {
        if (request.fromQueue) {
          return reject(503, 'spigot-off', 'the spigot is OFF: no messages should be sent from the queue', {event, delivery})
        }
        for (const route of routes) toQueue.push({route, cause: state === 'OFF' ? 'spigot-off' : 'state-unknown'})
      }

      // Queue one copy per target that did not take it.
      const base: SpigotMessage = {
        spigot_state: state ?? 'OFF',
        from_queue: request.fromQueueValue ?? 'false',
        body: parsed.body,
        headers: kept,
        received_at: new Date().toISOString(),
      }
      // raw_body only when re-serialising `body` would not give back the exact bytes (pretty
      // printing, escapes, form encoding…). GitHub's compact JSON usually round-trips, and then the
      // message is half the size and replayBytes() still returns the signed bytes.
      const bodyText = parsed.form ? undefined : roundTrip(parsed.body, parsed.text, raw)
      if (bodyText === undefined) base.raw_body = raw.toString('base64')
      const group = groupOf(base)
      const dedupBase = delivery ?? 'sha256-' + createHash('sha256').update(raw).digest('hex').slice(0, 48)
      let largePointer: SpigotMessage['large_payload'] | undefined
      const queued: QueuedCopy[] = []
      for (const {route, cause} of toQueue) {
        let message: SpigotMessage = {...base, target: route.target.name}
        // The body's JSON text is already known (the round-trip check made it): splice it in
        // rather than serialise the 7 KB payload a second time.
        let text = bodyText === undefined ? encodeMessage(message) : encodeWithBodyText(message, bodyText)
        let large = false
        if (Buffer.byteLength(text) > queue.capabilities.maxBodyBytes) {
          // The parsed copy doubles the size; cistern replays raw_body, so drop it first.
          message = {...base, body: null, raw_body: base.raw_body ?? raw.toString('base64'), target: route.target.name}
          text = encodeMessage(message)
        }
        if (Buffer.byteLength(text) > queue.capabilities.maxBodyBytes) {
          if (!options.largePayloads) {
            log.error('webhook refused: too large for the queue and no large-payload bucket', {...about, bytes: raw.length, limit: queue.capabilities.maxBodyBytes, queue: queue.url})
            return reject(413, 'too-large', `the payload (${raw.length} bytes) is too large for the queue (${queue.capabilities.maxBodyBytes} bytes) and no --large-payload-bucket is set`, {event, delivery, deliveries, queued})
          }
          try {
            largePointer ??= await options.largePayloads.put(raw, {delivery, event})
          } catch (error) {
            log.error('webhook not stored: S3 failed', {...about, bytes: raw.length, error: errorMessage(error)})
            return reject(503, 'large-payload-error', errorMessage(error), {event, delivery, deliveries, queued})
          }
          const {raw_body: _omitted, ...rest} = message
          message = {...rest, body: null, large_payload: largePointer}
          text = encodeMessage(message)
          large = true
        }
        try {
          const sent = await send({body: text, groupId: group, deduplicationId: dedupId(dedupBase, route.target)})
          queued.push({target: route.target.name, id: sent.id, duplicate: Boolean(sent.duplicate), ...(large ? {large} : {})})
          log.info(sent.duplicate ? 'webhook already queued' : 'webhook queued', {...about, target: route.target.name, cause, id: sent.id, ...(large ? {s3: largePointer} : {})})
        } catch (error) {
          log.error('webhook not queued: the queue failed', {...about, target: route.target.name, queue: queue.url, error: errorMessage(error)})
          return reject(503, 'queue-error', `could not queue the webhook: ${errorMessage(error)}`, {event, delivery, deliveries, queued})
        }
      }

      if (options.commenter && event === 'pull_request' && queued.some((q) => !q.duplicate)) {
        // Courtesy only: never delays or fails the answer.
        options.commenter.queued(base).catch((error: unknown) => log.warn('PR comment failed', {...about, error: errorMessage(error)}))
      }

      const duplicate = queued.every((q) => q.duplicate)
      return {
        status: 202,
        outcome: 'queued',
        reason: duplicate ? 'duplicate' : toQueue[0]!.cause,
        event,
        delivery,
        deliveries,
        queued,
        body: {
          ok: true,
          queued: queued.map((q) => q.target),
          ...(deliveries.some((d) => d.kind === 'accepted') ? {forwarded: deliveries.filter((d) => d.kind === 'accepted').map((d) => d.target)} : {}),
          ...(duplicate ? {duplicate: true} : {}),
          state: state ?? 'unknown',
        },
      }
    },
  }
}

/** Log fields without the undefined ones (a human log line would print "undefined"). */
function defined(fields: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Record<string, string>
}

/**
 * JSON.stringify(body) when it reproduces the raw bytes exactly, else undefined. `text` is
 * raw decoded as UTF-8 (what was parsed). For valid UTF-8 the decoding is lossless, so equal
 * strings mean equal bytes; invalid UTF-8 decodes to U+FFFD and must not count as a match.
 */
export function roundTrip(body: unknown, text: string, raw: Buffer): string | undefined {
  const json = JSON.stringify(body)
  return json.length === text.length && json === text && isUtf8(raw) ? json : undefined
}

/**
 * encodeMessage(message) with `bodyText` (=== JSON.stringify(message.body)) spliced in: the same
 * string, same key order, without serialising the payload again.
 */
export function encodeWithBodyText(message: SpigotMessage, bodyText: string): string {
  // The intake builds messages as {spigot_state, from_queue, body, ...rest}: keep that order.
  const {spigot_state: state, from_queue: fromQueue, body: _body, ...rest} = message
  const tail = JSON.stringify(rest)
  return `{"spigot_state":${JSON.stringify(state)},"from_queue":${JSON.stringify(fromQueue)},"body":${bodyText}${tail === '{}' ? '}' : ',' + tail.slice(1)}`
}

/** Header names lower-cased (the first of two spellings wins, as with header()); arrays → their first value. */
function lowerCased(headers: IntakeRequest['headers']): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = Object.create(null)
  for (const key of Object.keys(headers)) {
    const name = key.toLowerCase()
    if (name in out) continue
    const value = headers[key]
    out[name] = Array.isArray(value) ? value[0] : value
  }
  return out
}

/** keptHeaders() from the lower-cased map: the kept headers, canonical names. */
function keptHeaders(lower: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of KEPT_HEADERS) {
    const value = lower[name.toLowerCase()]
    if (value !== undefined) out[name] = value
  }
  return out
}

/** X-GitHub-Delivery + ':' + target: a redelivery still waiting is not queued twice (per target). */
function dedupId(base: string, target: JenkinsTarget): string {
  return `${base}:${target.name}`.slice(0, 128)
}

/**
 * The embedded queue commits with synchronous=FULL: one fsync per transaction, and better-sqlite3
 * blocks the event loop meanwhile. So sends are group-committed: those that arrive while a commit
 * runs wait for it and then go together in one sendBatch (one transaction, one fsync) — under load
 * 64 waiting webhooks cost one disk flush, not 64. With `thread`, the commits run in a worker
 * thread (enqueue-worker.js) so the HTTP event loop keeps reading and verifying webhooks during the
 * fsync. A transaction is all-or-nothing, so when a batch fails each message is retried alone (on
 * this thread) and only the one at fault fails. Other backends send one by one (an SQS batch can
 * fail in part without saying which ids were stored).
 */
export interface Sender {
  send(input: SendInput): Promise<SendResult>
  close(): Promise<void>
}

interface Pending {
  input: SendInput
  resolve: (r: SendResult) => void
  reject: (e: unknown) => void
}

export function groupCommit(queue: Queue, options: {thread?: boolean; maxBatch?: number; log?: Logger} = {}): Sender {
  if (queue.kind !== 'sqlite') return {send: (input) => queue.send(input), close: async () => {}}
  const maxBatch = options.maxBatch ?? 256
  const pending: Pending[] = []
  let running = false
  let scheduled = false
  let worker: Promise<WriterThread | undefined> | undefined
  let closed = false

  const alone = (batch: Pending[]) => Promise.all(batch.map((p) => queue.send(p.input).then(p.resolve, p.reject)))

  const commit = async (batch: Pending[]) => {
    const thread = options.thread && !closed ? await (worker ??= startWriterThread(queue, options.log)) : undefined
    try {
      const results = thread ? await thread.sendBatch(batch.map((p) => p.input)) : await queue.sendBatch(batch.map((p) => p.input))
      batch.forEach((p, i) => p.resolve(results[i]!))
    } catch (error) {
      options.log?.warn('queue batch failed: sending its webhooks one by one', {batch: batch.length, error: errorMessage(error)})
      await alone(batch)
    }
  }

  const drain = async () => {
    scheduled = false
    if (running) return
    running = true
    try {
      while (pending.length > 0) await commit(pending.splice(0, maxBatch))
    } finally {
      running = false
    }
  }

  return {
    send: (input) =>
      new Promise<SendResult>((resolve, reject) => {
        pending.push({input, resolve, reject})
        if (!running && !scheduled) {
          scheduled = true
          // Let the requests already read in this event-loop turn join the batch.
          setImmediate(() => void drain())
        }
      }),
    async close() {
      closed = true
      while (running || pending.length > 0) await new Promise((resolve) => setTimeout(resolve, 5))
      const thread = await worker
      await thread?.close()
    },
  }
}

interface WriterThread {
  sendBatch(inputs: SendInput[]): Promise<SendResult[]>
  close(): Promise<void>
}

/** The writer thread, or undefined (send on this thread) when it cannot start (e.g. tests on .ts sources). */
async function startWriterThread(queue: Queue, log?: Logger): Promise<WriterThread | undefined> {
  const file = new URL('./enqueue-worker.js', import.meta.url)
  const [{existsSync}, {fileURLToPath}, {Worker}] = await Promise.all([import('node:fs'), import('node:url'), import('node:worker_threads')])
  if (!existsSync(fileURLToPath(file))) return undefined
  // --input-type (node -e scripts) is an error for a worker started from a file.
  const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--input-type'))
  const worker = new Worker(file, {workerData: {url: queue.url, fifo: queue.capabilities.fifo}, execArgv})
  worker.unref()
  const waiting = new Map<number, {resolve: (r: SendResult[]) => void; reject: (e: unknown) => void}>()
  let next = 0
  let dead: Error | undefined
  const ready = new Promise<boolean>((resolve) => {
    let started = false
    worker.on('message', (message: {ready?: boolean; error?: string; id?: number; results?: SendResult[]}) => {
      if (message.ready !== undefined) {
        started = true
        if (!message.ready) log?.warn('queue writer thread failed to start: writing on the main thread', {error: message.error})
        return resolve(message.ready)
      }
      const entry = waiting.get(message.id!)
      waiting.delete(message.id!)
      if (message.error !== undefined) entry?.reject(new Error(message.error))
      else entry?.resolve(message.results!)
    })
    const fail = (error: Error) => {
      if (!started) log?.warn('queue writer thread failed to start: writing on the main thread', {error: error.message})
      started = true
      dead = error
      resolve(false)
      for (const entry of waiting.values()) entry.reject(error)
      waiting.clear()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`queue writer thread exited (${code})`)))
  })
  if (!(await ready)) {
    void worker.terminate()
    return undefined
  }
  return {
    sendBatch(inputs) {
      if (dead) return Promise.reject(dead)
      const id = next++
      return new Promise<SendResult[]>((resolve, reject) => {
        waiting.set(id, {resolve, reject})
        worker.postMessage({id, inputs})
      })
    },
    async close() {
      if (dead) return
      // Keep the process alive until the thread has closed its database.
      worker.ref()
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      worker.postMessage({close: true})
      let timer: NodeJS.Timeout | undefined
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 2000)))])
      clearTimeout(timer)
      if (!dead) await worker.terminate()
    },
  }
}
