import type {LogFields, Logger} from './log.js'

/**
 * Per-message log lines at volume (issue 15: a JSON line costs ~16–50 µs, and at thousands of
 * messages a second the lines are both the cost and unreadable): up to `perSecond` info and warn
 * lines pass each second, the rest are counted and summarised once per `summaryMs`:
 *
 *   info  webhook queued component=spigot-serve event=push … (each, up to 20 a second)
 *   info  1,234 more "webhook queued" lines in the last 10 s (sampled; --log-level debug shows each)
 *
 * Error lines always pass; at debug level nothing is held back (the operator asked for every line).
 */
export interface SampledLogger extends Logger {
  /** Writes the summaries of what was held back now (at shutdown). */
  flush(): void
}

export interface SampleOptions {
  /** Lines per level per second that pass (default 20). */
  perSecond?: number
  /** How often the held-back lines are summarised (default 10 s). */
  summaryMs?: number
  /** Clock (tests). */
  now?: () => number
}

type Level = 'info' | 'warn'

/** The budget one sampled logger and its children share. */
class Budget {
  private second = -1
  private readonly used: Record<Level, number> = {info: 0, warn: 0}
  /** Held-back lines by level and message. */
  private readonly held = new Map<string, {level: Level; message: string; count: number}>()
  private heldSince = 0
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly log: Logger,
    private readonly perSecond: number,
    private readonly summaryMs: number,
    private readonly now: () => number,
  ) {}

  /** True when the line may be written now; else it is counted. */
  take(level: Level, message: string): boolean {
    const second = Math.floor(this.now() / 1000)
    if (second !== this.second) {
      this.second = second
      this.used.info = 0
      this.used.warn = 0
    }
    if (this.used[level] < this.perSecond) {
      this.used[level]++
      return true
    }
    const key = `${level}\u0000${message}`
    const entry = this.held.get(key)
    if (entry) entry.count++
    else {
      if (this.held.size === 0) this.heldSince = this.now()
      this.held.set(key, {level, message, count: 1})
    }
    this.timer ??= setTimeout(() => this.flush(), this.summaryMs).unref()
    return false
  }

  flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.held.size === 0) return
    const seconds = Math.max(1, Math.round((this.now() - this.heldSince) / 1000))
    for (const {level, message, count} of this.held.values()) {
      this.log[level](`${count.toLocaleString('en-US')} more "${message}" lines in the last ${seconds} s (sampled; --log-level debug shows each)`, {sampled: count})
    }
    this.held.clear()
  }
}

export function sampledLogger(log: Logger, options: SampleOptions = {}): SampledLogger {
  const budget = new Budget(log, options.perSecond ?? 20, options.summaryMs ?? 10_000, options.now ?? Date.now)
  return sampled(log, budget)
}

function sampled(log: Logger, budget: Budget): SampledLogger {
  // At debug every line is wanted; above a level, its lines are dropped anyway (no budget spent).
  const holds = (level: Level) => log.level !== 'debug' && (level === 'warn' ? log.level !== 'error' : log.level === 'info')
  const line = (level: Level) => (message: string, fields?: LogFields) => {
    if (!holds(level) || budget.take(level, message)) log[level](message, fields)
  }
  return {
    level: log.level,
    debug: (message, fields) => log.debug(message, fields),
    info: line('info'),
    warn: line('warn'),
    error: (message, fields) => log.error(message, fields),
    child: (fields) => sampled(log.child(fields), budget),
    flush: () => budget.flush(),
  }
}
