import type {Registry} from 'prom-client'

import type {Backlog, HooksStore} from './store/types.js'
import type {Worker, WorkerOutcome} from './worker.js'

export interface HooksMetrics {
  webhookReceived(): void
  outcome(outcome: WorkerOutcome): void
  /** Dead executions counted by this instance since it started. */
  readonly deadLetters: number
}

/**
 * The service's Prometheus metrics: its own (cistern_hooks_*) and the queue and target metrics every
 * cistern process serves the same way (docs/operations.md#monitoring), so the example alerts and
 * dashboard read hooks' work queue like any other queue. Store counts are read at scrape time;
 * a store that does not answer leaves them out of that scrape rather than hold it.
 */
export async function hooksMetrics(registry: Registry, store: HooksStore, worker: Worker, backlog: () => Promise<Backlog | undefined>): Promise<HooksMetrics> {
  const prom = await import('prom-client')
  const queue = `${store.location}#hooks`
  const received = new prom.Counter({name: 'cistern_hooks_webhooks_received_total', help: 'Webhook executions accepted', registers: [registry]})
  const outcomes = new prom.Counter({
    name: 'cistern_hooks_executions_total',
    help: 'Execution turns by outcome: done, retry, dead, stopped, deferred (its target was down: not an attempt), released (handed back at shutdown)',
    labelNames: ['outcome'],
    registers: [registry],
  })
  const dead = new prom.Counter({name: 'cistern_dead_letters_total', help: 'Messages this process dead-lettered (hooks: executions gone dead, each with its warn line)', labelNames: ['queue'], registers: [registry]})
  dead.inc({queue}, 0)
  new prom.Gauge({
    name: 'cistern_hooks_queue_length',
    help: 'Executions waiting in the work queue',
    registers: [registry],
    async collect() {
      this.set((await backlog())?.queued ?? -1)
    },
  })
  new prom.Gauge({
    name: 'cistern_queue_messages',
    help: 'Messages of a queue by state (hooks: its work queue; delayed = retries, targets backing off and planned runs; dead = dead executions still kept)',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset()
      const counts = await backlog()
      if (!counts) return
      this.set({queue, state: 'visible'}, counts.queued)
      this.set({queue, state: 'in_flight'}, counts.inFlight)
      this.set({queue, state: 'delayed'}, counts.delayed)
      this.set({queue, state: 'dead'}, counts.dead)
    },
  })
  new prom.Gauge({
    name: 'cistern_queue_oldest_message_age_seconds',
    help: 'Age of the oldest live message of a queue (hooks: the oldest execution due and not done)',
    labelNames: ['queue'],
    registers: [registry],
    async collect() {
      this.reset()
      const counts = await backlog()
      if (counts) this.set({queue}, counts.oldestAgeSeconds)
    },
  })
  new prom.Gauge({
    name: 'cistern_target_up',
    help: '1 while a target is healthy, 0 while its gate is closed (docs/delivery.md)',
    labelNames: ['target'],
    registers: [registry],
    collect() {
      this.reset()
      for (const target of worker.targets) this.set({target}, worker.gates.isDown(target) ? 0 : 1)
    },
  })
  let deadLetters = 0
  return {
    webhookReceived: () => {
      received.inc()
    },
    outcome: (outcome) => {
      outcomes.inc({outcome})
      if (outcome === 'dead') {
        deadLetters++
        dead.inc({queue})
      }
    },
    get deadLetters() {
      return deadLetters
    },
  }
}
