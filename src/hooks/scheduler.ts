import {CronExpressionParser} from 'cron-parser'

import {errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
import {PollLoop} from '../core/loop.js'
import {ScheduleError} from './errors.js'
import {type Execution, type SchedulerConfig, type Task, isValidTimeZone} from './model.js'
import type {HooksStore} from './store/types.js'

/** Time source of the routines: tests drive a fake one. */
export interface Clock {
  now(): number
}
export const systemClock: Clock = {now: () => Date.now()}

/** Check a cron expression (5 fields, or 6 with leading seconds) and an IANA time zone. */
export function validateSchedule(cron: string, timezone: string): void {
  if (!isValidTimeZone(timezone)) throw new ScheduleError(`unknown time zone "${timezone}": use an IANA name such as Europe/Paris or UTC`)
  const fields = cron.trim().split(/\s+/)
  if (!cron.trim().startsWith('@') && (fields.length < 5 || fields.length > 6)) {
    throw new ScheduleError(`bad cron "${cron}": expected 5 fields (minute hour day month weekday) or 6 with leading seconds`)
  }
  try {
    CronExpressionParser.parse(cron, {tz: timezone, strict: false}).next()
  } catch (error) {
    throw new ScheduleError(`bad cron "${cron}": ${errorMessage(error)}`)
  }
}

/** The first run strictly after `afterMs` (ms since epoch). */
export function nextRun(config: Pick<SchedulerConfig, 'cron' | 'timezone'>, afterMs: number): number {
  const expression = CronExpressionParser.parse(config.cron, {tz: config.timezone, currentDate: new Date(afterMs)})
  return expression.next().getTime()
}

export interface SchedulerOptions {
  clock?: Clock
  log?: Logger
  /** Called after executions were moved to the work queue (wakes the local worker). */
  onEnqueued?: (executions: Execution[]) => void
  /** How often due executions are moved to the queue (ms, default 250: "within about a second"). */
  tickMs?: number
  /** How often every scheduler task's next run is checked (ms, default 1000). */
  planMs?: number
}

/**
 * The scheduling routines: move due SCHEDULED executions (planned runs and retries) to the work
 * queue, and keep exactly one planned run ahead for every started scheduler task. Runs in
 * maintenance too: scheduling continues, only processing pauses.
 */
export class Scheduler {
  private readonly clock: Clock
  private readonly log: Logger
  private lastPlan = Number.NEGATIVE_INFINITY
  private loop?: PollLoop

  constructor(
    private readonly store: HooksStore,
    private readonly options: SchedulerOptions = {},
  ) {
    this.clock = options.clock ?? systemClock
    this.log = options.log ?? silentLogger
  }

  /** One pass: enqueue what is due, plan the runs that follow, and (each planMs) check every task. */
  async tick(): Promise<{enqueued: number; planned: number}> {
    const now = this.clock.now()
    const moved = await this.store.enqueueDue(now)
    if (moved.length > 0) this.options.onEnqueued?.(moved)
    let planned = 0
    const after = new Set(moved.filter((e) => e.type === 'scheduler' && e.scheduled_date && e.nb_errors === 0).map((e) => e.task_uuid))
    if (now - this.lastPlan >= (this.options.planMs ?? 1000)) {
      this.lastPlan = now
      for (const task of await this.store.listTasks()) if (task.type === 'scheduler') after.add(task.uuid)
    }
    for (const uuid of after) {
      const task = await this.store.getTask(uuid)
      if (task?.type === 'scheduler' && (await this.plan(task, now))) planned++
    }
    return {enqueued: moved.length, planned}
  }

  /**
   * Make sure a started task has its next run planned (and a stopped one none). A planned run that
   * no longer matches the cron (the task was updated) is stopped and replaced. True when one was added.
   */
  async plan(task: Task, now = this.clock.now()): Promise<boolean> {
    if (task.type !== 'scheduler') return false
    const planned = await this.store.plannedExecutions(task.uuid)
    let keep = 0
    for (const execution of planned) {
      const due = execution.due_at ?? 0
      const matches = !task.stopped && keep === 0 && safeNext(task.config, due - 1) === due
      if (matches) keep++
      else await this.store.stopExecution(task.uuid, execution.timestamp, now)
    }
    if (task.stopped || keep > 0) return false
    const due = nextRun(task.config, now)
    const inserted = await this.store.insertExecution(
      {
        task_uuid: task.uuid,
        type: 'scheduler',
        timestamp: due * 1000,
        status: 'SCHEDULED',
        nb_errors: 0,
        due_at: due,
        scheduled_date: new Date(due).toISOString(),
        payload: task.config.payload,
        created_at: now,
      },
      {ifAbsent: true},
    )
    if (inserted) this.log.debug('next run planned', {task: task.uuid, at: inserted.scheduled_date})
    return inserted !== undefined
  }

  /** Tick every tickMs until stopped; a failing tick (the store is away) is logged and backed off by the core loop. */
  start(): void {
    this.loop ??= new PollLoop(
      async () => {
        await this.tick()
        return false
      },
      {idleMs: this.options.tickMs ?? 250, log: this.log, backoff: {baseMs: 250, maxMs: 5000}},
    )
    void this.loop.run().catch((error: unknown) => {
      this.log.error('the scheduler stopped', {error: errorMessage(error)})
    })
  }

  /** Stop ticking; resolves once the tick in progress (if any) has ended. */
  async stop(): Promise<void> {
    await this.loop?.stop().catch(() => undefined)
  }
}

function safeNext(config: SchedulerConfig, afterMs: number): number | undefined {
  try {
    return nextRun(config, afterMs)
  } catch {
    return undefined
  }
}
