// STUB — being written by the queue helper.
import type {OpenQueueOptions, Queue} from './types.js'

export async function openSqliteQueue(_url: string, _options: OpenQueueOptions): Promise<Queue> {
  throw new Error('sqlite queue: not implemented yet')
}
