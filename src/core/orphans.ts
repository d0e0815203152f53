/**
 * Jobs left running by a cistern process that was killed with SIGKILL: each job runs in its own
 * process group (core/jobs.ts), so it survives the process that started it. Before a piece runs
 * the same work again, it stops those orphans, so the two runs never overlap. A job is found by
 * marker variables its starter put in its environment (the starter's instance id and the work's
 * id); Linux /proc is read, elsewhere nothing is found and nothing is killed.
 *
 * Used by sqs-listen (src/sqs-listener/orphans.ts) and hooks (src/hooks/actions.ts).
 */
import {randomUUID} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {readFile, readdir} from 'node:fs/promises'
import {hostname} from 'node:os'

import type {Logger} from './log.js'
import {sleep} from './loop.js'

/** An id for this process as an owner of work: `<host>:<pid>:<random>`, unique across restarts. */
export function instanceId(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
}

/** The pid of an owner id of this host, else undefined (another host: its processes are out of reach). */
export function localOwnerPid(owner: string): number | undefined {
  const parts = owner.split(':')
  const pid = parts.at(1) ?? ''
  return parts.at(0) === hostname() && /^\d+$/.test(pid) ? Number(pid) : undefined
}

/** Processes (pid → process group) whose environment holds every `NAME=value` of `markers`. */
export async function findProcesses(markers: Record<string, string>): Promise<Map<number, number>> {
  const found = new Map<number, number>()
  let entries: string[]
  try {
    entries = await readdir('/proc')
  } catch {
    return found
  }
  const wanted = Object.entries(markers).map(([name, value]) => `${name}=${value}`)
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const environ = (await readFile(`/proc/${entry}/environ`, 'utf8')).split('\0')
      if (!wanted.every((marker) => environ.includes(marker))) continue
      found.set(Number(entry), processGroup(await readFile(`/proc/${entry}/stat`, 'utf8')))
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

export interface StopProcessesOptions {
  log: Logger
  /** What they were running, for the warn line: "execution 1764…", "request r-42". */
  what: string
  /** SIGTERM, then SIGKILL after this long (default 5 s). */
  graceMs?: number
}

/**
 * SIGTERM the process groups of the processes `markers` find, SIGKILL what is left after graceMs,
 * and wait (bounded) until they are gone. Returns how many processes there were.
 */
export async function stopProcesses(markers: Record<string, string>, options: StopProcessesOptions): Promise<number> {
  const found = await findProcesses(markers)
  if (found.size === 0) return 0
  options.log.warn(`stopping ${found.size} process(es) of ${options.what} left running by a cistern process that died`, {pids: [...found.keys()]})
  const signal = (name: NodeJS.Signals) => {
    for (const [pid, group] of found) {
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
  const alive = () => [...found.keys()].some((pid) => existsSync(`/proc/${pid}`) && !isZombie(pid))
  signal('SIGTERM')
  const until = Date.now() + (options.graceMs ?? 5000)
  while (alive() && Date.now() < until) await sleep(100)
  if (alive()) signal('SIGKILL')
  for (let i = 0; i < 50 && alive(); i++) await sleep(100)
  return found.size
}

/** /proc/<pid>/stat: "pid (comm) state ppid pgrp …"; comm may hold spaces or parentheses. */
function processGroup(stat: string): number {
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
}

/** A zombie has exited (its parent, the dead process, is gone; init reaps it shortly). */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return false
  }
}
