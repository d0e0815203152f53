import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
import {ActionError} from './actions.js'
import {type ActionResult, type Execution, type Task, executionRef} from './model.js'
import {type Clock, systemClock} from './scheduler.js'
import {type HooksStore, STOPPED_ERROR} from './store/types.js'

export interface ActionPort {
  run(task: Task, execution: Execution, signal: AbortSignal): Promise<ActionResult>
}

export interface WorkerOptions {
  /** Executions processed at the same time (default 4). */
  concurrency?: number
  /** A claimed execution not heartbeated for this long is recovered by any instance (ms, default 60 s). */
  leaseMs?: number
  /** Failed attempts after which an execution is DONE with last_error (default 3, as CDS). */
  retryMax?: number
  /** First retry delay; doubles each failure (ms, default 1000). */
  retryDelayMs?: number
  /** Longest retry delay (ms, default 10 min). */
  retryDelayMaxMs?: number
  /** Idle poll interval when the queue is empty (ms, default 100). */
  idleMs?: number
  /** Processing pauses while this is true (maintenance mode). */
  paused?: () => boolean
  clock?: Clock
  log?: Logger
  /** Told about every attempt (metrics). */
  onOutcome?: (outcome: 'done' | 'retry' | 'failed' | 'stopped', execution: Execution) => void
}

/** The back-off before retry number `failures` (1-based): base · 2^(failures-1), capped. */
export function retryDelay(failures: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1))
}

/**
 * The worker pool: each slot claims the oldest queued execution, runs its task's action under a
 * lease it keeps alive, and records DONE, or SCHEDULED again with exponential back-off, or DONE
 * with last_error after the last attempt. It also recovers executions whose lease lapsed (an
 * instance died mid-way).
 */
export class Worker {
  private readonly log: Logger
  private readonly clock: Clock
  private readonly running = new Map<string, AbortController>()
  private slots: Promise<void>[] = []
  private stopping = false
  private readonly waiters = new Set<() => void>()
  private recoveryTimer?: NodeJS.Timeout
  private readonly opts: Required<Omit<WorkerOptions, 'clock' | 'log' | 'paused' | 'onOutcome'>>

  constructor(
    private readonly store: HooksStore,
    private readonly actions: ActionPort,
    private readonly options: WorkerOptions = {},
  ) {
    this.log = options.log ?? silentLogger
    this.clock = options.clock ?? systemClock
    this.opts = {
      concurrency: options.concurrency ?? 4,
      leaseMs: options.leaseMs ?? 60_000,
      retryMax: options.retryMax ?? 3,
      retryDelayMs: options.retryDelayMs ?? 1000,
      retryDelayMaxMs: options.retryDelayMaxMs ?? 600_000,
      idleMs: options.idleMs ?? 100,
    }
  }

  /** How many executions are being processed right now. */
  get inFlight(): number {
    return this.running.size
  }

  start(): void {
    this.stopping = false
    for (let i = 0; i < this.opts.concurrency; i++) this.slots.push(this.slot())
    const recover = () => {
      this.recover()
        .catch((error: Error) => this.log.warn('lease recovery failed', {error: error.message}))
        .finally(() => {
          if (!this.stopping) this.recoveryTimer = setTimeout(recover, Math.max(50, Math.min(5000, this.opts.leaseMs / 2)))
        })
    }
    this.recoveryTimer = setTimeout(recover, 0)
  }

  /** Something was enqueued: stop idling. */
  wake(): void {
    for (const waiter of [...this.waiters]) waiter()
  }

  /** Abort a running execution of this instance (the operator stopped it). */
  abort(ref: string): boolean {
    const controller = this.running.get(ref)
    controller?.abort(new Error(STOPPED_ERROR))
    return controller !== undefined
  }

  async recover(): Promise<number> {
    const n = await this.store.recoverExpired(this.clock.now(), this.opts.leaseMs)
    if (n > 0) {
      this.log.warn('recovered executions whose lease lapsed', {count: n})
      this.wake()
    }
    return n
  }

  /**
   * Stop claiming; wait for in-flight executions up to `deadlineMs`, then abort them (they are put
   * back in the queue, not counted as failures).
   */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.stopping = true
    clearTimeout(this.recoveryTimer)
    this.wake()
    const all = Promise.all(this.slots)
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), deadlineMs)))
    if ((await Promise.race([all, late])) === 'late') {
      this.log.warn('shutdown deadline passed: aborting in-flight executions', {count: this.running.size})
      for (const controller of this.running.values()) controller.abort(new ShutdownAbort())
      await all
    }
    clearTimeout(timer)
    this.slots = []
  }

  /** Claim and process one execution; false when there was nothing to claim (tests, drains). */
  async processOne(): Promise<boolean> {
    const execution = await this.store.claim(this.clock.now(), this.opts.leaseMs)
    if (!execution) return false
    await this.process(execution)
    return true
  }

  private async slot(): Promise<void> {
    let errors = 0
    while (!this.stopping) {
      if (this.options.paused?.()) {
        // Not woken by intake: nothing is processed until maintenance is off (follow() wakes us then).
        await sleep(this.opts.idleMs * 2)
        if (this.options.paused?.()) continue
      }
      try {
        if (!(await this.processOne())) await this.idle(this.opts.idleMs)
        errors = 0
      } catch (error) {
        // The store is unreachable (Redis restarting): back off, never spin.
        errors++
        this.log.warn('worker could not reach the store', {error: (error as Error).message})
        await this.idle(Math.min(5000, 100 * 2 ** Math.min(errors, 6)))
      }
    }
  }

  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.waiters.add(done)
    })
  }

  private async process(claimed: Execution): Promise<void> {
    const ref = executionRef(claimed)
    const controller = new AbortController()
    this.running.set(ref, controller)
    const heartbeat = setInterval(
      () => {
        void (async () => {
          const kept = await this.store.heartbeat(claimed, this.clock.now(), this.opts.leaseMs)
          if (!kept) this.log.warn('lost the lease of an execution', {ref})
          if (await this.store.stopRequested(claimed)) controller.abort(new Error(STOPPED_ERROR))
        })().catch(() => {})
      },
      Math.max(20, this.opts.leaseMs / 3),
    )
    const started = this.clock.now()
    let result: ActionResult | undefined
    let failure: string | undefined
    try {
      const task = await this.store.getTask(claimed.task_uuid)
      if (!task) throw new ActionError('the task was deleted')
      result = await this.actions.run(task, claimed, controller.signal)
    } catch (error) {
      failure = (error as Error).message
      result = error instanceof ActionError ? error.result : undefined
    } finally {
      clearInterval(heartbeat)
      this.running.delete(ref)
    }
    const now = this.clock.now()
    const attempt: Execution = {...claimed, duration_ms: now - started, ...(result ? {result} : {})}
    const reason = controller.signal.aborted ? controller.signal.reason : undefined
    if (reason instanceof ShutdownAbort) {
      // Not the target's fault: back in the queue as it was.
      await this.store.reschedule({...attempt, due_at: now})
      return
    }
    if (reason || (failure && (await this.store.stopRequested(claimed).catch(() => false)))) {
      await this.store.finish({...attempt, stopped: true, last_error: STOPPED_ERROR, done_at: now})
      this.options.onOutcome?.('stopped', attempt)
      return
    }
    if (failure === undefined) {
      await this.store.finish({...attempt, done_at: now})
      this.options.onOutcome?.('done', attempt)
      return
    }
    const nbErrors = claimed.nb_errors + 1
    if (nbErrors >= this.opts.retryMax) {
      this.log.warn('execution failed for the last time', {ref, attempts: nbErrors, error: failure})
      await this.store.finish({...attempt, nb_errors: nbErrors, last_error: failure, done_at: now})
      this.options.onOutcome?.('failed', attempt)
      return
    }
    const due = now + retryDelay(nbErrors, this.opts.retryDelayMs, this.opts.retryDelayMaxMs)
    this.log.info('execution failed: retrying', {ref, attempt: nbErrors, error: failure, retry_at: new Date(due).toISOString()})
    await this.store.reschedule({...attempt, nb_errors: nbErrors, last_error: failure, due_at: due})
    this.options.onOutcome?.('retry', attempt)
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

class ShutdownAbort extends Error {
  constructor() {
    super('shutting down')
    this.name = 'ShutdownAbort'
  }
}
