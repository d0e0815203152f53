import {randomUUID} from 'node:crypto'

import type {Redis as RedisClient} from 'ioredis'

import {UsageError} from '../../core/errors.js'
import {type Execution, type Task, type TaskType, executionRef} from '../model.js'
import {type HooksStore, type OpenStoreOptions, STOPPED_ERROR, TaskExistsError} from './types.js'

/*
 * Layout (DESIGN.md, CDS quirks fixed: tasks sorted by creation, no stale de-duplication):
 *   <p>:tasks                                   sorted set of task uuids, score = creation sequence
 *   <p>:tasks:seq                               the creation sequence counter
 *   <p>:tasks:<uuid>                            task JSON
 *   <p>:tasks:executions:<type>:<uuid>          sorted set of execution timestamps
 *   <p>:tasks:executions:<type>:<uuid>:<ts>     execution JSON (always starts with {"status":…)
 *   <p>:scheduler:queue                         work queue (list of refs <type>:<uuid>:<ts>, FIFO)
 *   <p>:scheduler:due                           SCHEDULED refs, score = due time (ms)
 *   <p>:scheduler:inflight                      claimed refs, score = lease deadline (ms)
 *   <p>:lock:<ref>                              per-execution lock (SET NX PX, value = claim token)
 *   <p>:stop:<ref>                              stop requested for a running execution
 *   <p>:maintenance                             "true" | "false"; also published on channel <p>:maintenance
 * Every transition that moves a ref between structures is one Lua script, so a crash or a Redis
 * restart between two steps cannot lose an execution: a claimed ref stays in `inflight` until it
 * is DONE or rescheduled, and a lapsed lease puts it back at the front of the queue.
 */

// Status is the first key of the stored JSON so scripts can change it without decoding
// (cjson would round 16-digit µs timestamps).
const SET_STATUS = `local function setStatus(key, status)
  local json = redis.call('GET', key)
  if json then redis.call('SET', key, (string.gsub(json, '^{"status":"%u+"', '{"status":"' .. status .. '"', 1))) end
  return json
end
`

const SCRIPTS = {
  // KEYS: exec, task executions, queue, due   ARGV: json, ts, mode (queue|due|none), ref, due_at
  insert: `if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[2])
  if ARGV[3] == 'queue' then redis.call('RPUSH', KEYS[3], ARGV[4]) elseif ARGV[3] == 'due' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4]) end
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0`,
  // KEYS: task, exec, task executions, queue   ARGV: method, json, ts, ref
  intake: `local json = redis.call('GET', KEYS[1])
if not json then return {'unknown'} end
local task = cjson.decode(json)
if task.type ~= 'webhook' then return {'unknown'} end
if task.config.method ~= ARGV[1] then return {'wrong-method', task.config.method} end
if task.stopped then return {'stopped'} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX') then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[3])
  redis.call('RPUSH', KEYS[4], ARGV[4])
  return {'accepted'}
end
if redis.call('GET', KEYS[2]) == ARGV[2] then return {'accepted'} end
return {'clash'}`,
  // KEYS: due, queue   ARGV: now, limit, key prefix for executions
  enqueueDue: `${SET_STATUS}
local refs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, ref in ipairs(refs) do
  redis.call('ZREM', KEYS[1], ref)
  redis.call('RPUSH', KEYS[2], ref)
  setStatus(ARGV[3] .. ref, 'ENQUEUED')
end
return refs`,
  // KEYS: queue, inflight   ARGV: lease deadline
  pop: `local ref = redis.call('LPOP', KEYS[1])
if not ref then return false end
redis.call('ZADD', KEYS[2], ARGV[1], ref)
return ref`,
  // KEYS: lock, exec, inflight, due, queue   ARGV: token, json, mode (doing|done|retry|requeue), ref, score
  write: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[4]); redis.call('ZREM', KEYS[4], ARGV[4]); redis.call('DEL', KEYS[1]); return -1
end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] == 'doing' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4]); return 1 end
redis.call('ZREM', KEYS[3], ARGV[4])
if ARGV[3] == 'retry' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
elseif ARGV[3] == 'requeue' then redis.call('LPUSH', KEYS[5], ARGV[4])
elseif ARGV[3] == 'stopped' then redis.call('ZREM', KEYS[4], ARGV[4]); redis.call('LREM', KEYS[5], 0, ARGV[4]) end
redis.call('DEL', KEYS[1])
return 1`,
  // KEYS: lock, inflight   ARGV: token, lease ms, deadline, ref
  heartbeat: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[4])
return 1`,
  // KEYS: lock   ARGV: token
  release: `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
}

type ScriptName = keyof typeof SCRIPTS
type Scripted = RedisClient & Record<ScriptName, (...args: Array<string | number>) => Promise<unknown>>

/** `redis://[:password@]host:port/db` with the password removed, for logs and /mon/status. */
export function redisLocation(url: string): string {
  try {
    const parsed = new URL(url)
    parsed.password = ''
    parsed.username = ''
    return parsed.toString().replace(/\/$/, '')
  } catch {
    return 'redis://?'
  }
}

function serialise(execution: Execution): string {
  const {status, claim: _claim, ...rest} = execution
  return JSON.stringify({status, ...rest})
}

export async function openRedisStore(url: string, options: OpenStoreOptions = {}): Promise<HooksStore> {
  const {Redis} = await import('ioredis')
  try {
    new URL(url)
  } catch {
    throw new UsageError(`bad Redis URL "${redisLocation(url)}"`, 'use redis://host:port/db or rediss://host:port/db')
  }
  // Auto-pipelining: commands issued in the same tick share one socket write (intake under load).
  const redis = new Redis(url, {lazyConnect: true, maxRetriesPerRequest: 50, enableAutoPipelining: true}) as Scripted
  for (const [name, lua] of Object.entries(SCRIPTS)) {
    redis.defineCommand(name, {lua, numberOfKeys: {insert: 4, intake: 4, enqueueDue: 2, pop: 2, write: 5, heartbeat: 2, release: 1}[name as ScriptName]})
  }
  // An unreachable Redis must not crash the process: ioredis retries, callers see command errors.
  redis.on('error', () => {})
  try {
    await redis.connect()
  } catch (error) {
    redis.disconnect()
    throw new UsageError(`cannot reach Redis at ${redisLocation(url)}: ${(error as Error).message}`, 'check --store and that Redis is running')
  }
  let subscriber: RedisClient | undefined

  const p = options.prefix ?? 'hooks'
  const k = {
    tasks: `${p}:tasks`,
    seq: `${p}:tasks:seq`,
    task: (uuid: string) => `${p}:tasks:${uuid}`,
    executions: (type: TaskType, uuid: string) => `${p}:tasks:executions:${type}:${uuid}`,
    execution: (type: TaskType, uuid: string, ts: number | string) => `${p}:tasks:executions:${type}:${uuid}:${ts}`,
    execPrefix: `${p}:tasks:executions:`,
    queue: `${p}:scheduler:queue`,
    due: `${p}:scheduler:due`,
    inflight: `${p}:scheduler:inflight`,
    lock: (ref: string) => `${p}:lock:${ref}`,
    stop: (ref: string) => `${p}:stop:${ref}`,
    maintenance: `${p}:maintenance`,
  }
  const execKey = (ref: string) => k.execPrefix + ref

  async function taskType(uuid: string): Promise<TaskType | undefined> {
    const json = await redis.get(k.task(uuid))
    return json ? (JSON.parse(json) as Task).type : undefined
  }

  async function readExecutions(type: TaskType, uuid: string, timestamps: string[]): Promise<Execution[]> {
    const out: Execution[] = []
    for (let i = 0; i < timestamps.length; i += 500) {
      const chunk = timestamps.slice(i, i + 500)
      if (chunk.length === 0) break
      const values = await redis.mget(chunk.map((ts) => k.execution(type, uuid, ts)))
      for (const value of values) if (value) out.push(JSON.parse(value) as Execution)
    }
    return out
  }

  function writeKeys(ref: string) {
    return [k.lock(ref), execKey(ref), k.inflight, k.due, k.queue]
  }

  async function lockAndRead(ref: string, leaseMs: number): Promise<{token: string; execution?: Execution} | undefined> {
    const token = randomUUID()
    const ok = await redis.set(k.lock(ref), token, 'PX', leaseMs, 'NX')
    if (ok !== 'OK') return undefined
    const json = await redis.get(execKey(ref))
    return {token, execution: json ? (JSON.parse(json) as Execution) : undefined}
  }

  return {
    kind: 'redis',
    location: redisLocation(url),

    async createTask(task) {
      const created = await redis.set(k.task(task.uuid), JSON.stringify(task), 'NX')
      if (created !== 'OK') throw new TaskExistsError(task.uuid)
      await redis.zadd(k.tasks, await redis.incr(k.seq), task.uuid)
    },
    async getTask(uuid) {
      const json = await redis.get(k.task(uuid))
      return json ? (JSON.parse(json) as Task) : undefined
    },
    async listTasks() {
      const uuids = await redis.zrange(k.tasks, 0, -1)
      if (uuids.length === 0) return []
      const values = await redis.mget(uuids.map(k.task))
      return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as Task)
    },
    async updateTask(task) {
      return (await redis.set(k.task(task.uuid), JSON.stringify(task), 'XX')) === 'OK'
    },
    async deleteTask(uuid) {
      const type = await taskType(uuid)
      if (!type) return false
      const timestamps = await redis.zrange(k.executions(type, uuid), 0, -1)
      const multi = redis.multi()
      for (let i = 0; i < timestamps.length; i += 500) multi.del(...timestamps.slice(i, i + 500).map((ts) => k.execution(type, uuid, ts)))
      multi.del(k.executions(type, uuid), k.task(uuid)).zrem(k.tasks, uuid)
      await multi.exec()
      // Refs still in the queue or due set point at nothing now: the worker drops them.
      return true
    },

    async insertExecution(execution, opts = {}) {
      // The id tells a resent insert (ioredis replays unanswered commands after a reconnect) from a clash.
      const out = {...execution, id: execution.id ?? randomUUID()}
      for (let attempt = 0; attempt < 1000; attempt++) {
        const ref = executionRef(out)
        const mode = out.status === 'ENQUEUED' ? 'queue' : out.status === 'SCHEDULED' ? 'due' : 'none'
        const inserted = await redis.insert(
          execKey(ref),
          k.executions(out.type, out.task_uuid),
          k.queue,
          k.due,
          serialise(out),
          out.timestamp,
          mode,
          ref,
          out.due_at ?? 0,
        )
        if (inserted === 1) return out
        if (opts.ifAbsent) return undefined
        out.timestamp += 1
      }
      throw new Error(`no free execution timestamp for task ${execution.task_uuid}`)
    },
    async intake(execution) {
      const out: Execution = {...execution, id: execution.id ?? randomUUID()}
      for (let attempt = 0; attempt < 1000; attempt++) {
        const ref = executionRef(out)
        const [outcome, allowed] = (await redis.intake(
          k.task(out.task_uuid),
          execKey(ref),
          k.executions('webhook', out.task_uuid),
          k.queue,
          out.request?.method ?? '',
          serialise(out),
          out.timestamp,
          ref,
        )) as [string, string?]
        if (outcome === 'accepted') return {outcome, execution: out}
        if (outcome === 'wrong-method') return {outcome, allowed: allowed ?? ''}
        if (outcome === 'unknown' || outcome === 'stopped') return {outcome}
        out.timestamp += 1
      }
      throw new Error(`no free execution timestamp for task ${execution.task_uuid}`)
    },
    async getExecution(taskUuid, timestamp) {
      const type = await taskType(taskUuid)
      if (!type) return undefined
      const json = await redis.get(k.execution(type, taskUuid, timestamp))
      return json ? (JSON.parse(json) as Execution) : undefined
    },
    async listExecutions(taskUuid, opts = {}) {
      const type = await taskType(taskUuid)
      if (!type) return []
      const timestamps = await redis.zrevrange(k.executions(type, taskUuid), 0, opts.limit ? opts.limit - 1 : -1)
      return readExecutions(type, taskUuid, timestamps)
    },
    async countExecutions(taskUuid) {
      const type = await taskType(taskUuid)
      if (!type) return {total: 0, todo: 0}
      const timestamps = await redis.zrange(k.executions(type, taskUuid), 0, -1)
      let todo = 0
      for (let i = 0; i < timestamps.length; i += 500) {
        const values = await redis.mget(timestamps.slice(i, i + 500).map((ts) => k.execution(type, taskUuid, ts)))
        for (const value of values) if (value && !value.startsWith('{"status":"DONE"')) todo++
      }
      return {total: timestamps.length, todo}
    },
    async plannedExecutions(taskUuid) {
      const type = await taskType(taskUuid)
      if (!type) return []
      // Planned runs carry the newest timestamps (their planned time): the last few cover them.
      const timestamps = await redis.zrevrange(k.executions(type, taskUuid), 0, 9)
      const executions = await readExecutions(type, taskUuid, timestamps)
      return executions
        .filter((e) => e.status === 'SCHEDULED' && e.scheduled_date && e.nb_errors === 0)
        .sort((a, b) => (a.due_at ?? 0) - (b.due_at ?? 0))
    },

    async enqueueDue(nowMs, limit = 500) {
      const refs = (await redis.enqueueDue(k.due, k.queue, nowMs, limit, k.execPrefix)) as string[]
      if (refs.length === 0) return []
      const values = await redis.mget(refs.map(execKey))
      return values.filter((v): v is string => v !== null).map((v) => ({...(JSON.parse(v) as Execution), due_at: undefined}))
    },
    async claim(nowMs, leaseMs) {
      // Bounded: skip refs locked elsewhere (a duplicate being processed) or already DONE.
      for (let i = 0; i < 100; i++) {
        const ref = (await redis.pop(k.queue, k.inflight, nowMs + leaseMs)) as string | null
        if (!ref) return undefined
        const locked = await lockAndRead(ref, leaseMs)
        if (!locked) continue
        const {token, execution} = locked
        if (!execution || execution.status === 'DONE') {
          await redis.multi().zrem(k.inflight, ref).del(k.lock(ref)).exec()
          continue
        }
        const doing: Execution = {...execution, status: 'DOING', processing_timestamp: nowMs, due_at: undefined, claim: token}
        const written = await redis.write(...writeKeys(ref), token, serialise(doing), 'doing', ref, nowMs + leaseMs)
        if (written === 1) return doing
      }
      return undefined
    },
    async heartbeat(execution, nowMs, leaseMs) {
      const ref = executionRef(execution)
      return (await redis.heartbeat(k.lock(ref), k.inflight, execution.claim ?? '', leaseMs, nowMs + leaseMs, ref)) === 1
    },
    async finish(execution) {
      const ref = executionRef(execution)
      const done: Execution = {...execution, status: 'DONE', due_at: undefined}
      const written = await redis.write(...writeKeys(ref), execution.claim ?? '', serialise(done), 'done', ref, 0)
      if (written === 1) await redis.del(k.stop(ref))
      return written === 1
    },
    async reschedule(execution) {
      const ref = executionRef(execution)
      const again: Execution = {...execution, status: 'SCHEDULED'}
      return (await redis.write(...writeKeys(ref), execution.claim ?? '', serialise(again), 'retry', ref, execution.due_at ?? 0)) === 1
    },
    async recoverExpired(nowMs, leaseMs) {
      const refs = await redis.zrangebyscore(k.inflight, '-inf', nowMs, 'LIMIT', 0, 100)
      let n = 0
      // Pushed to the front one by one: go newest first so the oldest ends up first.
      for (const ref of refs.reverse()) {
        const locked = await lockAndRead(ref, leaseMs)
        if (!locked) continue
        const {token, execution} = locked
        if (!execution || execution.status === 'DONE') {
          await redis.multi().zrem(k.inflight, ref).del(k.lock(ref)).exec()
          continue
        }
        const again: Execution = {...execution, status: 'ENQUEUED'}
        if ((await redis.write(...writeKeys(ref), token, serialise(again), 'requeue', ref, 0)) === 1) n++
      }
      return n
    },
    async stopExecution(taskUuid, timestamp, nowMs) {
      const type = await taskType(taskUuid)
      if (!type) return 'unknown'
      const ref = executionRef({type, task_uuid: taskUuid, timestamp})
      const locked = await lockAndRead(ref, 10_000)
      if (!locked) {
        if (!(await redis.exists(execKey(ref)))) return 'unknown'
        await redis.set(k.stop(ref), '1', 'EX', 86_400)
        return 'stopping'
      }
      const {token, execution} = locked
      if (!execution) {
        await redis.eval(SCRIPTS.release, 1, k.lock(ref), token)
        return 'unknown'
      }
      if (execution.status === 'DONE') {
        await redis.eval(SCRIPTS.release, 1, k.lock(ref), token)
        return 'already-done'
      }
      const done: Execution = {...execution, status: 'DONE', stopped: true, last_error: STOPPED_ERROR, done_at: nowMs, due_at: undefined}
      await redis.write(...writeKeys(ref), token, serialise(done), 'stopped', ref, 0)
      return 'stopped'
    },
    async stopRequested(execution) {
      return (await redis.exists(k.stop(executionRef(execution)))) === 1
    },
    async clean(taskUuid, keep) {
      const type = await taskType(taskUuid)
      if (!type) return 0
      const timestamps = await redis.zrevrange(k.executions(type, taskUuid), 0, -1)
      const drop: string[] = []
      let kept = 0
      for (let i = 0; i < timestamps.length; i += 500) {
        const chunk = timestamps.slice(i, i + 500)
        const values = await redis.mget(chunk.map((ts) => k.execution(type, taskUuid, ts)))
        values.forEach((value, j) => {
          if (value === null) drop.push(chunk[j])
          else if (value.startsWith('{"status":"DONE"') && ++kept > keep) drop.push(chunk[j])
        })
      }
      for (let i = 0; i < drop.length; i += 500) {
        const chunk = drop.slice(i, i + 500)
        await redis
          .multi()
          .del(...chunk.map((ts) => k.execution(type, taskUuid, ts)))
          .zrem(k.executions(type, taskUuid), ...chunk)
          .exec()
      }
      return drop.length
    },

    async queueLength() {
      return redis.llen(k.queue)
    },
    async getMaintenance() {
      return (await redis.get(k.maintenance)) === 'true'
    },
    async setMaintenance(enabled) {
      await redis.multi().set(k.maintenance, String(enabled)).publish(k.maintenance, String(enabled)).exec()
    },
    async subscribe(handlers) {
      subscriber ??= redis.duplicate()
      subscriber.on('error', () => {})
      subscriber.on('message', (channel: string, message: string) => {
        if (channel === k.maintenance) handlers.maintenance(message === 'true')
      })
      await subscriber.subscribe(k.maintenance)
    },
    async ping() {
      await redis.ping()
    },
    async close() {
      subscriber?.disconnect()
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}
