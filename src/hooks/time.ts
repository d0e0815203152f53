/** Time limits for the calls an answer or a shutdown waits for. */
import {CisternError, errorMessage} from '../core/errors.js'
import {sleep} from '../core/loop.js'
import {StoreUnavailableError} from './errors.js'

/**
 * Bound a store call that an HTTP answer waits for: after `ms`, StoreUnavailableError. The call
 * itself is not cancelled (a Redis command stays queued); callers that write make a late write
 * harmless (the intake script refuses itself after its deadline).
 */
export async function withinMs<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new StoreUnavailableError(`${what}: no answer within ${ms / 1000} s`))
    }, ms)
  })
  // A call that fails after the answer was given must not be an unhandled rejection.
  work.catch(() => undefined)
  try {
    return await Promise.race([work, late])
  } catch (error) {
    if (error instanceof CisternError) throw error
    throw new StoreUnavailableError(`${what}: ${errorMessage(error)}`, error)
  } finally {
    clearTimeout(timer)
  }
}

/** True when `work` settled (either way) within `ms`; no timer is left behind. */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  const abort = new AbortController()
  const settled = work.then(
    () => true,
    () => true,
  )
  const result = await Promise.race([settled, sleep(ms, abort.signal).then(() => false)])
  abort.abort()
  return result
}
