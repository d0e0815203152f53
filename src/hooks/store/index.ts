import {UsageError} from '../../core/errors.js'
import {defaultDbPath} from '../../core/paths.js'
import type {HooksStore, OpenStoreOptions} from './types.js'

export type * from './types.js'
export {STOPPED_ERROR, TaskExistsError} from './types.js'

/** The default store: the embedded db file the other pieces share. */
export function defaultStoreUrl(env: NodeJS.ProcessEnv = process.env): string {
  return `sqlite:${defaultDbPath(env)}`
}

/** Open the store named by a URL; the backend is imported lazily (ioredis only when asked for). */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<HooksStore> {
  if (url.startsWith('sqlite:')) {
    const {openSqliteStore} = await import('./sqlite.js')
    return openSqliteStore(url, options)
  }
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    const {openRedisStore} = await import('./redis.js')
    return openRedisStore(url, options)
  }
  throw new UsageError(`unknown hooks store "${url.replace(/\/\/[^@/]*@/, '//')}"`, 'use --store redis://host:port/db or sqlite:<path>')
}
