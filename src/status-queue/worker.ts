/**
 * `cistern status-queue work`: the queue, GitHub and the one consumer put together. GitHub is the
 * consumer's one target (`github`): while it is down or rate-limited nothing is received (the
 * facade and SQS count every receive), and its health is checked before receiving (the probe).
 */
import {type ConsumeCounters, type ConsumeResult, consume} from '../core/consume.js'
import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
import {seconds} from '../core/loop.js'
import {openQueue} from '../core/queue/index.js'
import type {Queue} from '../core/queue/types.js'
import {registerSecret} from '../core/secrets.js'
import type {StatusQueueSettings} from './config.js'
import {GitHubStatuses} from './github.js'
import {statusHandler} from './handler.js'
import {GITHUB, GitHubVerdicts} from './verdicts.js'

export interface RunOptions {
  once?: boolean
  signal?: AbortSignal
  log?: Logger
  /** AWS region and profile for an SQS queue. */
  region?: string
  profile?: string
}

export interface StatusQueueSummary extends Omit<ConsumeResult, 'stopError'> {
  queue: string
  github: string
}

/** Work the queue until it is empty and nothing more can be done now (once), or a stop signal. */
export async function runStatusQueue(settings: StatusQueueSettings, options: RunOptions = {}): Promise<StatusQueueSummary> {
  const log = options.log ?? silentLogger
  registerSecret(settings.apiKey)
  const queue = await openQueue(settings.queueUrl, {
    apiKey: settings.apiKey,
    visibilityTimeout: settings.visibilityTimeout,
    // The embedded queue's own limit (5) would cut --max-attempts short; a limit in the URL still wins.
    maxReceiveCount: settings.maxAttempts > 0 && !/[?&]maxReceiveCount=/.test(settings.queueUrl) ? settings.maxAttempts : undefined,
    deadLetterUrl: settings.deadLetterUrl,
    consumer: true,
    region: options.region,
    profile: options.profile,
    log,
  })
  const github = new GitHubStatuses({
    apiUrl: settings.githubUrl,
    token: settings.token,
    connections: settings.concurrency,
    concurrency: settings.github.concurrency < settings.concurrency ? settings.github.concurrency : undefined,
    writesPerMinute: settings.github.writesPerMinute,
    requestTimeoutMs: settings.github.requestTimeoutMs,
  })
  try {
    const verdicts = new GitHubVerdicts(github.apiUrl, settings.github.maxRetryDelaySeconds)
    const {retries, retryBaseMs, inlineWaitMaxSeconds, maxRetryDelaySeconds} = settings.github
    const handler = statusHandler({github, status: settings.status, hosts: settings.hosts, retries, retryBaseMs, inlineWaitMaxSeconds, maxRetryDelaySeconds})
    log.info('status-queue worker started', {queue: queue.url, github: github.apiUrl, concurrency: settings.concurrency, once: Boolean(options.once)})
    const {stopError: _, ...result} = await consume(queue, handler, {
      once: options.once,
      // --once after a worker was killed: its leases lapse within the run, so the run delivers them.
      awaitLapsingLeases: true,
      deadlineMs: settings.deadlineMs,
      giveUpAfterMs: settings.giveUpAfterMs,
      maxAttempts: await attemptLimit(settings, queue),
      target: GITHUB,
      probe: async (signal) => verdicts.ofHealth(await github.health(signal)),
      concurrency: settings.concurrency,
      visibilityTimeout: settings.visibilityTimeout,
      stopDeadlineMs: settings.stopDeadlineMs,
      signal: options.signal,
      log,
      onProgress: options.once ? undefined : new ActivityLog(log).progress,
    })
    log.info('status-queue worker stopped', {stoppedBy: result.stoppedBy, posted: result.delivered, retried: result.retried, released: result.released, dead: result.dead})
    return {queue: queue.url, github: github.apiUrl, ...result}
  } finally {
    await Promise.all([queue.close(), github.close()])
  }
}

/** The human summary line. */
export function describeSummary(summary: StatusQueueSummary): string {
  return `posted ${summary.delivered}, retried ${summary.retried}, dead-lettered ${summary.dead}, released ${summary.released} (queue ${summary.queue})`
}

/** The lower of --max-attempts and the queue's own limit (an SQS redrive policy's maxReceiveCount): the worker dead-letters first, loudly. */
async function attemptLimit(settings: StatusQueueSettings, queue: Queue): Promise<number | undefined> {
  const limits = [settings.maxAttempts, (await queue.maxAttempts?.()) ?? 0].filter((limit) => limit > 0)
  return limits.length > 0 ? Math.min(...limits) : undefined
}

/**
 * A foreground worker's sign of life: at most one info line a minute, when something happened
 * (per-status lines are debug: at hundreds a second they would cost more than the statuses).
 */
class ActivityLog {
  private last: ConsumeCounters
  private lastAt = Date.now()

  constructor(
    private readonly log: Logger,
    private readonly everyMs = 60_000,
  ) {
    this.last = {received: 0, delivered: 0, retried: 0, dead: 0, released: 0, errors: 0, inFlight: 0, receiveErrors: 0}
  }

  readonly progress = (counters: Readonly<ConsumeCounters>): void => {
    const now = Date.now()
    if (now - this.lastAt < this.everyMs) return
    const posted = counters.delivered - this.last.delivered
    this.log.info(`posted ${posted} status${posted === 1 ? '' : 'es'} in the last ${seconds(now - this.lastAt)}`, {
      retried: counters.retried - this.last.retried,
      released: counters.released - this.last.released,
      dead: counters.dead - this.last.dead,
    })
    this.last = {...counters}
    this.lastAt = now
  }
}
