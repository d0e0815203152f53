import type {Logger} from '../core/log.js'
import type {ServeSettings} from './settings.js'

export interface HooksServeResult {
  url: string
  store: string
  stopped: true
}

/**
 * `cistern hooks serve`: start the service, say where it listens, run until the stop signal, then
 * stop within the stop timeout (intake first, running executions finish or go back to the queue).
 */
export async function serveHooks(settings: ServeSettings, run: {signal: AbortSignal; log: Logger; listening: (line: string) => void}): Promise<HooksServeResult> {
  const {startHooksService} = await import('./service.js')
  const service = await startHooksService({...settings, log: run.log})
  run.listening(`hooks service listening on ${service.url} (store ${service.store.location})`)
  await new Promise<void>((resolve) => {
    if (run.signal.aborted) resolve()
    else run.signal.addEventListener('abort', () => resolve(), {once: true})
  })
  await service.stop(settings.stopTimeoutMs)
  return {url: service.url, store: service.store.location, stopped: true}
}
