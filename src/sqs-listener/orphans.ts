/**
 * Jobs left running by a listener that was killed with SIGKILL (its process groups survive it).
 * A listener starting on the host stops the orphans of every listener that shared its state
 * database and is gone, and before a request is run again its orphaned job is stopped, so a rerun
 * never overlaps it. Jobs are found by the CISTERN_LISTENER_ID and CISTERN_REQUEST_ID the listener
 * put in their environment (src/core/orphans.ts reads /proc; elsewhere nothing is found).
 */
import type {Logger} from '../core/log.js'
import {stopProcesses} from '../core/orphans.js'
import type {RequestStore} from './store.js'

export const LISTENER_ID_ENV = 'CISTERN_LISTENER_ID'

/** SIGTERM the orphans' process groups, SIGKILL what is left after graceMs; returns how many there were. */
export function stopOrphans(owner: string, requestId: string, log: Logger, graceMs = 5000): Promise<number> {
  return stopProcesses({[LISTENER_ID_ENV]: owner, CISTERN_REQUEST_ID: requestId}, {log, what: `request ${requestId} (listener ${owner})`, graceMs})
}

/**
 * At start-up: the jobs of requests that listeners on this host (sharing this state database)
 * were running when they died. Stopped now, not when their requests come back: a listener on
 * another host may receive such a request once its visibility timeout lapses, and a restart
 * (systemd's RestartSec) comes sooner than that.
 */
export async function stopAbandonedJobs(store: RequestStore, log: Logger, graceMs = 5000): Promise<number> {
  let stopped = 0
  for (const {requestId, owner} of store.abandoned()) stopped += await stopOrphans(owner, requestId, log, graceMs)
  return stopped
}
