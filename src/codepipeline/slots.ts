import {Limiter} from '../core/limit.js'
import {Wake} from '../core/loop.js'

/**
 * Job slots: the worker's global limit and each action type's own, on the core Limiter. A poll
 * asks CodePipeline for as many jobs as there are free slots (maxBatchSize), so a job is started
 * only when both limits have room and never waits for one.
 */
export class JobSlots {
  private readonly all: Limiter
  private readonly perAction = new Map<string, {limiter: Limiter; limit: number}>()
  private readonly freed = new Wake()

  constructor(
    readonly global: number,
    limits: Map<string, number>,
  ) {
    this.all = new Limiter({concurrency: global})
    for (const [key, limit] of limits) {
      const effective = Math.min(limit, global)
      this.perAction.set(key, {limiter: new Limiter({concurrency: effective}), limit: effective})
    }
  }

  /** Slots free for this action type: the smaller of the global and its own room. */
  free(key: string): number {
    const action = this.perAction.get(key)
    if (!action) return 0
    const globalRoom = this.global - this.all.running - this.all.waiting
    const actionRoom = action.limit - action.limiter.running - action.limiter.waiting
    return Math.max(0, Math.min(globalRoom, actionRoom))
  }

  /** Jobs running now. */
  get inUse(): number {
    return this.all.running + this.all.waiting
  }

  /** Runs a job in a free slot of its action type (never over-committed: none free is refused); resolves with the job's result. */
  run<T>(key: string, job: () => Promise<T>): Promise<T> {
    const action = this.perAction.get(key)
    if (!action || this.free(key) < 1) return Promise.reject(new RangeError(`no free slot for ${key}`))
    return this.all.run(() => action.limiter.run(job)).finally(() => {
      this.freed.notify()
    })
  }

  /**
   * Resolves once one of these action types has a free slot, or the signal aborts. Re-checked at
   * least every second, so a slot freed between a check and the wait is never waited for long.
   */
  async untilFree(keys: readonly string[], signal: AbortSignal): Promise<void> {
    while (!signal.aborted && keys.length > 0 && !keys.some((key) => this.free(key) > 0)) await this.freed.wait(1000, signal)
  }
}
