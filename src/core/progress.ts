import {LOG_LEVELS, type LogFields, type LogLevel, type Logger} from './log.js'

/**
 * Progress people can watch (DESIGN.md): on a terminal, one line redrawn in place with done/total,
 * rate and time left; log lines written while it is shown clear it first and redraw it after, so
 * nothing is glued onto it. Off a terminal the caller logs a summary instead (see ProgressLog).
 */
export class LiveLine {
  private shown = ''
  private lastDraw = 0
  private pending?: string

  constructor(
    private readonly stream: Pick<NodeJS.WritableStream, 'write'> = process.stderr,
    /** Redraws at most this often (a busy run updates thousands of times a second). */
    private readonly minIntervalMs = 100,
  ) {}

  /** Show `text` (redrawn at most every minIntervalMs; the latest text wins). */
  update(text: string): void {
    this.pending = text
    const now = performance.now()
    if (now - this.lastDraw < this.minIntervalMs) return
    this.lastDraw = now
    this.draw(text)
  }

  /** Erase the line (it comes back at the next update). */
  clear(): void {
    if (this.shown) this.stream.write('\r\u001B[2K')
    this.shown = ''
  }

  /** A logger whose lines clear the live line first and redraw it after. */
  around(log: Logger): Logger {
    const write = (level: LogLevel) => (message: string, fields?: LogFields) => {
      // A line below the logger's level is not written: no need to touch the screen.
      if (LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(log.level)) return
      const again = this.shown || this.pending
      this.clear()
      log[level](message, fields)
      if (again) this.draw(again)
    }
    return {
      level: log.level,
      debug: write('debug'),
      info: write('info'),
      warn: write('warn'),
      error: write('error'),
      child: (fields) => this.around(log.child(fields)),
    }
  }

  private draw(text: string): void {
    this.pending = undefined
    this.shown = text
    this.stream.write(`\r\u001B[2K${text}`)
  }
}

/** How fast work is done and how long the rest will take, from what was done since `startedAt`. */
export function pace(done: number, total: number | undefined, elapsedMs: number): {perSecond: number; leftMs?: number} {
  const perSecond = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0
  if (total === undefined || perSecond <= 0) return {perSecond}
  return {perSecond, leftMs: (Math.max(0, total - done) / perSecond) * 1000}
}

/** "45s", "3m 20s", "1h 5m": a duration as an operator reads it on a progress line. */
export function shortDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${s % 60}s`
  return `${Math.floor(m / 60)}h ${m % 60}m`
}
