// STUB — being written by the queue helper.
import type {OpenQueueOptions, Queue} from './types.js'

export async function openSqsQueue(_url: string, _options: OpenQueueOptions): Promise<Queue> {
  throw new Error('sqs queue: not implemented yet')
}
