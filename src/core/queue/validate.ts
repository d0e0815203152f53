import {UsageError} from '../errors.js'
import type {ReceiveOptions, SendInput} from './types.js'

/** SQS limits, applied the same way by every backend so a mistake fails locally and early. */
export const LIMITS = {
  batch: 10,
  maxWaitSeconds: 20,
  maxDelaySeconds: 900,
  maxVisibilityTimeout: 43_200,
  defaultVisibilityTimeout: 30,
  defaultMaxReceiveCount: 5,
} as const

function integerIn(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`${name} must be a whole number from ${min} to ${max} (got ${value})`)
  }
  return value
}

export function checkVisibilityTimeout(value: number, name = 'visibility timeout'): number {
  return integerIn(name, value, 0, LIMITS.maxVisibilityTimeout)
}

export interface ReceiveParams {
  maxMessages: number
  waitSeconds: number
  visibilityTimeout: number
}

export function receiveParams(options: ReceiveOptions, defaultVisibility: number): ReceiveParams {
  return {
    maxMessages: integerIn('maxMessages', options.maxMessages ?? LIMITS.batch, 1, LIMITS.batch),
    waitSeconds: integerIn('waitSeconds', options.waitSeconds ?? 0, 0, LIMITS.maxWaitSeconds),
    visibilityTimeout: checkVisibilityTimeout(options.visibilityTimeout ?? defaultVisibility),
  }
}

/** Checks a message before it is sent; `maxBodyBytes` is the backend's limit. */
export function checkSend(message: SendInput, maxBodyBytes: number): void {
  if (typeof message.body !== 'string') throw new UsageError('message body must be a string')
  if (message.body.length === 0) throw new UsageError('message body is empty', 'queues do not carry empty messages: send some text')
  const bytes = Buffer.byteLength(message.body, 'utf8')
  if (bytes > maxBodyBytes) {
    throw new UsageError(`message body is ${bytes} bytes, over this queue's limit of ${maxBodyBytes} bytes`)
  }
  if (message.delaySeconds !== undefined) integerIn('delaySeconds', message.delaySeconds, 0, LIMITS.maxDelaySeconds)
  if (message.attributes) {
    for (const [key, value] of Object.entries(message.attributes)) {
      if (typeof value !== 'string') throw new UsageError(`message attribute "${key}" must be a string`)
    }
  }
}

/**
 * Sleeps `ms`, resolving early (without throwing) when any of the signals aborts. Listeners are
 * removed afterwards (no AbortSignal.any: Node 20 keeps such composed signals alive).
 */
export function pause(ms: number, ...signals: Array<AbortSignal | undefined>): Promise<void> {
  const live = signals.filter((s): s is AbortSignal => s !== undefined)
  return new Promise((resolve) => {
    if (ms <= 0 || live.some((s) => s.aborted)) {
      resolve()
      return
    }
    const done = () => {
      clearTimeout(timer)
      for (const s of live) s.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    for (const s of live) s.addEventListener('abort', done, {once: true})
  })
}

export function chunks<T>(items: T[], size: number = LIMITS.batch): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/**
 * One signal that aborts when any of `signals` does; call dispose() when the operation is over so
 * long-lived signals (a queue's close) do not collect listeners.
 */
export function linkSignals(...signals: Array<AbortSignal | undefined>): {signal: AbortSignal; dispose: () => void} {
  const controller = new AbortController()
  const live = signals.filter((s): s is AbortSignal => s !== undefined)
  const abort = () => controller.abort()
  for (const s of live) {
    if (s.aborted) controller.abort()
    else s.addEventListener('abort', abort, {once: true})
  }
  return {signal: controller.signal, dispose: () => live.forEach((s) => s.removeEventListener('abort', abort))}
}
