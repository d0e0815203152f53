import {errorMessage} from '../errors.js'
import type {Logger} from '../log.js'
import {StaleReceiptError} from '../queue/errors.js'
import type {Queue, QueueMessage} from '../queue/types.js'

/**
 * A received message from its receive until it is settled or given back: leased (kept hidden by a
 * heartbeat at half the visibility timeout) while it waits in the prefetch buffer and while its
 * handler runs.
 */
export class Flight {
  /** The piece's own id for log lines (HandlerContext.setLabel). */
  label?: string
  /** In a handler (not only prefetched). */
  started = false
  /** Released at the stop deadline: whatever the handler returns later is ignored. */
  abandoned = false
  /** The handler's run and the settling of its outcome (set when it starts). */
  settled: Promise<void> = Promise.resolve()
  /** Still ours to keep hidden: false once settled, given back or abandoned (heartbeat errors are moot then). */
  private leased = true
  private readonly heartbeat: NodeJS.Timeout

  constructor(
    readonly message: QueueMessage,
    private readonly queue: Queue,
    visibilitySeconds: number,
    private readonly log: Logger,
    /** The lease was lost before the handler started: whoever holds the message now handles it. */
    private readonly onLostWhileWaiting: (flight: Flight) => void,
  ) {
    const beatMs = Math.max(250, (visibilitySeconds * 1000) / 2)
    this.heartbeat = setInterval(() => void this.beat(visibilitySeconds), beatMs)
  }

  /** Attempts that counted, this one included (receives where the backend cannot tell them apart). */
  get attempts(): number {
    return this.message.attempts ?? this.message.receiveCount
  }

  /** No longer ours to keep hidden (settling, given back, abandoned). */
  drop(): void {
    this.leased = false
    clearInterval(this.heartbeat)
  }

  /** The handler finished: the heartbeat stops, the lease stays until the outcome is settled. */
  stopHeartbeat(): void {
    clearInterval(this.heartbeat)
  }

  private async beat(visibilitySeconds: number): Promise<void> {
    try {
      await this.queue.changeVisibility(this.message.receiptHandle, visibilitySeconds)
    } catch (error) {
      if (!this.leased) return
      const fields = {messageId: this.message.id, error: errorMessage(error)}
      if (!(error instanceof StaleReceiptError)) {
        this.log.warn('heartbeat failed; retrying at the next beat', fields)
        return
      }
      // The lease is gone (it lapsed, or the message was redelivered): extending again cannot help.
      clearInterval(this.heartbeat)
      if (this.started) {
        this.log.warn('lost the lease on a message still being handled; it may be handled twice', fields)
        return
      }
      this.leased = false
      this.onLostWhileWaiting(this)
      this.log.warn('lost the lease on a prefetched message; not handling it here', fields)
    }
  }
}
