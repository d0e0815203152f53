/**
 * Job output → `working` responses: a batch goes out every `intervalMs` or at `maxLines` lines,
 * split so each message fits the response queue; one sender sends them in order. When the job
 * writes faster than the queue takes messages, waiting batches are merged into as few full-size
 * messages as fit, and past `maxBacklogBytes` the oldest waiting lines are skipped (said so in
 * the output): progress is best effort, the final response still carries the last lines.
 */
import {errorMessage} from '../core/errors.js'
import type {Logger} from '../core/log.js'
import {packLines, type Encoding, type Response} from './codec.js'

export class WorkingBatcher {
  private pending: string[] = []
  private timer?: NodeJS.Timeout
  private readonly waiting: string[][] = []
  private waitingBytes = 0
  private skipped = 0
  private sender?: Promise<void>

  constructor(
    private readonly base: Omit<Response, 'message'>,
    private readonly encoding: Encoding,
    private readonly maxBytes: number,
    private readonly maxLines: number,
    private readonly intervalMs: number,
    private readonly send: (response: Response) => Promise<void>,
    private readonly log: Logger,
    private readonly maxBacklogBytes = 8 * 1024 * 1024,
  ) {}

  push(line: string): void {
    this.pending.push(line)
    if (this.pending.length >= this.maxLines) this.flush()
    else this.timer ??= setTimeout(() => this.flush(), this.intervalMs)
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (this.pending.length === 0) return
    const batch = this.pending.splice(0)
    this.waiting.push(batch)
    this.waitingBytes += batch.reduce((sum, line) => sum + line.length, 0)
    this.skipOldestBeyondBacklog()
    this.kick()
  }

  async close(): Promise<void> {
    this.flush()
    while (this.sender) await this.sender
  }

  private skipOldestBeyondBacklog(): void {
    while (this.waitingBytes > this.maxBacklogBytes) {
      const oldest = this.waiting.at(0)
      const line = oldest?.shift()
      if (!oldest || line === undefined) break
      this.waitingBytes -= line.length
      this.skipped++
      if (oldest.length === 0) this.waiting.shift()
    }
  }

  private kick(): void {
    if (this.sender) return
    this.sender = this.drain().finally(() => {
      this.sender = undefined
      if (this.waiting.length > 0) this.kick()
    })
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      // Normally one batch at a time (messages of maxLines lines); a backlog is merged.
      const batches = this.waiting.length >= 10 ? this.waiting.splice(0) : this.waiting.splice(0, 1)
      const lines = batches.flat()
      this.waitingBytes -= lines.reduce((sum, line) => sum + line.length, 0)
      if (this.skipped > 0) {
        lines.unshift(`[… ${this.skipped} output line(s) skipped: the job wrote faster than the response queue took them]`)
        this.log.warn(`${this.skipped} output line(s) not sent as working responses (backlog)`)
        this.skipped = 0
      }
      for (const message of packLines(this.base, lines, this.encoding, this.maxBytes)) {
        try {
          await this.send({...this.base, message})
        } catch (error) {
          // Progress is best effort: the final response still says how the job ended.
          this.log.warn(`could not send a working response: ${errorMessage(error)}`)
        }
      }
    }
  }
}
