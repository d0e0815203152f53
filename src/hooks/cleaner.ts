import {errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
import {PollLoop} from '../core/loop.js'
import type {HooksStore} from './store/types.js'

export interface CleanerOptions {
  /** DONE executions kept per task (default 10, as CDS). */
  keep?: number
  /** How often it runs (ms, default 60 s). */
  intervalMs?: number
  log?: Logger
}

/** Keeps the newest N finished executions of every task and drops the older ones (never pending ones). */
export class Cleaner {
  private readonly log: Logger
  private loop?: PollLoop

  constructor(
    private readonly store: HooksStore,
    private readonly options: CleanerOptions = {},
  ) {
    this.log = options.log ?? silentLogger
  }

  /** One pass over every task; returns how many executions were dropped. */
  async clean(): Promise<number> {
    let dropped = 0
    for (const task of await this.store.listTasks()) dropped += await this.store.clean(task.uuid, this.options.keep ?? 10)
    if (dropped > 0) this.log.debug('old executions dropped', {count: dropped})
    return dropped
  }

  /** A pass now and every intervalMs; a failing pass is logged and backed off by the core loop. */
  start(): void {
    this.loop ??= new PollLoop(
      async () => {
        await this.clean()
        return false
      },
      {idleMs: this.options.intervalMs ?? 60_000, log: this.log},
    )
    void this.loop.run().catch((error: unknown) => {
      this.log.error('the cleaner stopped', {error: errorMessage(error)})
    })
  }

  async stop(): Promise<void> {
    await this.loop?.stop().catch(() => undefined)
  }
}
