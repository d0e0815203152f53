import type {ConsumeCounters} from '../core/consume.js'
import type {Logger} from '../core/log.js'
import {LiveLine, pace, shortDuration} from '../core/progress.js'

/** 'tty': one live line on stderr; 'log': an info line every 30 s (cron, systemd, CI). */
export type ProgressMode = 'tty' | 'log'

export interface DrainProgress extends ConsumeCounters {
  /** The backlog when the drain began (one-shot runs; undefined when the queue cannot tell, or a watch). */
  total?: number
  /** Milliseconds since the replay began. */
  elapsedMs: number
}

const LOG_EVERY_MS = 30_000

/**
 * How a drain shows where it is (issue 14): done/total, rate and time left, on one redrawn line
 * on a terminal, or as a log line every 30 s off one. Per-message lines are debug only: at volume
 * an info line per message costs more than the rest of its replay.
 */
export class DrainProgressReport {
  private readonly started = performance.now()
  private readonly line?: LiveLine
  private lastLog: number
  private latest?: DrainProgress

  constructor(
    private readonly mode: ProgressMode | undefined,
    private readonly options: {total?: number; log: Logger; onProgress?: (progress: DrainProgress) => void; stream?: Pick<NodeJS.WritableStream, 'write'>},
  ) {
    if (mode === 'tty') this.line = new LiveLine(options.stream ?? process.stderr)
    this.lastLog = this.started
  }

  /** The logger to use while the report runs: on a terminal its lines never glue onto the live line. */
  logger(log: Logger): Logger {
    return this.line ? this.line.around(log) : log
  }

  update(counters: ConsumeCounters): void {
    const progress: DrainProgress = {...counters, ...(this.options.total === undefined ? {} : {total: this.options.total}), elapsedMs: performance.now() - this.started}
    this.latest = progress
    this.options.onProgress?.(progress)
    if (this.line) this.line.update(describeProgress(progress))
    else if (this.mode === 'log' && progress.elapsedMs - (this.lastLog - this.started) >= LOG_EVERY_MS) {
      this.lastLog = performance.now()
      this.options.log.info(describeProgress(progress), {delivered: progress.delivered, dead: progress.dead, inFlight: progress.inFlight})
    }
  }

  /** The run is over: the live line goes (the summary follows). */
  end(): void {
    this.line?.clear()
  }

  /** The last progress seen (tests, maintenance's step title). */
  get last(): DrainProgress | undefined {
    return this.latest
  }
}

/** "draining 1,200/4,000 (30%) · 310/s · 9s left · 2 retried · 0 dead · 4 in flight" */
export function describeProgress(progress: DrainProgress): string {
  const done = progress.delivered + progress.dead
  // New webhooks may arrive while a drain runs: the total never reads below what is done and running.
  const total = progress.total === undefined ? undefined : Math.max(progress.total, done + progress.inFlight)
  const {perSecond, leftMs} = pace(done, total, progress.elapsedMs)
  const parts = [
    total === undefined ? `draining ${done}` : `draining ${done}/${total} (${total > 0 ? Math.floor((done / total) * 100) : 100}%)`,
    `${perSecond.toFixed(perSecond < 10 ? 1 : 0)}/s`,
    ...(leftMs === undefined ? [] : [`${shortDuration(leftMs)} left`]),
    `${progress.retried} retried`,
    `${progress.dead} dead`,
    ...(progress.released > 0 ? [`${progress.released} waiting for Jenkins`] : []),
    `${progress.inFlight} in flight`,
  ]
  return parts.join(' · ')
}
