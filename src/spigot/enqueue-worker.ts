import {parentPort, workerData} from 'node:worker_threads'

import {errorMessage} from '../core/errors.js'
import {openQueue} from '../core/queue/index.js'
import type {SendInput} from '../core/queue/types.js'

/**
 * The embedded queue's writer thread for `spigot serve` (see groupCommit in intake.ts): SQLite's
 * commit with synchronous=FULL waits for an fsync, and better-sqlite3 would block the HTTP event
 * loop for it. Here it blocks only this thread; webhooks keep being read and verified meanwhile.
 */
const {url, fifo} = workerData as {url: string; fifo: boolean}
const port = parentPort!

try {
  const queue = await openQueue(url, {fifo})
  port.on('message', async (message: {id: number; inputs: SendInput[]} | {close: true}) => {
    if ('close' in message) {
      await queue.close()
      port.close()
      return
    }
    try {
      port.postMessage({id: message.id, results: await queue.sendBatch(message.inputs)})
    } catch (error) {
      port.postMessage({id: message.id, error: errorMessage(error)})
    }
  })
  port.postMessage({ready: true})
} catch (error) {
  port.postMessage({ready: false, error: errorMessage(error)})
}
