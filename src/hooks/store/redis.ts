import {randomUUID} from 'node:crypto'

import type {Redis as RedisClient} from 'ioredis'
import {z} from 'zod'

import {CisternError, TargetUnhealthyError, UsageError, errorMessage} from '../../core/errors.js'
import {StoreDataError, TaskExistsError} from '../errors.js'
import {type Execution, type Task, type TaskType, executionRef, refTimestamp} from '../model.js'
import {type RedisKeys, SCRIPTS, type ScriptArgs, type ScriptName, redisKeys} from './redis-layout.js'
import {parseExecution, parseTask, serialiseExecution} from './records.js'
import {type Backlog, type HooksStore, type IntakeOutcome, type OpenStoreOptions, STOPPED_ERROR} from './types.js'

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

/** Reads of many keys go in chunks of this many (one MGET each). */
const CHUNK = 500

export async function openRedisStore(url: string, options: OpenStoreOptions = {}): Promise<HooksStore> {
  const {Redis} = await import('ioredis')
  if (!URL.canParse(url)) throw new UsageError(`bad Redis URL "${redisLocation(url)}"`, 'use redis://host:port/db or rediss://host:port/db')
  // Auto-pipelining: commands issued in the same tick share one socket write (intake under load).
  // disconnectTimeout: a socket Redis no longer answers on is destroyed at once on close, not 2 s later
  // (that timer would hold a stopping process past its --stop-timeout).
  const redis = new Redis(url, {lazyConnect: true, maxRetriesPerRequest: 50, enableAutoPipelining: true, disconnectTimeout: 100})
  for (const [name, script] of Object.entries(SCRIPTS)) redis.defineCommand(name, {lua: script.lua, numberOfKeys: script.keys})
  // An unreachable Redis must not crash the process: ioredis retries, callers see command errors.
  redis.on('error', () => undefined)
  try {
    await redis.connect()
  } catch (error) {
    redis.disconnect()
    throw new TargetUnhealthyError(`cannot reach Redis at ${redisLocation(url)}: ${errorMessage(error)}`, 'check --store and that Redis is running', error)
  }
  const store = new RedisStore(redis, redisKeys(options.prefix ?? 'hooks'), redisLocation(url))
  await store.ping()
  return store
}

const redisTime = z.tuple([z.coerce.number(), z.coerce.number()])

/** What the scripts answer, checked (Redis answers are data from outside) without zod's cost on the intake path. */
const scriptResults = {
  number: (value: unknown): number => (typeof value === 'number' ? value : badAnswer(value)),
  strings: (value: unknown): string[] => (Array.isArray(value) && value.every((item): item is string => typeof item === 'string') ? value : badAnswer(value)),
  ref: (value: unknown): string | null => (value === null || typeof value === 'string' ? value : badAnswer(value)),
}

function badAnswer(value: unknown): never {
  throw new CisternError(`Redis answered a hooks script with a ${typeof value}: ${String(value).slice(0, 100)}`, {fix: 'check that --store points at a Redis server (not a proxy that rewrites answers)'})
}

/** Tasks and executions in Redis, in the CDS layout (redis-layout.ts); several instances share it. */
export class RedisStore implements HooksStore {
  readonly kind = 'redis'
  private subscriber?: RedisClient
  /** Redis' clock minus ours (ms), so an intake deadline means the same instant to the script. */
  private clockOffsetMs = 0

  constructor(
    private readonly redis: RedisClient,
    private readonly k: RedisKeys,
    readonly location: string,
  ) {}

  // --- tasks ---------------------------------------------------------------------------------

  async createTask(task: Task): Promise<void> {
    const created = await this.redis.set(this.k.task(task.uuid), JSON.stringify(task), 'NX')
    if (created !== 'OK') throw new TaskExistsError(task.uuid)
    await this.redis.zadd(this.k.tasks, await this.redis.incr(this.k.seq), task.uuid)
  }

  async getTask(uuid: string): Promise<Task | undefined> {
    const json = await this.redis.get(this.k.task(uuid))
    return json === null ? undefined : parseTask(json, this.k.task(uuid))
  }

  async listTasks(): Promise<Task[]> {
    const uuids = await this.redis.zrange(this.k.tasks, 0, -1)
    if (uuids.length === 0) return []
    const values = await this.redis.mget(uuids.map(this.k.task))
    const tasks: Task[] = []
    values.forEach((json, i) => {
      if (json !== null) tasks.push(parseTask(json, this.k.task(uuids[i] ?? '?')))
    })
    return tasks
  }

  async updateTask(task: Task): Promise<boolean> {
    return (await this.redis.set(this.k.task(task.uuid), JSON.stringify(task), 'XX')) === 'OK'
  }

  async deleteTask(uuid: string): Promise<boolean> {
    const type = await this.taskType(uuid)
    if (!type) return false
    const timestamps = await this.redis.zrange(this.k.executions(type, uuid), 0, -1)
    const multi = this.redis.multi()
    for (const chunk of chunks(timestamps)) {
      multi.del(...chunk.map((ts) => this.k.execution(type, uuid, ts)))
      multi.zrem(this.k.dead, ...chunk.map((ts) => executionRef({type, task_uuid: uuid, timestamp: Number(ts)})))
    }
    multi.del(this.k.executions(type, uuid), this.k.task(uuid)).zrem(this.k.tasks, uuid)
    await multi.exec()
    // Refs still in the queue or due set point at nothing now: the worker drops them.
    return true
  }

  // --- executions ----------------------------------------------------------------------------

  async insertExecution(execution: Execution, options: {ifAbsent?: boolean} = {}): Promise<Execution | undefined> {
    // The id tells a resent insert (ioredis replays unanswered commands after a reconnect) from a clash.
    const out = {...execution, id: execution.id ?? randomUUID()}
    for (let attempt = 0; attempt < 1000; attempt++) {
      const ref = executionRef(out)
      const mode = out.status === 'ENQUEUED' ? 'queue' : out.status === 'SCHEDULED' ? 'due' : 'none'
      const keys = [this.k.ofRef(ref), this.k.executions(out.type, out.task_uuid), this.k.queue, this.k.due]
      const inserted = scriptResults.number(await this.script('insert', keys, [serialiseExecution(out), out.timestamp, mode, ref, out.due_at ?? 0]))
      if (inserted === 1) return out
      if (options.ifAbsent) return undefined
      out.timestamp += 1
    }
    throw new CisternError(`no free execution timestamp for task ${execution.task_uuid}`)
  }

  async intake(execution: Execution, options: {deadline?: number} = {}): Promise<IntakeOutcome> {
    const out: Execution = {...execution, id: execution.id ?? randomUUID()}
    const deadline = options.deadline === undefined ? 0 : options.deadline + this.clockOffsetMs
    for (let attempt = 0; attempt < 1000; attempt++) {
      const ref = executionRef(out)
      const keys = [this.k.task(out.task_uuid), this.k.ofRef(ref), this.k.executions('webhook', out.task_uuid), this.k.queue]
      const answer = scriptResults.strings(await this.script('intake', keys, [out.request?.method ?? '', serialiseExecution(out), out.timestamp, ref, deadline]))
      const outcome = answer.at(0)
      if (outcome === 'accepted') return {outcome, execution: out}
      if (outcome === 'wrong-method') return {outcome, allowed: answer.at(1) ?? ''}
      if (outcome === 'unknown' || outcome === 'stopped' || outcome === 'late') return {outcome}
      out.timestamp += 1
    }
    throw new CisternError(`no free execution timestamp for task ${execution.task_uuid}`)
  }

  async getExecution(taskUuid: string, timestamp: number): Promise<Execution | undefined> {
    const type = await this.taskType(taskUuid)
    if (!type) return undefined
    const key = this.k.execution(type, taskUuid, timestamp)
    const json = await this.redis.get(key)
    return json === null ? undefined : parseExecution(json, key)
  }

  async listExecutions(taskUuid: string, options: {limit?: number} = {}): Promise<Execution[]> {
    const type = await this.taskType(taskUuid)
    if (!type) return []
    const timestamps = await this.redis.zrevrange(this.k.executions(type, taskUuid), 0, options.limit ? options.limit - 1 : -1)
    return this.readExecutions(timestamps.map((ts) => this.k.execution(type, taskUuid, ts)))
  }

  async countExecutions(taskUuid: string): Promise<{total: number; todo: number}> {
    const type = await this.taskType(taskUuid)
    if (!type) return {total: 0, todo: 0}
    const timestamps = await this.redis.zrange(this.k.executions(type, taskUuid), 0, -1)
    let todo = 0
    for (const chunk of chunks(timestamps)) {
      const values = await this.redis.mget(chunk.map((ts) => this.k.execution(type, taskUuid, ts)))
      for (const value of values) if (value !== null && !value.startsWith('{"status":"DONE"')) todo++
    }
    return {total: timestamps.length, todo}
  }

  async plannedExecutions(taskUuid: string): Promise<Execution[]> {
    const type = await this.taskType(taskUuid)
    if (!type) return []
    // Planned runs carry the newest timestamps (their planned time): the last few cover them.
    const timestamps = await this.redis.zrevrange(this.k.executions(type, taskUuid), 0, 9)
    const executions = await this.readExecutions(timestamps.map((ts) => this.k.execution(type, taskUuid, ts)))
    return executions.filter((e) => e.status === 'SCHEDULED' && e.scheduled_date && e.nb_errors === 0).sort((a, b) => (a.due_at ?? 0) - (b.due_at ?? 0))
  }

  async stopExecution(taskUuid: string, timestamp: number, nowMs: number): Promise<'stopped' | 'stopping' | 'already-done' | 'unknown'> {
    const type = await this.taskType(taskUuid)
    if (!type) return 'unknown'
    const ref = executionRef({type, task_uuid: taskUuid, timestamp})
    const locked = await this.lockAndRead(ref, 10_000)
    if (!locked) {
      if (!(await this.redis.exists(this.k.ofRef(ref)))) return 'unknown'
      await this.redis.set(this.k.stop(ref), '1', 'EX', 86_400)
      return 'stopping'
    }
    const {token, execution} = locked
    if (execution?.status !== 'SCHEDULED' && execution?.status !== 'ENQUEUED' && execution?.status !== 'DOING') {
      await this.script('release', [this.k.lock(ref)], [token])
      return execution ? 'already-done' : 'unknown'
    }
    const done: Execution = {...execution, status: 'DONE', stopped: true, last_error: STOPPED_ERROR, done_at: nowMs, due_at: undefined}
    await this.write(ref, token, done, 'stopped', 0)
    return 'stopped'
  }

  async stopRequested(execution: Execution): Promise<boolean> {
    return (await this.redis.exists(this.k.stop(executionRef(execution)))) === 1
  }

  async clean(taskUuid: string, keep: number): Promise<number> {
    const type = await this.taskType(taskUuid)
    if (!type) return 0
    const timestamps = await this.redis.zrevrange(this.k.executions(type, taskUuid), 0, -1)
    const drop: string[] = []
    let kept = 0
    for (const chunk of chunks(timestamps)) {
      const values = await this.redis.mget(chunk.map((ts) => this.k.execution(type, taskUuid, ts)))
      values.forEach((value, j) => {
        const ts = chunk.at(j)
        if (ts === undefined) return
        if (value === null) drop.push(ts)
        else if (value.startsWith('{"status":"DONE"') && ++kept > keep) drop.push(ts)
      })
    }
    for (const chunk of chunks(drop)) {
      await this.redis
        .multi()
        .del(...chunk.map((ts) => this.k.execution(type, taskUuid, ts)))
        .zrem(this.k.executions(type, taskUuid), ...chunk)
        .zrem(this.k.dead, ...chunk.map((ts) => executionRef({type, task_uuid: taskUuid, timestamp: Number(ts)})))
        .exec()
    }
    return drop.length
  }

  // --- the work queue ------------------------------------------------------------------------

  async enqueueDue(nowMs: number, limit = 500): Promise<Execution[]> {
    const refs = scriptResults.strings(await this.script('enqueueDue', [this.k.due, this.k.queue], [nowMs, limit, this.k.execPrefix]))
    if (refs.length === 0) return []
    const executions = await this.readExecutions(refs.map(this.k.ofRef))
    return executions.map((execution) => ({...execution, due_at: undefined}))
  }

  async claim(nowMs: number, leaseMs: number, owner?: string): Promise<Execution | undefined> {
    // Bounded: skip refs locked elsewhere (a duplicate being processed) or already DONE.
    for (let i = 0; i < 100; i++) {
      const ref = scriptResults.ref(await this.script('pop', [this.k.queue, this.k.inflight], [nowMs + leaseMs]))
      if (ref === null) return undefined
      const locked = await this.lockUnfinished(ref, leaseMs)
      if (!locked) continue
      const {token, execution} = locked
      const doing: Execution = {...execution, status: 'DOING', processing_timestamp: nowMs, due_at: undefined, claim: token, ...(owner ? {owner} : {})}
      if ((await this.write(ref, token, doing, 'doing', nowMs + leaseMs)) === 1) return execution.owner ? {...doing, previous_owner: execution.owner} : doing
    }
    return undefined
  }

  async heartbeat(execution: Execution, nowMs: number, leaseMs: number): Promise<boolean> {
    const ref = executionRef(execution)
    const kept = await this.script('heartbeat', [this.k.lock(ref), this.k.inflight], [execution.claim ?? '', leaseMs, nowMs + leaseMs, ref])
    return kept === 1
  }

  async finish(execution: Execution): Promise<boolean> {
    const ref = executionRef(execution)
    const done: Execution = {...execution, status: 'DONE', due_at: undefined}
    const written = await this.write(ref, execution.claim ?? '', done, execution.dead ? 'dead' : 'done', execution.done_at ?? Date.now())
    if (written === 1) await this.redis.del(this.k.stop(ref))
    return written === 1
  }

  async reschedule(execution: Execution): Promise<boolean> {
    const again: Execution = {...execution, status: 'SCHEDULED'}
    return (await this.write(executionRef(execution), execution.claim ?? '', again, 'retry', execution.due_at ?? 0)) === 1
  }

  async recoverExpired(nowMs: number, leaseMs: number): Promise<number> {
    const refs = await this.redis.zrangebyscore(this.k.inflight, '-inf', nowMs, 'LIMIT', 0, 100)
    let n = 0
    // Pushed to the front one by one: go newest first so the oldest ends up first.
    for (const ref of refs.reverse()) {
      const locked = await this.lockUnfinished(ref, leaseMs)
      if (!locked) continue
      const {token, execution} = locked
      if ((await this.write(ref, token, {...execution, status: 'ENQUEUED'}, 'requeue', 0)) === 1) n++
    }
    return n
  }

  async queueLength(): Promise<number> {
    return this.redis.llen(this.k.queue)
  }

  async backlog(nowMs: number): Promise<Backlog> {
    const [queued, inFlight, delayed, dead, head, claimed, waiting] = await Promise.all([
      this.redis.llen(this.k.queue),
      this.redis.zcard(this.k.inflight),
      this.redis.zcard(this.k.due),
      this.redis.zcard(this.k.dead),
      this.redis.lindex(this.k.queue, 0),
      this.redis.zrange(this.k.inflight, 0, 999),
      this.redis.zrange(this.k.due, 0, 999),
    ])
    // Refs carry their creation time (µs; a planned run's is its planned time): the oldest that is not in the future.
    const times = [head ?? '', ...claimed, ...waiting].map(refTimestamp).filter((ts) => Number.isFinite(ts) && ts > 0 && ts / 1000 <= nowMs)
    const oldest = times.length > 0 ? Math.min(...times) / 1000 : nowMs
    return {queued, inFlight, delayed, dead, oldestAgeSeconds: Math.max(0, (nowMs - oldest) / 1000)}
  }

  // --- shared flags and the connection -------------------------------------------------------

  async getMaintenance(): Promise<boolean> {
    return (await this.redis.get(this.k.maintenance)) === 'true'
  }

  async setMaintenance(enabled: boolean): Promise<void> {
    await this.redis.multi().set(this.k.maintenance, String(enabled)).publish(this.k.maintenance, String(enabled)).exec()
  }

  async subscribe(handlers: {maintenance: (enabled: boolean) => void}): Promise<void> {
    const subscriber = (this.subscriber ??= this.redis.duplicate())
    subscriber.on('error', () => undefined)
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.k.maintenance) handlers.maintenance(message === 'true')
    })
    await subscriber.subscribe(this.k.maintenance)
  }

  /** PING, and Redis' clock read again (the intake deadline's offset). */
  async ping(): Promise<void> {
    const before = Date.now()
    // ioredis types TIME as numbers; Redis answers two strings.
    const [secondsPart, microsPart] = redisTime.parse(await this.redis.time())
    const after = Date.now()
    this.clockOffsetMs = secondsPart * 1000 + Math.floor(microsPart / 1000) - Math.round((before + after) / 2)
  }

  async close(options: {force?: boolean} = {}): Promise<void> {
    this.subscriber?.disconnect()
    if (options.force || this.redis.status !== 'ready') {
      this.redis.disconnect()
      return
    }
    // QUIT waits for the replies of what was sent; a Redis that stops answering is disconnected after a moment.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.redis.quit().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)))])
    clearTimeout(timer)
    this.redis.disconnect()
  }

  // --- steps ---------------------------------------------------------------------------------

  /** Call one of the layout's Lua scripts (defined on the client, sent by EVALSHA). */
  private async script(name: ScriptName, keys: string[], args: ScriptArgs): Promise<unknown> {
    const command: unknown = Reflect.get(this.redis, name)
    if (typeof command !== 'function') throw new CisternError(`the Redis script ${name} is not defined`)
    return (await command.apply(this.redis, [...keys, ...args])) as unknown
  }

  /** One transition of a claimed execution (the `write` script): 1 done, 0 the claim was lost, -1 the execution is gone. */
  private async write(ref: string, token: string, execution: Execution, mode: 'doing' | 'done' | 'dead' | 'retry' | 'requeue' | 'stopped', score: number): Promise<number> {
    const keys = [this.k.lock(ref), this.k.ofRef(ref), this.k.inflight, this.k.due, this.k.queue, this.k.dead]
    return scriptResults.number(await this.script('write', keys, [token, serialiseExecution(execution), mode, ref, score]))
  }

  private async taskType(uuid: string): Promise<TaskType | undefined> {
    return (await this.getTask(uuid))?.type
  }

  private async readExecutions(keys: string[]): Promise<Execution[]> {
    const out: Execution[] = []
    for (const chunk of chunks(keys)) {
      const values = await this.redis.mget(chunk)
      values.forEach((value, i) => {
        if (value !== null) out.push(parseExecution(value, chunk[i] ?? '?'))
      })
    }
    return out
  }

  /**
   * Lock a ref and read its execution. A record that does not parse is taken out of the work queue
   * (kept, among the dead) so it does not come back at every lease; the error names it.
   */
  /**
   * lockAndRead for an execution still to run: a ref whose execution is gone or DONE (a duplicate
   * already processed) leaves the in-flight set and its lock, and gives undefined like a ref locked
   * elsewhere.
   */
  private async lockUnfinished(ref: string, leaseMs: number): Promise<{token: string; execution: Execution} | undefined> {
    const locked = await this.lockAndRead(ref, leaseMs)
    if (!locked) return undefined
    const {token, execution} = locked
    if (execution && execution.status !== 'DONE') return {token, execution}
    await this.redis.multi().zrem(this.k.inflight, ref).del(this.k.lock(ref)).exec()
    return undefined
  }

  private async lockAndRead(ref: string, leaseMs: number): Promise<{token: string; execution?: Execution} | undefined> {
    const token = randomUUID()
    const ok = await this.redis.set(this.k.lock(ref), token, 'PX', leaseMs, 'NX')
    if (ok !== 'OK') return undefined
    const key = this.k.ofRef(ref)
    const json = await this.redis.get(key)
    try {
      return {token, execution: json === null ? undefined : parseExecution(json, key)}
    } catch (error) {
      if (error instanceof StoreDataError) {
        await this.redis.multi().zrem(this.k.inflight, ref).zrem(this.k.due, ref).lrem(this.k.queue, 0, ref).zadd(this.k.dead, Date.now(), ref).del(this.k.lock(ref)).exec()
      }
      throw error
    }
  }
}

function chunks<T>(items: T[]): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK))
  return out
}
