import type {Registry} from 'prom-client'

import {errorMessage} from './errors.js'
import {type Logger, silentLogger} from './log.js'
import type {Queue, QueueStats} from './queue/types.js'

/**
 * The queue and target metrics every process with a /metrics serves the same way
 * (docs/operations.md#monitoring; examples/monitoring's alerts and dashboard read them):
 *
 *   cistern_queue_messages{queue, state}             visible | in_flight | delayed | dead, at scrape time
 *   cistern_queue_oldest_message_age_seconds{queue}  the oldest live message (where the queue can tell)
 *   cistern_dead_letters_total{queue}                messages this process dead-lettered
 *   cistern_target_up{target}                        1 healthy, 0 its gate is closed
 *
 * `queue` is the queue URL as cistern prints it (no credentials). A queue that cannot be read at
 * scrape time has no samples then (a gap, not stale numbers).
 */
export interface QueueMetrics {
  /** Count dead letters this process made on `queue`. */
  deadLettered(queue: Queue, count?: number): void
}

export async function registerQueueMetrics(registry: Registry, queues: readonly Queue[], options: {log?: Logger} = {}): Promise<QueueMetrics> {
  const prom = await import('prom-client')
  const log = options.log ?? silentLogger
  // One read of each queue per scrape, shared by both gauges: prom-client starts their collects in the same turn.
  let thisTurn: Promise<Array<[Queue, QueueStats | undefined]>> | undefined
  const statsNow = () => {
    if (thisTurn) return thisTurn
    const stats = Promise.all(
      queues.map(async (queue): Promise<[Queue, QueueStats | undefined]> => {
        try {
          return [queue, await queue.stats()]
        } catch (error) {
          log.debug('queue metrics: cannot read the queue', {queue: queue.url, error: errorMessage(error)})
          return [queue, undefined]
        }
      }),
    )
    thisTurn = stats
    setImmediate(() => (thisTurn = undefined))
    return stats
  }
  new prom.Gauge({
    name: 'cistern_queue_messages',
    help: 'Messages in the queue by state (visible, in_flight, delayed, dead), read from the queue at scrape time',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset()
      for (const [queue, stats] of await statsNow()) {
        if (!stats) continue
        this.set({queue: queue.url, state: 'visible'}, stats.visible)
        this.set({queue: queue.url, state: 'in_flight'}, stats.inFlight)
        this.set({queue: queue.url, state: 'delayed'}, stats.delayed)
        if (stats.dead >= 0) this.set({queue: queue.url, state: 'dead'}, stats.dead)
      }
    },
  })
  new prom.Gauge({
    name: 'cistern_queue_oldest_message_age_seconds',
    help: 'Age of the oldest live (not dead) message in the queue, in seconds (0: empty), read at scrape time',
    labelNames: ['queue'] as const,
    registers: [registry],
    async collect() {
      this.reset()
      for (const [queue, stats] of await statsNow()) {
        if (!stats) continue
        const empty = stats.visible + stats.inFlight + stats.delayed === 0
        // SQS does not tell the age (a CloudWatch metric, not a queue attribute): no sample then.
        if (stats.oldestAgeSeconds !== undefined || empty) this.set({queue: queue.url}, stats.oldestAgeSeconds ?? 0)
      }
    },
  })
  const dead = new prom.Counter({
    name: 'cistern_dead_letters_total',
    help: 'Messages this process dead-lettered (each also has its warn line)',
    labelNames: ['queue'] as const,
    registers: [registry],
  })
  for (const queue of queues) dead.inc({queue: queue.url}, 0)
  return {deadLettered: (queue, count = 1) => dead.inc({queue: queue.url}, count)}
}

/** `cistern_target_up{target}`: `targets()` says, at scrape time, which targets are up. */
export async function registerTargetMetric(registry: Registry, targets: () => Promise<ReadonlyArray<{target: string; up: boolean}>>): Promise<void> {
  const prom = await import('prom-client')
  new prom.Gauge({
    name: 'cistern_target_up',
    help: '1 while the target (a Jenkins, a GitHub organisation …) is healthy, 0 while its gate is closed after failures',
    labelNames: ['target'] as const,
    registers: [registry],
    async collect() {
      this.reset()
      for (const {target, up} of await targets()) this.set({target}, up ? 1 : 0)
    },
  })
}
