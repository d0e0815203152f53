/**
 * The embedded queue's writer thread (see coalescingSender's `thread` option): commits with
 * synchronous=FULL wait for an fsync, and better-sqlite3 would block the caller's event loop for it.
 * Here they block only this thread. Messages: {id, inputs} → {id, results} | {id, error}.
 */
import {parentPort, workerData} from 'node:worker_threads'

import {CisternError} from '../errors.js'
import {openQueue} from './index.js'
import type {Queue, SendInput} from './types.js'
import {serializeError} from './writer-thread-client.js'

type ToThread = {id: number; inputs: SendInput[]} | {close: true}

const {url, fifo} = workerData as {url: string; fifo: boolean}
if (!parentPort) throw new CisternError('the queue writer runs as a worker thread only')
const port = parentPort

async function handle(queue: Queue, message: ToThread): Promise<void> {
  if ('close' in message) {
    await queue.close()
    port.close()
    return
  }
  try {
    port.postMessage({id: message.id, results: await queue.sendBatch(message.inputs)})
  } catch (error) {
    port.postMessage({id: message.id, error: serializeError(error)})
  }
}

try {
  const queue = await openQueue(url, {fifo})
  port.on('message', (message: ToThread) => void handle(queue, message))
  port.postMessage({ready: true})
} catch (error) {
  port.postMessage({ready: false, error: serializeError(error)})
}
