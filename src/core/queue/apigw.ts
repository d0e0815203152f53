// STUB — being written by the queue helper.
import type {OpenQueueOptions, Queue} from './types.js'

export async function openFacadeQueue(_url: string, _options: OpenQueueOptions): Promise<Queue> {
  throw new Error('apigw queue: not implemented yet')
}
