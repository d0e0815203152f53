import type {TargetGates} from '../delivery.js'

/** A message not seen again this long after it was due was taken by another consumer, or is gone. */
const OVERDUE_MS = 5000
/** The shortest wait before looking again (a message due now may not be receivable yet: a FIFO group, a clock). */
const MIN_LOOK_MS = 250
/** How often to look again for a message already overdue. */
const OVERDUE_LOOK_MS = 1000

interface Expected {
  dueAt: number
  /** The target it waits for, when that is why it was handed back. */
  target?: string
}

/** What a one-shot run handed back and did not see again, by why. */
export interface HandedBackTally {
  /** Waiting for a target that is down (or was given up), per target. */
  onTarget: Map<string, number>
  /** Retried or released with a delay that ends after the deadline. */
  afterDeadline: number
  /** Due before the deadline, but the run ended first (it passed, or the run stopped). */
  beforeDeadline: number
  /** Of all those, how many the queue still hides (the rest are visible again). */
  hidden: number
}

/**
 * The messages a one-shot run retried or released and expects to see again (docs/delivery.md:
 * "one-shot runs finish the work they can do now"): when the queue looks empty, the run waits for
 * those due before its deadline, and at the end says why the others remain.
 */
export class HandedBack {
  private readonly expected = new Map<string, Expected>()

  constructor(private readonly now: () => number = Date.now) {}

  expect(messageId: string, delaySeconds: number, target?: string): void {
    this.expected.delete(messageId)
    this.expected.set(messageId, {dueAt: this.now() + delaySeconds * 1000, target})
  }

  /**
   * The queue has written the release: count the delay from now, so that the run never thinks a
   * message visible while the queue still hides it (it would be reported held by another consumer).
   * Only a message still expected (one delivered since is not brought back).
   */
  released(messageId: string, delaySeconds: number): void {
    const expected = this.expected.get(messageId)
    if (expected) expected.dueAt = Math.max(expected.dueAt, this.now() + delaySeconds * 1000)
  }

  /** Delivered or dead: no longer expected. */
  forget(messageId: string): void {
    this.expected.delete(messageId)
  }

  get size(): number {
    return this.expected.size
  }

  /**
   * When to receive again for a message due back before the deadline (epoch ms), or undefined
   * when none is: the run can end. A message waiting for a target is not waited for once the
   * target is given up, and the wait ends when its gate changes.
   */
  nextLook(deadline: number, gates: TargetGates): number | undefined {
    const now = this.now()
    this.dropOverdue(now, gates)
    let next: number | undefined
    for (const {dueAt, target} of this.expected.values()) {
      if (dueAt > deadline || (target !== undefined && gates.givenUp(target))) continue
      let at = dueAt
      const change = target === undefined ? undefined : gates.changesInMs(target)
      if (change !== undefined) at = Math.min(at, now + change)
      next = Math.min(next ?? Number.POSITIVE_INFINITY, Math.max(at, now + (dueAt < now ? OVERDUE_LOOK_MS : MIN_LOOK_MS)))
    }
    return next
  }

  /** Expected back, but waiting only for targets the run gave up. */
  waitsOnlyForGivenUpTargets(gates: TargetGates): boolean {
    const values = [...this.expected.values()]
    return values.length > 0 && values.every(({target}) => target !== undefined && gates.givenUp(target))
  }

  tally(deadline: number, gates: TargetGates): HandedBackTally {
    const now = this.now()
    this.dropOverdue(now, gates)
    const tally: HandedBackTally = {onTarget: new Map(), afterDeadline: 0, beforeDeadline: 0, hidden: 0}
    for (const {dueAt, target} of this.expected.values()) {
      if (dueAt > now) tally.hidden++
      if (target !== undefined && gates.isDown(target)) tally.onTarget.set(target, (tally.onTarget.get(target) ?? 0) + 1)
      else if (dueAt > deadline) tally.afterDeadline++
      else tally.beforeDeadline++
    }
    return tally
  }

  /** Not seen again well after it was due: another consumer took it, or it is gone (a message waiting on a down target is still waiting). */
  private dropOverdue(now: number, gates: TargetGates): void {
    for (const [id, {dueAt, target}] of this.expected) {
      if (dueAt < now - OVERDUE_MS && !(target !== undefined && gates.isDown(target))) this.expected.delete(id)
    }
  }
}
