import {Registry} from 'prom-client'
import {describe, expect, it} from 'vitest'

import {registerQueueMetrics, registerTargetMetric} from '../../src/core/queue-metrics.js'
import type {Queue, QueueStats} from '../../src/core/queue/types.js'

/** A queue that only answers stats(). */
function statsOnly(url: string, stats: () => Promise<QueueStats>): Queue {
  return {url, stats} as unknown as Queue
}

describe('the queue and target metrics (examples/monitoring)', () => {
  it('read each queue once per scrape; a queue that cannot be read has no samples (a gap, not old numbers)', async () => {
    const registry = new Registry()
    let reads = 0
    let failing = false
    const queue = statsOnly('sqlite:/q.db#spigot', async () => {
      reads++
      if (failing) throw new Error('database is locked')
      return {visible: 3, inFlight: 1, delayed: 2, dead: 4, oldestAgeSeconds: 75}
    })
    const sqs = statsOnly('https://sqs.eu-west-1.amazonaws.com/1/q', async () => ({visible: 0, inFlight: 0, delayed: 0, dead: -1}))
    const metrics = await registerQueueMetrics(registry, [queue, sqs])
    await registerTargetMetric(registry, async () => [
      {target: 'jenkins:default', up: true},
      {target: 'jenkins:legacy', up: false},
    ])
    metrics.deadLettered(queue, 2)

    const text = await registry.metrics()
    expect(reads).toBe(1)
    for (const line of [
      'cistern_queue_messages{queue="sqlite:/q.db#spigot",state="visible"} 3',
      'cistern_queue_messages{queue="sqlite:/q.db#spigot",state="in_flight"} 1',
      'cistern_queue_messages{queue="sqlite:/q.db#spigot",state="delayed"} 2',
      'cistern_queue_messages{queue="sqlite:/q.db#spigot",state="dead"} 4',
      'cistern_queue_oldest_message_age_seconds{queue="sqlite:/q.db#spigot"} 75',
      // Empty: age 0. SQS cannot count dead letters (-1): no sample.
      'cistern_queue_oldest_message_age_seconds{queue="https://sqs.eu-west-1.amazonaws.com/1/q"} 0',
      'cistern_dead_letters_total{queue="sqlite:/q.db#spigot"} 2',
      'cistern_dead_letters_total{queue="https://sqs.eu-west-1.amazonaws.com/1/q"} 0',
      'cistern_target_up{target="jenkins:default"} 1',
      'cistern_target_up{target="jenkins:legacy"} 0',
    ]) {
      expect(text).toContain(line)
    }
    expect(text).not.toContain('state="dead"} -1')

    failing = true
    await new Promise((resolve) => setImmediate(resolve))
    const later = await registry.metrics()
    expect(reads).toBe(2)
    expect(later).not.toContain('cistern_queue_messages{queue="sqlite:/q.db#spigot"')
    expect(later).toContain('cistern_queue_messages{queue="https://sqs.eu-west-1.amazonaws.com/1/q",state="visible"} 0')
  })
})
