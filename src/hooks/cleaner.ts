import type {Logger} from '../core/log.js'
import {silentLogger} from '../core/log.js'
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
  private timer?: NodeJS.Timeout
  private running?: Promise<unknown>
  private readonly log: Logger

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

  start(): void {
    const every = this.options.intervalMs ?? 60_000
    const loop = async () => {
      this.running = this.clean().catch((error: Error) => this.log.warn('cleaner pass failed', {error: error.message}))
      await this.running
      if (this.timer) this.timer = setTimeout(loop, every)
    }
    this.timer = setTimeout(loop, every)
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }
}
