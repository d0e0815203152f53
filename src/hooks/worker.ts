import {TargetGates, TargetJudge} from '../core/delivery.js'
import {CisternError, ExitCode, errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
import {type BackoffOptions, PollLoop, backoffDelay, seconds} from '../core/loop.js'
import {retryUntil} from '../core/retry.js'
import {type ActionAttempt, type ActionPort, actionTarget} from './actions.js'
import {type Execution, type Task, executionRef} from './model.js'
import {type Clock, systemClock} from './scheduler.js'
import {type HooksStore, STOPPED_ERROR} from './store/types.js'
import {settlesWithin} from './time.js'

export type {ActionPort} from './actions.js'

/** What an execution's turn with a worker ended in (metrics: cistern_hooks_executions_total{outcome}). */
export type WorkerOutcome = 'done' | 'retry' | 'dead' | 'stopped' | 'deferred' | 'released'

export interface WorkerOptions {
  /** Executions processed at the same time (default 4). */
  concurrency?: number
  /** A claimed execution not heartbeated for this long is recovered by any instance (ms, default 60 s). */
  leaseMs?: number
  /** Failed attempts after which an execution is dead: DONE with last_error (default 3, as CDS). */
  retryMax?: number
  /** First retry delay; doubles each failure, with jitter (ms, default 1000). */
  retryDelayMs?: number
  /** Longest retry delay (ms, default 10 min). */
  retryDelayMaxMs?: number
  /** Random source of the back-off's jitter (tests pass a fixed one). */
  random?: () => number
  /** How long a target that is down is left alone: its gate's back-off (default 1 s doubling to 60 s). */
  targetBackoff?: BackoffOptions
  /** Idle poll interval when the queue is empty (ms, default 100). */
  idleMs?: number
  /** Processing pauses while this is true (maintenance mode). */
  paused?: () => boolean
  /** This instance's id (core/orphans.ts instanceId()): recorded on each claim, given to its jobs. */
  owner?: string
  clock?: Clock
  log?: Logger
  /** Told about every turn (metrics). */
  onOutcome?: (outcome: WorkerOutcome, execution: Execution) => void
}

/** Why an attempt was cut short by this instance: the service is stopping (the execution goes back, not counted). */
export class ShutdownAbort extends CisternError {
  constructor() {
    super('shutting down', {exitCode: ExitCode.ok})
    this.name = 'ShutdownAbort'
  }
}

/** The lease was lost (the store was away longer than the lease): another instance may run it now. */
export class LeaseLost extends CisternError {
  constructor(ref: string) {
    super(`lost the lease of execution ${ref}`)
    this.name = 'LeaseLost'
  }
}

/** An operator stopped the execution. */
export class StoppedByOperator extends CisternError {
  constructor() {
    super(STOPPED_ERROR)
    this.name = 'StoppedByOperator'
  }
}

/** How a claimed execution's turn is written back (the store call and what it records). */
type TurnRecord = {kind: 'finish'; execution: Execution} | {kind: 'reschedule'; execution: Execution} | {kind: 'none'}

/**
 * The worker pool: each slot (a core PollLoop) claims the oldest queued execution, runs its task's
 * action under a lease it keeps alive, and records the outcome (docs/delivery.md): delivered → DONE;
 * a failure of this execution → SCHEDULED again with back-off, dead (DONE with last_error, a warn
 * line) after the last attempt; a target that is down → SCHEDULED for its gate's back-off, the
 * attempt not counted. A recovery loop puts back executions whose lease lapsed (an instance died).
 */
export class Worker {
  readonly gates: TargetGates
  readonly judge: TargetJudge
  private readonly log: Logger
  private readonly clock: Clock
  private readonly running = new Map<string, AbortController>()
  /** Targets seen, for cistern_target_up. */
  readonly targets = new Set<string>()
  private slots: PollLoop[] = []
  private runs: Array<Promise<unknown>> = []
  private recovery?: PollLoop
  private stopping = false
  /** Aborts when stop() gives up waiting: results still being written are given up (their lease brings them back). */
  private readonly halted = new AbortController()
  private readonly opts: {concurrency: number; leaseMs: number; retryMax: number; retryDelayMs: number; retryDelayMaxMs: number; idleMs: number}

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
    this.gates = new TargetGates({log: this.log, backoff: options.targetBackoff, now: () => this.clock.now()})
    this.judge = new TargetJudge(this.gates)
  }

  /** How many executions are being processed right now. */
  get inFlight(): number {
    return this.running.size
  }

  start(): void {
    this.stopping = false
    const loopOptions = {idleMs: this.opts.idleMs, pausePollMs: this.opts.idleMs * 2, paused: this.options.paused, log: this.log, backoff: {baseMs: 100, maxMs: 5000}}
    for (let i = 0; i < this.opts.concurrency; i++) {
      const slot = new PollLoop(() => this.processOne(), loopOptions)
      this.slots.push(slot)
      this.runs.push(slot.run().catch((error: unknown) => this.log.error('a worker slot stopped', {error: errorMessage(error)})))
    }
    const every = Math.max(50, Math.min(5000, this.opts.leaseMs / 2))
    this.recovery = new PollLoop(
      async () => {
        await this.recover()
        return false
      },
      {idleMs: every, log: this.log, backoff: {baseMs: every, maxMs: 30_000}},
    )
    this.runs.push(this.recovery.run().catch((error: unknown) => this.log.error('lease recovery stopped', {error: errorMessage(error)})))
  }

  /** Something was enqueued, or maintenance ended: stop idling. */
  wake(): void {
    for (const slot of this.slots) slot.wake()
  }

  /** Abort a running execution of this instance (the operator stopped it). */
  abort(ref: string): boolean {
    const controller = this.running.get(ref)
    controller?.abort(new StoppedByOperator())
    return controller !== undefined
  }

  async recover(): Promise<number> {
    const n = await this.store.recoverExpired(this.clock.now(), this.opts.leaseMs)
    if (n > 0) {
      this.log.warn('recovered executions whose lease lapsed (their instance died or lost the store)', {count: n})
      this.wake()
    }
    return n
  }

  /**
   * Stop claiming; let in-flight executions finish until `abortAfterMs`, then abort them (they go
   * back to the queue, not counted as failures) and wait for them until `deadlineMs` at most.
   */
  async stop(deadlineMs = 10_000, abortAfterMs = deadlineMs): Promise<void> {
    this.stopping = true
    const stopped = this.clock.now()
    for (const loop of [...this.slots, ...(this.recovery ? [this.recovery] : [])]) void loop.stop()
    const all = Promise.all(this.runs)
    if (!(await settlesWithin(all, abortAfterMs))) {
      this.log.warn('shutdown deadline passed: aborting in-flight executions (they go back to the queue)', {count: this.running.size})
      for (const controller of this.running.values()) controller.abort(new ShutdownAbort())
      if (!(await settlesWithin(all, Math.max(0, deadlineMs - (this.clock.now() - stopped))))) this.halt()
    }
    this.slots = []
    this.runs = []
  }

  /** Give up at once on what is still being written (shutdown past its deadline, the store dropped). */
  halt(): void {
    this.halted.abort()
  }

  /** Claim and process one execution; false when there was nothing to claim (tests, drains). */
  async processOne(): Promise<boolean> {
    if (this.stopping) return false
    const execution = await this.store.claim(this.clock.now(), this.opts.leaseMs, this.options.owner)
    if (!execution) return false
    await this.process(execution)
    return true
  }

  // --- one execution's turn ------------------------------------------------------------------

  private async process(claimed: Execution): Promise<void> {
    const ref = executionRef(claimed)
    const controller = new AbortController()
    this.running.set(ref, controller)
    const lease = this.keepLease(claimed, controller)
    const started = this.clock.now()
    let record: TurnRecord
    try {
      record = await this.attempt(claimed, controller)
    } finally {
      lease.stop()
      this.running.delete(ref)
    }
    if (record.kind === 'none') return
    const execution = {...record.execution, duration_ms: this.clock.now() - started}
    await this.write(record.kind, execution, lease.expires())
  }

  /** Run the action (unless its target's gate is closed) and decide what to record. */
  private async attempt(claimed: Execution, controller: AbortController): Promise<TurnRecord> {
    const task = await this.store.getTask(claimed.task_uuid)
    if (!task) return this.outcome(claimed, {outcome: {kind: 'dead', reason: 'the task was deleted'}})
    const target = actionTarget(task.config.action)
    this.targets.add(target)
    if (!this.gates.isOpen(target)) return this.outcome(claimed, {outcome: this.gates.heldBack(target)}, task)
    let attempt: ActionAttempt
    try {
      attempt = await this.actions.run(task, claimed, {signal: controller.signal, judge: this.judge, owner: this.options.owner})
    } catch (error) {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined
      if (reason instanceof CisternError && !(reason instanceof StoppedByOperator)) return this.aborted(claimed, reason)
      if (reason instanceof StoppedByOperator || (await this.store.stopRequested(claimed).catch(() => false))) return this.stoppedByOperator(claimed)
      attempt = {outcome: {kind: 'retry', reason: errorMessage(error)}}
    }
    if (controller.signal.reason instanceof StoppedByOperator) return this.stoppedByOperator(claimed, attempt)
    return this.outcome(claimed, attempt, task)
  }

  /** The record for an outcome (docs/delivery.md), with its log line. */
  private outcome(claimed: Execution, {outcome, result}: ActionAttempt, task?: Task): TurnRecord {
    const now = this.clock.now()
    const base: Execution = {...claimed, ...(result ? {result} : {})}
    const ref = executionRef(claimed)
    switch (outcome.kind) {
      case 'delivered':
        this.options.onOutcome?.('done', base)
        return {kind: 'finish', execution: {...base, done_at: now}}
      case 'dead':
        return this.dead(base, claimed.nb_errors + 1, outcome.reason)
      case 'retry': {
        const attempts = claimed.nb_errors + 1
        if (attempts >= this.opts.retryMax) return this.dead(base, attempts, outcome.reason)
        const delay = outcome.delaySeconds === undefined ? backoffDelay(attempts, this.retryBackoff()) : outcome.delaySeconds * 1000
        this.log.info(`execution ${ref} failed: retrying in ${seconds(delay)}`, {task: claimed.task_uuid, execution: claimed.timestamp, attempt: attempts, error: outcome.reason})
        this.options.onOutcome?.('retry', base)
        return {kind: 'reschedule', execution: {...base, nb_errors: attempts, last_error: outcome.reason, due_at: now + delay}}
      }
      case 'target-down':
      case 'stop': {
        // Not this execution's fault: the target's gate closes, the attempt is not counted.
        const target = outcome.kind === 'target-down' ? outcome.target : task ? actionTarget(task.config.action) : 'unknown'
        const reason = outcome.kind === 'target-down' ? outcome.reason : outcome.error.message
        const credentials = outcome.kind === 'target-down' ? outcome.credentials : true
        const retryAfterMs = outcome.kind === 'target-down' && outcome.retryAfterSeconds !== undefined ? outcome.retryAfterSeconds * 1000 : undefined
        this.gates.failed(target, reason, {credentials, retryAfterMs})
        this.options.onOutcome?.('deferred', base)
        return {kind: 'reschedule', execution: {...base, last_error: reason, due_at: now + Math.max(this.gates.retryInMs(target), 50)}}
      }
      case 'released':
        this.options.onOutcome?.('released', base)
        return {kind: 'reschedule', execution: {...base, due_at: now + Math.max((outcome.delaySeconds ?? 0) * 1000, 50)}}
    }
  }

  /** Dead: DONE with last_error, loudly (a warn line here, a count in /mon/status and the metrics). */
  private dead(execution: Execution, attempts: number, reason: string): TurnRecord {
    const ref = executionRef(execution)
    this.log.warn(`execution ${ref} is dead after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${reason}`, {
      task: execution.task_uuid,
      execution: execution.timestamp,
      attempts,
      reason,
    })
    this.options.onOutcome?.('dead', execution)
    return {kind: 'finish', execution: {...execution, nb_errors: attempts, last_error: reason, dead: true, done_at: this.clock.now()}}
  }

  private stoppedByOperator(claimed: Execution, attempt?: ActionAttempt): TurnRecord {
    const execution: Execution = {...claimed, ...(attempt?.result ? {result: attempt.result} : {}), stopped: true, last_error: STOPPED_ERROR, done_at: this.clock.now()}
    this.options.onOutcome?.('stopped', execution)
    return {kind: 'finish', execution}
  }

  /** Cut short by this instance: stopping (back to the queue as it was) or the lease lost (nothing to write: another instance has it). */
  private aborted(claimed: Execution, reason: CisternError): TurnRecord {
    if (reason instanceof LeaseLost) {
      this.log.warn(`${reason.message}: its attempt here was stopped, another instance runs it`, {task: claimed.task_uuid, execution: claimed.timestamp})
      return {kind: 'none'}
    }
    this.options.onOutcome?.('released', claimed)
    return {kind: 'reschedule', execution: {...claimed, due_at: this.clock.now()}}
  }

  /**
   * Write the turn back ("results are delivered"): a store that is away is retried with back-off
   * while the lease holds; after that the execution is another instance's to recover and run.
   */
  private async write(kind: 'finish' | 'reschedule', execution: Execution, leaseEnds: number): Promise<void> {
    const ref = executionRef(execution)
    try {
      const kept = await retryUntil(() => (kind === 'finish' ? this.store.finish(execution) : this.store.reschedule(execution)), {
        deadline: leaseEnds,
        signal: this.halted.signal,
        backoff: {baseMs: 100, maxMs: 2000},
        onRetry: ({error, delayMs}) => this.log.warn(`could not record execution ${ref}: retrying in ${seconds(delayMs)}`, {error: errorMessage(error)}),
      })
      if (!kept) this.log.warn(`execution ${ref} was taken over before its result was recorded (its lease lapsed)`, {task: execution.task_uuid})
    } catch (error) {
      this.log.error(`the result of execution ${ref} was not recorded: ${errorMessage(error)}; it runs again once its lease lapses`, {task: execution.task_uuid})
    }
  }

  /** Heartbeats while the action runs: lost → abort (LeaseLost); an operator's stop → abort (StoppedByOperator). */
  private keepLease(claimed: Execution, controller: AbortController): {stop(): void; expires(): number} {
    let expires = this.clock.now() + this.opts.leaseMs
    const beat = async () => {
      const now = this.clock.now()
      const kept = await this.store.heartbeat(claimed, now, this.opts.leaseMs)
      if (!kept) controller.abort(new LeaseLost(executionRef(claimed)))
      else expires = now + this.opts.leaseMs
      if (await this.store.stopRequested(claimed)) controller.abort(new StoppedByOperator())
    }
    const timer = setInterval(() => {
      beat().catch(() => undefined)
    }, Math.max(20, this.opts.leaseMs / 3))
    return {
      stop: () => {
        clearInterval(timer)
      },
      expires: () => expires,
    }
  }

  private retryBackoff(): BackoffOptions {
    return {baseMs: this.opts.retryDelayMs, maxMs: this.opts.retryDelayMaxMs, random: this.options.random}
  }
}
