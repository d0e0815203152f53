import type {HandlerContext} from '../core/consume.js'
import {type Outcome, dead, delivered, released, retry, targetDown} from '../core/delivery.js'
import {errorMessage} from '../core/errors.js'
import type {Limiter} from '../core/limit.js'
import type {Logger} from '../core/log.js'
import type {QueueMessage} from '../core/queue/types.js'
import {KEPT_HEADERS, type SpigotMessage, groupOf, header, keptHeaders} from '../core/webhook-message.js'
import {type PrCommenter, pullRequestOf} from './comments.js'
import {type SpigotConfig, targetNamed} from './config.js'
import {type JenkinsClient, targetKey} from './jenkins.js'
import {LargePayloadError, type LargePayloadPointer} from './large-payload.js'
import {type QueuedWebhook, readQueuedWebhook} from './queued-webhook.js'
import {type Route, routeFor} from './routes.js'

/** Where the bytes behind a `large_payload` pointer come from, and where they go once delivered. */
export interface PayloadSource {
  read(pointer: LargePayloadPointer): Promise<Buffer>
  /** The webhook was delivered to every target that will ever get this object: it may go. */
  delivered(pointer: LargePayloadPointer): void
}

export interface ReplayOptions {
  config: SpigotConfig
  jenkins: JenkinsClient
  /** Per delivery. */
  deliveryTimeoutMs: number
  /** Seconds before a refused (suspect) message is tried again; default: the consumer's back-off by attempts. */
  retryDelaySeconds?: number
  /** --rate: a start per delivery. */
  limiter?: Limiter
  payloads: PayloadSource
  commenter?: PrCommenter
  log: Logger
}

/** A message read and routed, ready to be delivered. */
interface Replayable {
  webhook: QueuedWebhook
  message: QueuedWebhook['message']
  /** The kept GitHub headers, as they are sent to every target. */
  headers: Record<string, string>
  routes: Route[]
  label: string
}

/** Messages remembered with the targets that took them (a forgotten one is sent again to those: at least once). */
const MAX_REMEMBERED = 10_000

/** Outcomes by how much they decide for the message: the first in this order wins. */
const PRECEDENCE: ReadonlyArray<Outcome['kind']> = ['stop', 'dead', 'target-down', 'retry', 'released', 'delivered']

/**
 * One queued webhook replayed to Jenkins (the drain's handler, docs/delivery.md): decode it, find
 * its routes, read its bytes, POST them to each target whose gate is open, and let the judge turn
 * each answer into the outcome. A message is delivered once every target it is routed to took it;
 * a target that took it is not sent it again when the message comes back for another target.
 */
export class Replayer {
  /** Targets that took a message routed to several, while it waits for the others (this run only). */
  private readonly acceptedBy = new Map<string, Set<string>>()
  private readonly comments: Array<Promise<void>> = []

  constructor(private readonly options: ReplayOptions) {}

  /** The consumer's handler. */
  readonly handle = async (received: QueueMessage, context: HandlerContext): Promise<Outcome> => {
    const replayable = this.decode(received)
    if (!('message' in replayable)) return replayable
    context.setLabel(replayable.label)
    const took = this.acceptedBy.get(received.id)
    const pending = took ? replayable.routes.filter((route) => !took.has(route.target.name)) : replayable.routes
    const open = pending.filter((route) => context.gates.isOpen(targetKey(route.target.name)))
    if (open.length === 0 && pending[0]) return context.gates.heldBack(targetKey(pending[0].target.name))

    const body = await this.bodyOf(replayable.webhook, context)
    if (!Buffer.isBuffer(body)) return body
    const outcomes: Outcome[] = []
    for (const route of pending) outcomes.push(await this.deliverTo(route, received, replayable, body, context))
    return this.settle(received, replayable, outcomes, context)
  }

  /** Pull-request comments still being posted: awaited at the end of the run. */
  async finish(): Promise<void> {
    await Promise.all(this.comments)
  }

  /** The message and its routes, or why it can never be replayed (dead). */
  private decode(received: QueueMessage): Replayable | Outcome {
    let webhook: QueuedWebhook
    try {
      webhook = readQueuedWebhook(received.body)
    } catch (error) {
      return dead(`undecodable message: ${errorMessage(error)}`)
    }
    const {message} = webhook
    const headers = sentHeaders(message.headers)
    const event = named(headers, 'X-GitHub-Event')
    // The repository: the queue's group (which the intake sets even when the body went to S3), else the payload's.
    const label = `${event ?? 'webhook'} ${named(headers, 'X-GitHub-Delivery') ?? '-'} ${received.groupId ?? groupOf({...message, body: webhook.body()})}`
    const routes = routesOf({headers, target: message.target}, this.options.config)
    if (typeof routes === 'string') return {...dead(routes), label}
    return {webhook, message, headers, routes, label}
  }

  /** The bytes to POST, or the outcome when a large payload cannot be read. */
  private async bodyOf(webhook: QueuedWebhook, {gates}: HandlerContext): Promise<Buffer | Outcome> {
    const pointer = webhook.message.large_payload
    if (!pointer) return webhook.bytes()
    // S3 is a target too: while it is down its messages wait, not attempted.
    const key = `s3:${pointer.bucket}`
    if (!gates.isOpen(key)) return gates.heldBack(key)
    try {
      const bytes = await this.options.payloads.read(pointer)
      if (gates.isDown(key)) gates.succeeded(key)
      return bytes
    } catch (error) {
      return payloadFailure(key, error)
    }
  }

  /** One target: held back while its gate is closed, else POSTed and judged. */
  private async deliverTo(route: Route, received: QueueMessage, replayable: Replayable, body: Buffer, context: HandlerContext): Promise<Outcome> {
    const key = targetKey(route.target.name)
    if (!context.gates.isOpen(key)) return context.gates.heldBack(key)
    const {signal} = context
    try {
      await this.options.limiter?.take(signal)
    } catch {
      return released('the drain is stopping')
    }
    if (signal.aborted) return released('the drain is stopping')
    const delivery = await this.options.jenkins.deliver(route.target, route.path, body, replayable.headers, {
      timeoutMs: this.options.deliveryTimeoutMs,
      signal,
    })
    // Cut short by the stop deadline: not an answer from Jenkins.
    if (delivery.aborted) return released('the drain is stopping')
    const {answer} = delivery
    const said = answer.detail === undefined ? '' : 'error' in answer ? ` (${answer.detail})` : ` — ${answer.detail}`
    const outcome = context.judge.verdict(key, received.id, {...answer, detail: `POST ${route.path}${said}`})
    if (outcome.kind === 'delivered') {
      this.accepted(received.id).add(route.target.name)
      context.log.debug(`replayed ${replayable.label} to ${route.target.name} ${route.path} (${delivery.status ?? '?'}, ${delivery.ms} ms)`)
    }
    return outcome
  }

  /** Every target's outcome → the message's. */
  private settle(received: QueueMessage, replayable: Replayable, outcomes: Outcome[], context: HandlerContext): Outcome {
    const worst = [...outcomes].sort((a, b) => PRECEDENCE.indexOf(a.kind) - PRECEDENCE.indexOf(b.kind)).at(0) ?? delivered()
    // The consumer closes the gate of the outcome it is given; any other target that went down closes here.
    for (const outcome of outcomes) {
      if (outcome !== worst && outcome.kind === 'target-down') context.gates.failed(outcome.target, outcome.reason, {credentials: outcome.credentials})
    }
    if (worst.kind !== 'delivered') {
      // Dead: it will not come back to this run for the targets that are left.
      if (worst.kind === 'dead') this.acceptedBy.delete(received.id)
      if (worst.kind === 'retry' && this.options.retryDelaySeconds !== undefined) return retry(worst.reason, this.options.retryDelaySeconds)
      return worst
    }
    this.acceptedBy.delete(received.id)
    this.afterDelivery(replayable)
    return delivered()
  }

  /** Delivered everywhere: the overflow object may go, a pull request hears that testing resumes. */
  private afterDelivery({webhook, message, label}: Replayable): void {
    const {config, payloads, commenter, log} = this.options
    if (message.large_payload && ownsOverflowObject(message, config)) payloads.delivered(message.large_payload)
    const whole = commenter && header(message.headers, 'X-GitHub-Event') === 'pull_request' ? {...message, body: webhook.body()} : undefined
    if (commenter && whole && pullRequestOf(whole)) {
      this.comments.push(
        commenter.replayed(whole).catch((error: unknown) => {
          log.debug(`comment on ${label} failed: ${errorMessage(error)}`)
        }),
      )
    }
  }

  private accepted(id: string): Set<string> {
    let targets = this.acceptedBy.get(id)
    if (!targets) {
      // A watch runs for weeks: messages another consumer finished are forgotten, oldest first.
      if (this.acceptedBy.size >= MAX_REMEMBERED) this.forgetOldest()
      this.acceptedBy.set(id, (targets = new Set()))
    }
    return targets
  }

  private forgetOldest(): void {
    const oldest = this.acceptedBy.keys().next()
    if (!oldest.done) this.acceptedBy.delete(oldest.value)
  }
}

/** The targets and paths of a message, or the reason it cannot be replayed. */
export function routesOf(message: Pick<SpigotMessage, 'headers' | 'target'>, config: SpigotConfig): Route[] | string {
  const event = header(message.headers, 'X-GitHub-Event')
  if (!event) return 'no X-GitHub-Event header: cannot route'
  const routes = routeFor(event, config)
  const first = routes?.at(0)
  if (!routes || !first) return `no route for the "${event}" event (add one under spigot.routes)`
  if (!message.target) return routes
  // Queued for one named target (intake fanned out, or that target alone failed).
  const target = targetNamed(config, message.target)
  if (!target) return `the message names Jenkins target "${message.target}", which is not configured (known: ${config.targets.map((t) => t.name).join(', ')})`
  const own = routes.find((route) => route.target.name === target.name)
  return [{target, path: own?.path ?? first.path}]
}

/**
 * The intake writes one S3 object per webhook and queues one copy per target that did not take
 * it, each naming its target: the object is this message's alone when its event routes to one
 * target, or when the message is not a per-target copy (it goes to every target itself). Otherwise
 * another copy may still need it, and the bucket's lifecycle rule removes it (docs/spigot.md).
 */
export function ownsOverflowObject(message: Pick<SpigotMessage, 'headers' | 'target'>, config: SpigotConfig): boolean {
  if (!message.target) return true
  const event = header(message.headers, 'X-GitHub-Event')
  return event !== undefined && (routeFor(event, config)?.length ?? 0) <= 1
}

/** S3 would not give a large payload back: whose fault is it? */
function payloadFailure(key: string, error: unknown): Outcome {
  const reason = errorMessage(error)
  if (!(error instanceof LargePayloadError)) return retry(`cannot read the large payload: ${reason}`)
  switch (error.failure) {
    case 'missing':
      return dead(error.fix ? `${reason} — ${error.fix}` : reason)
    case 'unreachable':
    case 'throttled':
    case 'server':
      return targetDown(key, reason)
    case 'credentials':
    case 'access-denied':
      return targetDown(key, reason, {credentials: true})
    default:
      return retry(`cannot read the large payload: ${reason}`)
  }
}

const CANONICAL = new Set<string>(KEPT_HEADERS)

/** The kept GitHub headers under their canonical names: cistern's messages have them so already (no copy), the original Lambda's not. */
function sentHeaders(headers: Record<string, string>): Record<string, string> {
  for (const name in headers) if (!CANONICAL.has(name)) return keptHeaders(headers)
  return headers
}

/** A kept header by its canonical name (absent when GitHub did not send it). */
function named(headers: Record<string, string>, name: (typeof KEPT_HEADERS)[number]): string | undefined {
  return headers[name]
}
