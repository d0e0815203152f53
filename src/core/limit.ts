import PQueue from 'p-queue'

/**
 * Rate and concurrency limits, once, on p-queue: how many tasks run at once, how many start per
 * second with a burst, and an awaitable drain. spigot drain's --rate, status-queue's GitHub writes
 * and codepipeline's job slots use it.
 */
export interface LimitOptions {
  /** Tasks running at once (default: no limit). */
  concurrency?: number
  /** Starts per second (default: no limit); a fraction spaces them further (0.5: one every 2 s). */
  perSecond?: number
  /**
   * Starts allowed back to back before the rate holds them (default 1: evenly spaced). Over any
   * window of burst/perSecond seconds at most `burst` tasks start, so the average stays perSecond.
   */
  burst?: number
}

export class Limiter {
  private readonly queue: PQueue

  constructor(options: LimitOptions = {}) {
    const {concurrency, perSecond, burst = 1} = options
    if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency >= 1)) throw new RangeError(`concurrency must be an integer ≥ 1, got ${concurrency}`)
    if (perSecond !== undefined && !(perSecond > 0 && Number.isFinite(perSecond))) throw new RangeError(`perSecond must be a positive number, got ${perSecond}`)
    if (!(Number.isInteger(burst) && burst >= 1)) throw new RangeError(`burst must be an integer ≥ 1, got ${burst}`)
    this.queue = new PQueue({
      concurrency: concurrency ?? Number.POSITIVE_INFINITY,
      // A sliding window (strict): never more than `burst` starts in any burst/perSecond seconds.
      ...(perSecond === undefined ? {} : {intervalCap: burst, interval: (burst * 1000) / perSecond, strict: true}),
    })
  }

  /**
   * Run `task` when a concurrency slot is free and the rate allows a start. Aborting `signal`
   * rejects with its reason (a task still waiting never starts; a running one gets the signal).
   */
  run<T>(task: (signal?: AbortSignal) => Promise<T>, options: {signal?: AbortSignal} = {}): Promise<T> {
    const {signal} = options
    return this.queue.add(() => task(signal), {signal})
  }

  /** Wait for a start under the rate without holding a concurrency slot afterwards (a token, as a rate limiter's take()). */
  async take(signal?: AbortSignal): Promise<void> {
    await this.run(() => Promise.resolve(), {signal})
  }

  /** Resolves once nothing waits and nothing runs. */
  drain(): Promise<void> {
    return this.queue.onIdle()
  }

  /** Tasks running now. */
  get running(): number {
    return this.queue.pending
  }

  /** Tasks waiting for a slot or a start. */
  get waiting(): number {
    return this.queue.size
  }
}
