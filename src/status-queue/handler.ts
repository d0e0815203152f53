/**
 * One queue message → one commit status (docs/status-queue.md, "What happens to each message").
 * The steps: read the event (`plan`: anything that can never post is dead at once, with its
 * reason), keep each commit's events in order (`CommitOrder`), skip what a later event already
 * overtook (`ReportedStates`), then post — retrying in-process what may pass in a moment — and
 * turn GitHub's answer into the outcome (`GitHubVerdicts`).
 */
import {setMaxListeners} from 'node:events'

import type {Handler, HandlerContext} from '../core/consume.js'
import {type Outcome, dead, delivered, released} from '../core/delivery.js'
import {backoffDelay, sleep} from '../core/loop.js'
import type {QueueMessage} from '../core/queue/types.js'
import type {GitHubAnswer} from './answers.js'
import {type BuildInfo, commitSha, parseBuildEvent} from './event.js'
import type {StatusPoster, StatusTarget} from './github.js'
import {CommitOrder, ReportedStates} from './order.js'
import {RepositoryResolver} from './repo.js'
import {type CommitStatus, type StatusOptions, StatusRenderer} from './status.js'
import {GitHubVerdicts, organisation} from './verdicts.js'

export interface HandlerSettings {
  github: StatusPoster
  status?: StatusOptions
  /** Repository hosts that belong to this GitHub, or 'any' (--any-host). */
  hosts: string[] | 'any'
  /** In-process retries of a 5xx, a request without answer or a short rate limit, before the message goes back (default 2). */
  retries?: number
  /** First in-process back-off (default 1000 ms, doubling, with jitter). */
  retryBaseMs?: number
  /** A rate limit that lifts within this many seconds is waited out in-process (default 5); a longer one closes the `github` gate. */
  inlineWaitMaxSeconds?: number
  /** Cap on how long a rate limit closes the `github` gate (default 900 s). */
  maxRetryDelaySeconds?: number
}

/** A message's status, ready to post. */
interface Planned {
  build: BuildInfo
  target: StatusTarget
  status: CommitStatus
  /** Its commit and context: events with the same key are posted in order. */
  key: string
}

export class StatusHandler {
  private readonly order = new CommitOrder()
  private readonly reported = new ReportedStates()
  private readonly repositories: RepositoryResolver
  private readonly statuses: StatusRenderer
  private readonly verdicts: GitHubVerdicts
  private readonly tuned = new WeakSet<AbortSignal>()
  private readonly retries: number
  private readonly retryBaseMs: number
  private readonly inlineWaitMaxSeconds: number

  constructor(private readonly settings: HandlerSettings) {
    this.repositories = new RepositoryResolver(settings.hosts, settings.github.apiUrl)
    this.statuses = new StatusRenderer(settings.status)
    this.verdicts = new GitHubVerdicts(settings.github.apiUrl, settings.maxRetryDelaySeconds)
    this.retries = settings.retries ?? 2
    this.retryBaseMs = settings.retryBaseMs ?? 1000
    this.inlineWaitMaxSeconds = settings.inlineWaitMaxSeconds ?? 5
  }

  readonly handle: Handler = async (message, context) => {
    this.tune(context.signal)
    const planned = this.plan(message, context)
    if (!('key' in planned)) return planned
    const post = () => this.post(message, planned, context)
    // A FIFO queue hands out a group's events together: keep each commit's in order among them.
    return message.groupId === undefined ? post() : this.order.run(planned.key, post)
  }

  /** The status to post, or the outcome of a message that will never post one. */
  private plan(message: QueueMessage, context: HandlerContext): Planned | Outcome {
    const event = parseBuildEvent(message.body)
    if (event.kind === 'invalid') return dead(event.reason)
    if (event.kind === 'ignore') {
      context.log.info(`skipped: ${event.reason}`)
      return delivered()
    }
    const {build} = event
    context.setLabel(`${build.organization}/${build.pipeline}#${build.number}`)
    const sha = commitSha(build.commit)
    if (!sha) {
      const what = build.commit.toUpperCase() === 'HEAD' ? 'HEAD (the build never resolved a commit)' : `"${build.commit.slice(0, 80)}"`
      return dead(`build.commit is ${what}, not a 40-hex SHA: GitHub statuses need the full commit SHA`)
    }
    const resolved = this.repositories.resolve(build.repository)
    if (!resolved.ok) return dead(resolved.reason)
    const {repo} = resolved
    const status = this.statuses.render(build)
    if (!status) return dead(`unknown Buildkite build state "${build.state}" (map it in status-queue.states)`)
    return {build, status, target: {owner: repo.owner, repo: repo.name, sha}, key: `${repo.host}/${repo.owner}/${repo.name}@${sha}|${status.context}`}
  }

  /** Post unless overtaken or its organisation is held back; the answer becomes the outcome. */
  private async post(message: QueueMessage, {build, target, status, key}: Planned, context: HandlerContext): Promise<Outcome> {
    const stale = this.reported.staleness(key, build.number, status.state)
    if (stale) {
      context.log.info(`skipped: stale event (${stale})`)
      return delivered()
    }
    const org = organisation(target.owner)
    if (!context.gates.isOpen(org)) return context.gates.heldBack(org)
    const answer = await this.postWithRetries(target, status, context.signal).catch((error: unknown) => {
      if (context.signal.aborted) return undefined
      throw error
    })
    // Past the stop deadline: the consumer has released the message already.
    if (answer === undefined || context.signal.aborted) return released('the worker stopped before GitHub answered')
    const outcome = this.verdicts.ofStatus(answer, target.owner, message.id, context.judge)
    if (outcome.kind === 'delivered') {
      this.reported.record(key, build.number, status.state)
      if (context.log.level === 'debug') {
        context.log.debug('status posted', {repo: `${target.owner}/${target.repo}`, sha: target.sha, state: status.state, context: status.context})
      }
    }
    return outcome
  }

  /** In-process retries of what may pass in a moment: GitHub unwell (5xx, no answer) and a rate limit about to lift. */
  private async postWithRetries(target: StatusTarget, status: CommitStatus, signal: AbortSignal): Promise<GitHubAnswer> {
    for (let attempt = 1; ; attempt++) {
      const answer = await this.settings.github.post(target, status, signal)
      const waitMs = this.retryWait(answer, attempt)
      if (waitMs === undefined || !(await sleep(waitMs, signal))) return answer
    }
  }

  private retryWait(answer: GitHubAnswer, attempt: number): number | undefined {
    if (attempt > this.retries) return undefined
    if (answer.kind === 'unwell') return backoffDelay(attempt, {baseMs: this.retryBaseMs})
    if (answer.kind === 'rate-limited' && answer.seconds <= this.inlineWaitMaxSeconds) return answer.seconds * 1000
    return undefined
  }

  /** Every request in flight listens on the consumer's one stop signal: more than Node's default 10. */
  private tune(signal: AbortSignal): void {
    if (this.tuned.has(signal)) return
    this.tuned.add(signal)
    setMaxListeners(0, signal)
  }
}

/** The handler as consume() takes it. */
export function statusHandler(settings: HandlerSettings): Handler {
  return new StatusHandler(settings).handle
}
