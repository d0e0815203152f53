import {CisternError, ExitCode, UsageError} from '../errors.js'
import type {BatchFailure, SendResult} from './types.js'

/** A receipt handle that is no longer the current lease (re-received, deleted or expired). */
export class StaleReceiptError extends CisternError {
  constructor(readonly receiptHandle: string) {
    super('the receipt handle is stale: the message was received again, deleted, or its visibility timeout lapsed', {
      exitCode: ExitCode.failure,
    })
    this.name = 'StaleReceiptError'
  }
}

/**
 * Some entries of a batch failed after retries; `failures` says which and why. A send batch also
 * carries `results`: what each entry that did succeed got (undefined for the failed ones), so a
 * caller can settle each entry without sending any again.
 */
export class QueueBatchError extends CisternError {
  constructor(
    readonly operation: 'send' | 'delete',
    readonly failures: BatchFailure[],
    readonly results?: Array<SendResult | undefined>,
  ) {
    super(`${failures.length} of a ${operation} batch failed: ${failures.map((f) => `#${f.index} ${f.code}: ${f.message}`).join('; ')}`)
    this.name = 'QueueBatchError'
  }
}

/** An SQS queue with neither a RedrivePolicy nor a --dead-letter-queue: there is nowhere to put a dead letter. Exit 2. */
export class NoDeadLetterQueueError extends UsageError {
  constructor(message: string, fix: string) {
    super(message, fix)
    this.name = 'NoDeadLetterQueueError'
  }
}
