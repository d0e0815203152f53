/**
 * Jobs left running by a listener that was killed with SIGKILL (its process groups survive it).
 * A listener starting on the host stops the orphans of every listener that shared its state
 * database and is gone, and before a request is run again its orphaned job is stopped, so a rerun
 * never overlaps it. Jobs are found by the CISTERN_LISTENER_ID the listener put in their
 * environment (Linux /proc; elsewhere nothing is found and nothing is killed).
 */
import {existsSync, readFileSync} from 'node:fs'
import {readdir, readFile} from 'node:fs/promises'

import type {Logger} from '../core/log.js'
import {sleep} from '../core/loop.js'
import type {RequestStore} from './store.js'

export const LISTENER_ID_ENV = 'CISTERN_LISTENER_ID'

/** Processes (pid → process group) whose environment names this listener and request. */
export async function findOrphans(owner: string, requestId: string): Promise<Map<number, number>> {
  const found = new Map<number, number>()
  let entries: string[]
  try {
    entries = await readdir('/proc')
  } catch {
    return found
  }
  const wantOwner = `${LISTENER_ID_ENV}=${owner}`
  const wantRequest = `CISTERN_REQUEST_ID=${requestId}`
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const environ = (await readFile(`/proc/${entry}/environ`, 'utf8')).split('\0')
      if (!environ.includes(wantOwner) || !environ.includes(wantRequest)) continue
      // /proc/<pid>/stat: "pid (comm) state ppid pgrp …"; comm may hold spaces or parentheses.
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      const group = stat.slice(stat.lastIndexOf(')') + 2).split(' ').at(2)
      found.set(Number(entry), Number(group))
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

/** SIGTERM the orphans' process groups, SIGKILL what is left after graceMs; returns how many there were. */
export async function stopOrphans(owner: string, requestId: string, log: Logger, graceMs = 5000): Promise<number> {
  const orphans = await findOrphans(owner, requestId)
  if (orphans.size === 0) return 0
  log.warn(`stopping ${orphans.size} process(es) of request ${requestId} left running by a listener that died (${owner})`, {pids: [...orphans.keys()]})
  const signal = (name: NodeJS.Signals) => {
    for (const [pid, group] of orphans) {
      try {
        process.kill(group > 1 ? -group : pid, name)
      } catch {
        try {
          process.kill(pid, name)
        } catch {
          // already gone
        }
      }
    }
  }
  const alive = () => [...orphans.keys()].some((pid) => existsSync(`/proc/${pid}`) && !isZombie(pid))
  signal('SIGTERM')
  const until = Date.now() + graceMs
  while (alive() && Date.now() < until) await sleep(100)
  if (alive()) signal('SIGKILL')
  for (let i = 0; i < 50 && alive(); i++) await sleep(100)
  return orphans.size
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

/** A zombie has exited (its parent, the dead listener, is gone; init reaps it shortly). */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return false
  }
}
