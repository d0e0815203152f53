import {errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {type SampledLogger, sampledLogger} from '../core/log-sample.js'
import {type Sender, coalescingSender} from '../core/queue/batching.js'
import type {Queue} from '../core/queue/types.js'
import {KEPT_HEADERS, type SpigotMessage} from '../core/webhook-message.js'
import type {SpigotConfig} from './config.js'
import {JenkinsForwarder} from './forward.js'
import type {Delivery} from './jenkins.js'
import type {LargePayloadPointer, LargePayloadStore} from './large-payload.js'
import {ArrivalOrder, QueuedAhead} from './order.js'
import {type MessageFields, deduplicationFor, encodeLargePayloadMessage, encodeQueuedWebhook, fingerprint, fitsIn, groupFor} from './queued-message.js'
import {type Route, routeFor} from './routes.js'
import {type Webhook, aboutWebhook, parsePayload, payloadFacts, verifySignature} from './webhook.js'

/**
 * The spigot's intake decision, independent of the transport (fastify in `spigot serve`, API
 * Gateway in the Lambda): receive (verify, parse) → route → per target, forward (state ON) or
 * queue → answer. The rule that matters: a 2xx answer only once Jenkins accepted the webhook or the
 * queue durably holds it; anything else is an error status GitHub shows in its delivery log.
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
  /** The spigot's state for this request (the Lambda: the stage variable); else IntakeOptions.state is read. */
  state?: SpigotStateValue
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
  config: Pick<SpigotConfig, 'routes' | 'targets' | 'unrouted' | 'forwardTimeoutMs' | 'webhookSecret' | 'healthPath'>
  queue: Queue
  /** The spigot's state, read per request (serve: the state store), unless the request brings it. */
  state?: () => Promise<SpigotStateValue>
  log: Logger
  /** Where payloads too big for the queue go; without it they get 413. */
  largePayloads?: LargePayloadStore
  /** PR comment when a pull_request webhook is queued (non-fatal, not awaited). */
  commenter?: {queued(message: SpigotMessage): Promise<void>}
  /** Embedded queue: commit in the queue layer's writer thread, so the fsync does not block the event loop. */
  writerThread?: boolean
}

export interface Intake {
  handle(request: IntakeRequest): Promise<IntakeResult>
  /** The forwards' target gates (serve's `cistern_target_up`). */
  readonly forwarder: JenkinsForwarder
  /** Wait for queued sends and stop the writer thread (not the queue). */
  close(): Promise<void>
}

export function createIntake(options: IntakeOptions): Intake {
  return new SpigotIntake(options)
}

/** What became of a webhook for one of its targets. */
type TargetOutcome =
  | {kind: 'forwarded'; route: Route; delivery: Delivery}
  | {kind: 'queued'; route: Route; cause: string; copy: QueuedCopy; delivery?: Delivery}
  | {kind: 'failed'; route: Route; status: number; reason: string; error: string; delivery?: Delivery}

/** The queued message of one copy, or why there is none. */
type Message = {text: string; large?: LargePayloadPointer} | {status: 413 | 503; reason: string; error: string}

class SpigotIntake implements Intake {
  readonly forwarder: JenkinsForwarder
  private readonly sender: Sender
  private readonly order = new ArrivalOrder()
  private readonly ahead: QueuedAhead
  /** Per-webhook lines, sampled at volume. */
  private readonly log: SampledLogger
  /** The queue's sender hands messages over in order (one commit at a time): a copy is decided once handed over. */
  private readonly ordered: boolean
  /** One S3 object per webhook, whatever the number of targets it is queued for. */
  private readonly stored = new WeakMap<Webhook, Promise<LargePayloadPointer>>()

  constructor(private readonly options: IntakeOptions) {
    this.log = sampledLogger(options.log)
    this.sender = coalescingSender(options.queue, {thread: options.writerThread, log: options.log})
    this.ordered = options.queue.kind === 'sqlite'
    this.ahead = new QueuedAhead(options.queue, {log: options.log})
    this.forwarder = new JenkinsForwarder({timeoutMs: options.config.forwardTimeoutMs, healthPath: options.config.healthPath, log: options.log})
  }

  async handle(request: IntakeRequest): Promise<IntakeResult> {
    const webhook = this.receive(request)
    if (!('raw' in webhook)) return webhook
    if (webhook.event === 'ping') {
      this.log.info('ping received', aboutWebhook(webhook.event, webhook.facts, webhook.delivery))
      return {status: 200, outcome: 'accepted', reason: 'ping', event: webhook.event, delivery: webhook.delivery, body: {ok: true, event: 'ping', message: 'pong: nothing forwarded'}}
    }
    const routes = this.route(webhook)
    if (!Array.isArray(routes)) return routes
    const state = request.state ?? (await this.readState())
    if (request.fromQueue) return this.replay(webhook, routes, state)
    const fromQueue = request.fromQueueValue ?? 'false'
    const outcomes = await Promise.all(routes.map((route) => this.settle(webhook, route, state, fromQueue)))
    return this.answer(webhook, outcomes, state)
  }

  async close(): Promise<void> {
    await this.forwarder.close()
    await this.sender.close()
    this.log.flush()
  }

  /** Verify the signature over the raw bytes, then parse: the webhook, or the answer refusing it. */
  private receive(request: IntakeRequest): Webhook | IntakeResult {
    const raw = request.rawBody
    const headers = lowerCased(request.headers)
    const event = headers['x-github-event']?.trim()
    const delivery = nonEmpty(headers['x-github-delivery']?.trim())
    const secret = this.options.config.webhookSecret
    if (secret !== undefined) {
      const signature = headers['x-hub-signature-256']
      if (!verifySignature(secret, raw, signature)) {
        const why = signature ? 'X-Hub-Signature-256 does not match the body' : 'missing X-Hub-Signature-256'
        this.log.warn('webhook rejected: bad signature', {reason: why, ...defined({event, delivery}), bytes: raw.length})
        return rejection(401, 'signature', `${why} (check the webhook secret)`, {event, delivery})
      }
    }
    if (!event) {
      this.log.warn('webhook rejected: no X-GitHub-Event header', {...defined({delivery}), bytes: raw.length})
      return rejection(400, 'missing-event', 'missing X-GitHub-Event header: not a GitHub webhook', {delivery})
    }
    const parsed = parsePayload(raw, headers['content-type'])
    if (!parsed.ok) {
      this.log.warn('webhook rejected: bad payload', {...defined({event, delivery}), reason: parsed.reason, bytes: raw.length})
      return rejection(400, 'malformed', parsed.reason, {event, delivery})
    }
    return {event, delivery, raw, text: parsed.text, form: parsed.form, body: parsed.body, facts: payloadFacts(parsed.body), headers: keptHeaders(headers)}
  }

  /** The webhook's routes, or the answer for an event without one (unrouted: accept or reject). */
  private route(webhook: Webhook): Route[] | IntakeResult {
    const {event, delivery} = webhook
    let routes: Route[] | undefined
    try {
      routes = routeFor(event, this.options.config)
    } catch (error) {
      this.options.log.error('bad route table', {...aboutWebhook(event, webhook.facts, delivery), error: errorMessage(error)})
      return rejection(500, 'route-table', errorMessage(error), {event, delivery})
    }
    if (routes && routes.length > 0) return routes
    const about = aboutWebhook(event, webhook.facts, delivery)
    if (this.options.config.unrouted === 'reject') {
      this.log.warn('webhook rejected: no route for this event', about)
      return rejection(400, 'unrouted', `no route for the "${event}" event`, {event, delivery})
    }
    this.log.warn('webhook dropped: no route for this event (unrouted: accept; forward sends it to the "*" route)', about)
    return {status: 202, outcome: 'accepted', reason: 'unrouted', event, delivery, body: {ok: true, event, ignored: `no route for the "${event}" event`}}
  }

  private async readState(): Promise<SpigotStateValue | undefined> {
    if (!this.options.state) return undefined
    try {
      return await this.options.state()
    } catch (error) {
      this.options.log.error('could not read the spigot state: queueing to be safe', {error: errorMessage(error)})
      return undefined
    }
  }

  /** One target: forward or queue, decided after the earlier webhooks of its repository for that target. */
  private settle(webhook: Webhook, route: Route, state: SpigotStateValue | undefined, fromQueue: string): Promise<TargetOutcome> {
    const group = groupFor(webhook.facts.repository, route.target.name)
    return this.order.inTurn(group, async (decided) => {
      let cause = await this.reasonToQueue(route, state, group)
      let delivery: Delivery | undefined
      if (cause === undefined) {
        delivery = await this.forwarder.forward(route, webhook, webhook.delivery ?? fingerprint(webhook.raw))
        const about = {...aboutWebhook(webhook.event, webhook.facts, webhook.delivery), target: route.target.name, path: route.path}
        if (delivery.kind === 'accepted') {
          this.log.info('webhook forwarded', {...about, status: delivery.status, ms: delivery.ms})
          return {kind: 'forwarded', route, delivery}
        }
        this.log[delivery.kind === 'client-error' ? 'warn' : 'info']('forward failed: queueing it', {...about, kind: delivery.kind, status: delivery.status, error: delivery.error, ms: delivery.ms})
        cause = `jenkins-${delivery.kind}`
      }
      const fields = {state: state ?? 'OFF', fromQueue, receivedAt: new Date().toISOString(), target: route.target.name}
      return this.enqueue(webhook, route, {fields, group, cause, delivery}, decided)
    })
  }

  /** Why this copy goes to the queue without trying Jenkins, if it does. */
  private async reasonToQueue(route: Route, state: SpigotStateValue | undefined, group: string): Promise<string | undefined> {
    if (state === undefined) return 'state-unknown'
    if (state === 'OFF') return 'spigot-off'
    if (!this.forwarder.isOpen(route.target)) return 'jenkins-down'
    if (await this.ahead.has(group)) return 'behind-queued'
    return undefined
  }

  private async enqueue(
    webhook: Webhook,
    route: Route,
    copy: {fields: MessageFields; group: string; cause: string; delivery?: Delivery},
    decided: () => void,
  ): Promise<TargetOutcome> {
    const {fields, group, cause, delivery} = copy
    const about = {...aboutWebhook(webhook.event, webhook.facts, webhook.delivery), target: route.target.name}
    const message = await this.messageFor(webhook, fields)
    if ('status' in message) return {kind: 'failed', route, ...message, delivery}
    const stored = this.sender.send({body: message.text, groupId: group, deduplicationId: deduplicationFor(webhook, route.target.name)})
    this.ahead.track(group, stored)
    if (this.ordered) decided()
    try {
      const sent = await stored
      const duplicate = sent.duplicate === true
      this.log.info(duplicate ? 'webhook already queued' : 'webhook queued', {...about, cause, id: sent.id, ...(message.large ? {s3: message.large} : {})})
      return {kind: 'queued', route, cause, delivery, copy: {target: route.target.name, id: sent.id, duplicate, ...(message.large ? {large: true} : {})}}
    } catch (error) {
      this.options.log.error('webhook not queued: the queue failed', {...about, queue: this.options.queue.url, error: errorMessage(error)})
      return {kind: 'failed', route, status: 503, reason: 'queue-error', error: `could not queue the webhook: ${errorMessage(error)}`, delivery}
    }
  }

  /** The message text; too big for the queue: without the parsed body, then the bytes in S3 (or 413). */
  private async messageFor(webhook: Webhook, fields: MessageFields): Promise<Message> {
    const limit = this.options.queue.capabilities.maxBodyBytes
    const full = encodeQueuedWebhook(webhook, fields)
    if (fitsIn(full, limit)) return {text: full}
    // cistern replays raw_body: the parsed copy goes first.
    const rawOnly = encodeQueuedWebhook(webhook, fields, {body: false})
    if (fitsIn(rawOnly, limit)) return {text: rawOnly}
    const about = aboutWebhook(webhook.event, webhook.facts, webhook.delivery)
    const store = this.options.largePayloads
    if (!store) {
      this.options.log.error('webhook refused: too large for the queue and no large-payload bucket', {...about, bytes: webhook.raw.length, limit, queue: this.options.queue.url})
      return {status: 413, reason: 'too-large', error: `the payload (${webhook.raw.length} bytes) is too large for the queue (${limit} bytes) and no --large-payload-bucket is set`}
    }
    let put = this.stored.get(webhook)
    if (!put) this.stored.set(webhook, (put = store.put(webhook.raw, {delivery: webhook.delivery, event: webhook.event})))
    try {
      const pointer = await put
      return {text: encodeLargePayloadMessage(webhook, fields, pointer), large: pointer}
    } catch (error) {
      this.options.log.error('webhook not stored: S3 failed', {...about, bytes: webhook.raw.length, error: errorMessage(error)})
      return {status: 503, reason: 'large-payload-error', error: errorMessage(error)}
    }
  }

  /** The original send_from_queue's replay (`?from_queue=True`): forward only; a failure stays in its queue. */
  private async replay(webhook: Webhook, routes: Route[], state: SpigotStateValue | undefined): Promise<IntakeResult> {
    const {event, delivery} = webhook
    if (state !== 'ON') return rejection(503, 'spigot-off', 'the spigot is OFF: no messages should be sent from the queue', {event, delivery})
    const messageId = delivery ?? fingerprint(webhook.raw)
    const deliveries = await Promise.all(routes.map(async (route) => ({target: route.target.name, path: route.path, ...(await this.forwarder.forward(route, webhook, messageId))})))
    const failed = deliveries.filter((d) => d.kind !== 'accepted')
    if (failed.length === 0) return {status: 200, outcome: 'forwarded', reason: 'jenkins-accepted', event, delivery, deliveries, body: {ok: true, forwarded: deliveries.map((d) => d.target)}}
    const why = failed.map((d) => `${d.target}: ${d.error ?? d.kind}`).join('; ')
    return rejection(502, 'forward-failed', `Jenkins did not accept the webhook: ${why}`, {event, delivery, deliveries})
  }

  /** The answer for what became of the webhook's copies. */
  private answer(webhook: Webhook, outcomes: TargetOutcome[], state: SpigotStateValue | undefined): IntakeResult {
    const {event, delivery} = webhook
    const deliveries = outcomes.flatMap((o) => (o.delivery ? [{target: o.route.target.name, path: o.route.path, ...o.delivery}] : []))
    const queued = outcomes.flatMap((o) => (o.kind === 'queued' ? [o.copy] : []))
    const failed = outcomes.find((o) => o.kind === 'failed')
    if (failed) return rejection(failed.status, failed.reason, failed.error, {event, delivery, deliveries, queued})
    const forwarded = outcomes.filter((o) => o.kind === 'forwarded').map((o) => o.route.target.name)
    const firstQueued = outcomes.find((o) => o.kind === 'queued')
    if (!firstQueued) return {status: 200, outcome: 'forwarded', reason: 'jenkins-accepted', event, delivery, deliveries, body: {ok: true, forwarded}}
    const duplicate = queued.every((q) => q.duplicate)
    if (this.options.commenter && event === 'pull_request' && !duplicate) this.comment(webhook, state)
    return {
      status: 202,
      outcome: 'queued',
      reason: duplicate ? 'duplicate' : firstQueued.cause,
      event,
      delivery,
      deliveries,
      queued,
      body: {ok: true, queued: queued.map((q) => q.target), ...(forwarded.length > 0 ? {forwarded} : {}), ...(duplicate ? {duplicate: true} : {}), state: state ?? 'unknown'},
    }
  }

  /** Courtesy only: never delays or fails the answer. */
  private comment(webhook: Webhook, state: SpigotStateValue | undefined): void {
    const message: SpigotMessage = {spigot_state: state ?? 'OFF', from_queue: 'false', body: webhook.body, headers: webhook.headers}
    this.options.commenter
      ?.queued(message)
      .catch((error: unknown) => this.options.log.warn('PR comment failed', {...aboutWebhook(webhook.event, webhook.facts, webhook.delivery), error: errorMessage(error)}))
  }
}

function rejection(status: number, reason: string, error: string, extra: Partial<IntakeResult> = {}): IntakeResult {
  return {status, outcome: 'rejected', reason, body: {error}, ...extra}
}

/** An empty header is no header. */
function nonEmpty(value: string | undefined): string | undefined {
  return value === '' ? undefined : value
}

/** Log fields without the undefined ones (a human log line would print "undefined"). */
function defined(fields: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) out[key] = value
  return out
}

/** Header names lower-cased (the first of two spellings wins); arrays → their first value. */
function lowerCased(headers: IntakeRequest['headers']): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = Object.create(null) as Record<string, string | undefined>
  for (const key of Object.keys(headers)) {
    const name = key.toLowerCase()
    if (name in out) continue
    const value = headers[key]
    out[name] = Array.isArray(value) ? value[0] : value
  }
  return out
}

/** The kept GitHub headers from the lower-cased map, with their canonical names. */
function keptHeaders(lower: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of KEPT_HEADERS) {
    const value = lower[name.toLowerCase()]
    if (value !== undefined) out[name] = value
  }
  return out
}
