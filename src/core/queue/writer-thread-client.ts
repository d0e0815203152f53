/** Starting and talking to the embedded queue's writer thread (writer-thread.ts). */
import {existsSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import {Worker} from 'node:worker_threads'

import {CisternError, type ExitCode, UsageError, errorMessage} from '../errors.js'
import type {Logger} from '../log.js'
import {QueueBatchError} from './errors.js'
import type {BatchFailure, SendInput, SendResult} from './types.js'

/** An error as it crosses the thread boundary (structured clone keeps no classes). */
export interface SerializedError {
  name: string
  message: string
  exitCode?: ExitCode
  fix?: string
  operation?: 'send' | 'delete'
  failures?: BatchFailure[]
  results?: Array<SendResult | undefined>
}

export function serializeError(error: unknown): SerializedError {
  const out: SerializedError = {name: error instanceof Error ? error.name : 'Error', message: errorMessage(error)}
  if (error instanceof CisternError) Object.assign(out, {exitCode: error.exitCode, fix: error.fix})
  if (error instanceof QueueBatchError) Object.assign(out, {operation: error.operation, failures: error.failures, results: error.results})
  return out
}

/** Back to the class it was, so callers (and the group commit) see the same errors as without a thread. */
export function deserializeError(error: SerializedError): Error {
  if (error.name === 'QueueBatchError' && error.failures) return new QueueBatchError(error.operation ?? 'send', error.failures, error.results)
  if (error.name === 'UsageError') return new UsageError(error.message, error.fix)
  if (error.exitCode !== undefined) return Object.assign(new CisternError(error.message, {exitCode: error.exitCode, fix: error.fix}), {name: error.name})
  return Object.assign(new Error(error.message), {name: error.name})
}

export interface WriterThread {
  sendBatch(inputs: SendInput[]): Promise<SendResult[]>
  close(): Promise<void>
}

type FromThread = {ready: boolean; error?: SerializedError} | {id: number; results: SendResult[]} | {id: number; error: SerializedError}

/** Starts the thread for the queue at `url`; undefined (commit on the caller's thread) when it cannot start. */
export async function startWriterThread(url: string, fifo: boolean, log?: Logger): Promise<WriterThread | undefined> {
  const file = new URL('./writer-thread.js', import.meta.url)
  // From TypeScript sources (tests) there is no .js to run in a thread.
  if (!existsSync(fileURLToPath(file))) return undefined
  // --input-type (node -e scripts) is an error for a worker started from a file.
  const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--input-type'))
  const worker = new Worker(file, {workerData: {url, fifo}, execArgv})
  worker.unref()
  const waiting = new Map<number, {resolve: (results: SendResult[]) => void; reject: (error: unknown) => void}>()
  let next = 0
  let dead: Error | undefined
  const started = await new Promise<boolean>((resolve) => {
    let settled = false
    worker.on('message', (message: FromThread) => {
      if ('ready' in message) {
        settled = true
        if (!message.ready) log?.warn('queue writer thread failed to start: committing on the main thread', {error: message.error?.message})
        resolve(message.ready)
        return
      }
      const entry = waiting.get(message.id)
      waiting.delete(message.id)
      if ('error' in message) entry?.reject(deserializeError(message.error))
      else entry?.resolve(message.results)
    })
    const fail = (error: Error) => {
      if (!settled) log?.warn('queue writer thread failed to start: committing on the main thread', {error: error.message})
      settled = true
      dead = error
      resolve(false)
      for (const entry of waiting.values()) entry.reject(error)
      waiting.clear()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`queue writer thread exited (${code})`)))
  })
  if (!started) {
    void worker.terminate()
    return undefined
  }
  return {
    sendBatch(inputs) {
      if (dead) return Promise.reject(dead)
      const id = next++
      return new Promise<SendResult[]>((resolve, reject) => {
        waiting.set(id, {resolve, reject})
        worker.postMessage({id, inputs})
      })
    },
    async close() {
      if (dead) return
      // Keep the process alive until the thread has closed its database.
      worker.ref()
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      worker.postMessage({close: true})
      let timer: NodeJS.Timeout | undefined
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 2000)))])
      clearTimeout(timer)
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the thread may die during the awaits above
      if (!dead) await worker.terminate()
    },
  }
}
