/**
 * Order per commit and context. EventBridge gives every event the rule's one MessageGroupId, so an
 * SQS FIFO receive hands out several events of one commit at once; they must reach GitHub in the
 * order sent, while different commits go side by side (CommitOrder). And on any queue an event
 * overtaken by a later one must not turn a finished status back (ReportedStates).
 */
import {type Outcome, released} from '../core/delivery.js'

/** Outcomes after which a later event of the same commit must not be posted now: the earlier one comes back. */
const COMES_BACK = new Set<Outcome['kind']>(['retry', 'released', 'target-down', 'stop'])

/**
 * Runs work per key one after another, in the order it was asked for. When the earlier work's
 * message is coming back (retried, released, its target down), the later is released untouched
 * (not an attempt): the queue keeps the group's order, and the earlier one is posted first.
 */
export class CommitOrder {
  private readonly tails = new Map<string, Promise<Outcome | undefined>>()

  run(key: string, work: () => Promise<Outcome>): Promise<Outcome> {
    const previous = this.tails.get(key) ?? Promise.resolve(undefined)
    const mine = previous.then((before) => (before && COMES_BACK.has(before.kind) ? released('an earlier event for this commit is coming back') : work()))
    const tail = mine.catch(() => released('an earlier event for this commit failed'))
    this.tails.set(key, tail)
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    })
    return mine
  }
}

/**
 * What this worker last posted per commit and context, so that an event overtaken by a later one
 * (a "running" delivered after "passed", an older build after a newer) does not turn a finished
 * status back. Standard queues do not keep order; this is per process and bounded, a best effort.
 */
export class ReportedStates {
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
    if (this.staleness(key, number, state)) return
    this.latest.delete(key)
    this.latest.set(key, {number, final: state !== 'pending'})
    if (this.latest.size > this.max) {
      const oldest = this.latest.keys().next()
      if (!oldest.done) this.latest.delete(oldest.value)
    }
  }
}
