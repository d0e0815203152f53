import {TargetGates, TargetJudge} from '../core/delivery.js'
import {type Logger, silentLogger} from '../core/log.js'
import type {JenkinsTarget} from './config.js'
import {type Delivery, JenkinsClient, targetKey} from './jenkins.js'
import type {Route} from './routes.js'
import type {Webhook} from './webhook.js'

export interface ForwarderOptions {
  /** Per forward: GitHub gives up after 10 s, so the intake queues after a short wait. */
  timeoutMs: number
  /** For the health check when nothing was forwarded for a while (metrics). */
  healthPath?: string
  log?: Logger
  now?: () => number
  /** Default: a client of its own, closed by close(). */
  jenkins?: JenkinsClient
}

/** Health is checked for the metrics only when no forward said anything for this long. */
const FRESH_MS = 60_000
const HEALTH_TIMEOUT_MS = 2000

/**
 * The intake's forwards to Jenkins, under the delivery contract: the core's judge turns each answer
 * into a verdict, and a target-down verdict closes the target's gate for a back-off (1 s doubling to
 * 60 s). While a gate is closed the intake queues at once instead of making every webhook wait for
 * the forward timeout of a Jenkins that just failed; the next webhook after the back-off tries again,
 * and a success opens the gate.
 */
export class JenkinsForwarder {
  readonly gates: TargetGates
  private readonly judge: TargetJudge
  /** When a forward (or a health check) last said something about each target. */
  private readonly heard = new Map<string, number>()
  private readonly checking = new Map<string, Promise<boolean>>()
  private readonly now: () => number
  private readonly jenkins: JenkinsClient

  constructor(private readonly options: ForwarderOptions) {
    this.now = options.now ?? Date.now
    this.jenkins = options.jenkins ?? new JenkinsClient()
    this.gates = new TargetGates({log: options.log ?? silentLogger, now: this.now})
    this.judge = new TargetJudge(this.gates)
  }

  /** False while the target's gate is closed after a failure. */
  isOpen(target: JenkinsTarget): boolean {
    return this.gates.isOpen(targetKey(target.name))
  }

  /** POSTs the webhook's raw bytes and GitHub headers; `messageId` tells the judge webhooks apart. */
  async forward(route: Route, webhook: Webhook, messageId: string): Promise<Delivery> {
    const delivery = await this.jenkins.deliver(route.target, route.path, webhook.raw, webhook.headers, {timeoutMs: this.options.timeoutMs})
    const key = targetKey(route.target.name)
    this.heard.set(key, this.now())
    const verdict = this.judge.verdict(key, messageId, delivery.answer)
    if (verdict.kind === 'target-down') this.gates.failedWith(verdict)
    return delivery
  }

  /**
   * Whether the target is up, for `cistern_target_up`: what the forwards said, or, when none said
   * anything for a minute (the spigot OFF), a health check (GET /health/ …, 2 s).
   */
  async isUp(target: JenkinsTarget): Promise<boolean> {
    const key = targetKey(target.name)
    if (this.now() - (this.heard.get(key) ?? Number.NEGATIVE_INFINITY) < FRESH_MS) return !this.gates.isDown(key)
    let check = this.checking.get(key)
    if (!check) {
      check = this.checkHealth(target, key).finally(() => this.checking.delete(key))
      this.checking.set(key, check)
    }
    return check
  }

  /** Closes the keep-alive connections to Jenkins (the client it made; a given one is the giver's). */
  async close(): Promise<void> {
    if (!this.options.jenkins) await this.jenkins.close()
  }

  private async checkHealth(target: JenkinsTarget, key: string): Promise<boolean> {
    const health = await this.jenkins.health(target, {healthPath: this.options.healthPath, timeoutMs: HEALTH_TIMEOUT_MS})
    this.heard.set(key, this.now())
    if (health.state === 'down') this.gates.failed(key, health.detail ?? 'down')
    else this.gates.succeeded(key)
    return health.state !== 'down'
  }
}
