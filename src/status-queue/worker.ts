import {setMaxListeners} from 'node:events'

import {UsageError} from '../core/errors.js'
import {type ConsumeResult, type Handler, consume} from '../core/consume.js'
import {type Outcome, dead, delivered, retry, stop} from '../core/delivery.js'
import type {Logger} from '../core/log.js'
import {registerSecret, silentLogger} from '../core/log.js'
import {openQueue} from '../core/queue/index.js'
import type {StatusQueueSettings} from './config.js'
import {commitSha, parseBuildEvent} from './event.js'
import {type GitHubClient, createGitHubClient} from './github.js'
import {hostMatches, parseRepositoryUrl} from './repo.js'
import {type StatusOptions, commitStatusFor} from './status.js'

export interface HandlerSettings {
  github: GitHubClient
  status?: StatusOptions
  /** Repository hosts that belong to this GitHub, or 'any' (--any-host). */
  hosts: string[] | 'any'
  /** A message still failing at this receive count is dead-lettered (0 = leave it to the queue's redrive policy). */
  maxAttempts?: number
}

/**
 * One queue message → one commit status. Anything that can never succeed (bad JSON, unknown
 * shape, no owner, HEAD instead of a SHA, foreign host, 404/422) is dead-lettered at once with a
 * log line saying why; transient failures are retried through the queue, so a poison message
 * never holds a worker slot or its FIFO group for long.
 */
export function statusHandler(settings: HandlerSettings): Handler {
  const reported = new ReportedStates()
  const tuned = new WeakSet<AbortSignal>()
  // SQS FIFO hands out several messages of a group per receive (EventBridge gives every event the
  // rule's one static group). Events for the same commit and context must post in that order;
  // different commits need not wait for each other.
  const tails = new Map<string, Promise<Outcome | undefined>>()
  const inOrder = (key: string, work: () => Promise<Outcome>): Promise<Outcome> => {
    const previous = tails.get(key) ?? Promise.resolve(undefined)
    const mine = previous.then((before) =>
      before && (before.kind === 'retry' || before.kind === 'stop') ? retry('an earlier event for this commit is being retried', 0) : work(),
    )
    const tail = mine.catch(() => retry('the previous handler failed', 0))
    tails.set(key, tail)
    void tail.then(() => {
      if (tails.get(key) === tail) tails.delete(key)
    })
    return mine
  }

  const handle: Handler = async (message, {signal, log}) => {
    // Every request in flight listens on the consumer's one shutdown signal: more than Node's default 10.
    if (!tuned.has(signal)) {
      tuned.add(signal)
      setMaxListeners(0, signal)
    }
    const fields: Record<string, unknown> = {messageId: message.id, receiveCount: message.receiveCount}
    const deadLetter = (reason: string) => {
      log.error(`dead-letter: ${reason}`, fields)
      return dead(reason)
    }

    const event = parseBuildEvent(message.body)
    if (event.kind === 'invalid') return deadLetter(event.reason)
    if (event.kind === 'ignore') {
      log.info(`skipped: ${event.reason}`, fields)
      return delivered()
    }
    const {build} = event
    Object.assign(fields, {pipeline: `${build.organization}/${build.pipeline}`, build: build.number, buildState: build.state})

    const sha = commitSha(build.commit)
    if (!sha) {
      const what = build.commit.toUpperCase() === 'HEAD' ? 'HEAD (the build never resolved a commit)' : `"${build.commit.slice(0, 80)}"`
      return deadLetter(`build.commit is ${what}, not a 40-hex SHA: GitHub statuses need the full commit SHA`)
    }
    const parsed = parseRepositoryUrl(build.repository)
    if (!parsed.ok) return deadLetter(parsed.reason)
    const {repo} = parsed
    Object.assign(fields, {repo: `${repo.owner}/${repo.name}`, sha})
    if (settings.hosts !== 'any' && !hostMatches(repo.host, settings.hosts)) {
      return deadLetter(
        `repository host ${repo.host} is not the GitHub host ${settings.hosts.join(', ')} (GITHUB_URL ${settings.github.apiUrl}); pass --any-host or add it to status-queue.repoHosts`,
      )
    }
    const status = commitStatusFor(build, settings.status)
    if (!status) return deadLetter(`unknown Buildkite build state "${build.state}" (map it in status-queue.states)`)
    Object.assign(fields, {state: status.state, context: status.context})

    const key = `${repo.host}/${repo.owner}/${repo.name}@${sha}|${status.context}`
    const post = async (): Promise<Outcome> => {
      const stale = reported.staleness(key, build.number, status.state)
      if (stale) {
        log.info(`skipped: stale event (${stale})`, fields)
        return delivered()
      }
      const result = await settings.github.postStatus({owner: repo.owner, repo: repo.name, sha}, status, signal)
      switch (result.kind) {
        case 'posted':
          reported.record(key, build.number, status.state)
          log.info('status posted', fields)
          return delivered()
        case 'dead':
          return deadLetter(result.reason)
        case 'auth':
          log.error(result.reason, fields)
          return stop(
            new UsageError(
              `${result.reason}: GITHUB_ACCESS_TOKEN is not accepted`,
              `set GITHUB_ACCESS_TOKEN to a token that may create commit statuses (repo:status) on ${settings.github.apiUrl}`,
            ),
          )
        case 'misdirected':
          log.error(result.reason, fields)
          return stop(
            new UsageError(
              `${result.reason} (GITHUB_URL ${settings.github.apiUrl})`,
              'set GITHUB_URL to the API base: https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise',
            ),
          )
        case 'retry': {
          const max = settings.maxAttempts ?? 0
          if (max > 0 && message.receiveCount >= max && !signal.aborted) {
            return deadLetter(`gave up after ${message.receiveCount} attempts: ${result.reason}`)
          }
          log.warn(`retry: ${result.reason}`, {...fields, delaySeconds: result.delaySeconds})
          return retry(result.reason, result.delaySeconds)
        }
      }
    }
    return message.groupId === undefined ? post() : inOrder(key, post)
  }

  return handle
}

/**
 * What this worker last posted per commit and context, so that an event overtaken by a later one
 * (a "running" delivered after "passed", an older build after a newer) does not turn a finished
 * status back. Standard queues do not keep order; this is per process and bounded, a best effort.
 */
class ReportedStates {
  private readonly latest = new Map<string, {number: number; final: boolean}>()

  constructor(private readonly max = 10_000) {}

  /** Why posting this would go backwards, or undefined. */
  staleness(key: string, number: number, state: string): string | undefined {
    const seen = this.latest.get(key)
    if (!seen) return undefined
    if (number < seen.number) return `build #${seen.number} of this commit was already reported`
    if (number === seen.number && seen.final && state === 'pending') return `build #${number} already finished`
    return undefined
  }

  record(key: string, number: number, state: string): void {
    const seen = this.latest.get(key)
    if (seen && (number < seen.number || (number === seen.number && seen.final && state === 'pending'))) return
    this.latest.delete(key)
    this.latest.set(key, {number, final: state !== 'pending'})
    if (this.latest.size > this.max) this.latest.delete(this.latest.keys().next().value!)
  }
}

export interface RunOptions {
  once?: boolean
  signal?: AbortSignal
  log?: Logger
  /** AWS region and profile for an SQS queue. */
  region?: string
  profile?: string
  /** Injected client (tests); else Octokit from the settings. */
  github?: GitHubClient
}

export interface StatusQueueSummary extends Omit<ConsumeResult, 'stopError'> {
  queue: string
  github: string
}

/** `cistern status-queue work`: open the queue and GitHub, consume until empty (--once) or a signal. */
export async function runStatusQueue(settings: StatusQueueSettings, options: RunOptions = {}): Promise<StatusQueueSummary> {
  const log = options.log ?? silentLogger
  registerSecret(settings.token)
  registerSecret(settings.apiKey)
  // consume() receives full batches of 10 and holds the extra messages (leased, heartbeated) until
  // slots free up, so a busy pool does not pay a receive — an fsync on the embedded queue — per status.
  const queue = await openQueue(settings.queueUrl, {
    apiKey: settings.apiKey,
    visibilityTimeout: settings.visibilityTimeout,
    // The embedded queue's own limit (5) would cut --max-attempts short; a limit in the URL still wins.
    maxReceiveCount: settings.maxAttempts > 0 && !/[?&]maxReceiveCount=/.test(settings.queueUrl) ? settings.maxAttempts : undefined,
    region: options.region,
    profile: options.profile,
    log,
  })
  try {
    const github =
      options.github ??
      (await createGitHubClient({
        apiUrl: settings.githubUrl,
        token: settings.token,
        log,
        concurrency: settings.github.concurrency,
        writesPerMinute: settings.github.writesPerMinute,
        retries: settings.github.retries,
        retryBaseMs: settings.github.retryBaseMs,
        inlineWaitMaxSeconds: settings.github.inlineWaitMaxSeconds,
        maxRetryDelaySeconds: settings.github.maxRetryDelaySeconds,
        requestTimeoutMs: settings.github.requestTimeoutMs,
      }))
    log.info('status-queue worker started', {
      queue: queue.url,
      github: github.apiUrl,
      concurrency: settings.concurrency,
      once: Boolean(options.once),
    })
    const handler = statusHandler({github, status: settings.status, hosts: settings.hosts, maxAttempts: settings.maxAttempts})
    const {stopError, ...result} = await consume(queue, handler, {
      once: options.once,
      concurrency: settings.concurrency,
      visibilityTimeout: settings.visibilityTimeout,
      stopDeadlineMs: settings.drainDeadlineMs,
      signal: options.signal,
      log,
      // As before the delivery contract (one pass, no deadline) until the worker adopts it.
      onePass: true,
    })
    if (stopError) throw stopError
    log.info('status-queue worker stopped', {stoppedBy: result.stoppedBy, posted: result.delivered, retried: result.retried, dead: result.dead})
    return {queue: queue.url, github: github.apiUrl, ...result}
  } finally {
    await queue.close()
  }
}
