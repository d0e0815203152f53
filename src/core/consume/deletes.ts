import {errorMessage} from '../errors.js'
import type {Logger} from '../log.js'
import {backoffDelay, sleep} from '../loop.js'
import {QueueBatchError} from '../queue/errors.js'
import type {Queue, QueueMessage} from '../queue/types.js'

/**
 * Deletes of delivered messages, sent 10 at a time or after a short tick, so a busy consumer makes
 * one request per 10 messages. A failed batch is retried; entries that still fail are logged (the
 * message comes back after its visibility timeout and is handled again: at-least-once).
 */
export class DeleteBatcher {
  private pending: QueueMessage[] = []
  private timer?: NodeJS.Timeout
  private readonly sending = new Set<Promise<void>>()

  constructor(
    private readonly queue: Queue,
    private readonly log: Logger,
    private readonly flushMs: number,
  ) {}

  add(message: QueueMessage): void {
    this.pending.push(message)
    if (this.pending.length >= 10) this.flush()
    else
      this.timer ??= setTimeout(() => {
        this.flush()
      }, this.flushMs)
  }

  /**
   * Called before each receive: a FIFO group stays blocked until its finished head is deleted, so
   * the next receive must not find one still pending; send them now (with whatever else is pending).
   * Other consumers of the queue see the group unblocked within the flush tick. Deletes of
   * messages without a group keep waiting for a full batch or the tick.
   */
  flushGroups(): void {
    if (this.pending.some((message) => message.groupId !== undefined)) this.flush()
  }

  /** Send what is pending and wait for every delete; true if there was anything to wait for. */
  async settle(): Promise<boolean> {
    const busy = this.pending.length > 0 || this.sending.size > 0
    this.flush()
    await Promise.all([...this.sending])
    return busy
  }

  async close(): Promise<void> {
    await this.settle()
  }

  private flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, 10)
      const sending = this.send(batch).finally(() => this.sending.delete(sending))
      this.sending.add(sending)
    }
  }

  private async send(batch: QueueMessage[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.queue.deleteBatch(batch.map((message) => message.receiptHandle))
        return
      } catch (error) {
        if (error instanceof QueueBatchError) {
          // The backend already retried what could be retried: report the entries that failed.
          for (const failure of error.failures) {
            this.log.warn('could not delete a finished message; it will be handled again', {
              messageId: batch[failure.index]?.id,
              code: failure.code,
              error: failure.message,
            })
          }
          return
        }
        if (attempt >= 3) {
          this.log.error('could not delete finished messages; they will be handled again', {
            messageIds: batch.map((message) => message.id),
            error: errorMessage(error),
          })
          return
        }
        await sleep(backoffDelay(attempt, {baseMs: 200, maxMs: 2000}))
      }
    }
  }
}
