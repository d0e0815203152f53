/*
 * The Redis store's layout (DESIGN.md "Hooks (CDS)", docs/hooks.md; CDS quirks fixed: tasks sorted by
 * creation, no stale de-duplication) and the Lua scripts that move executions between its structures:
 *   <p>:tasks                                   sorted set of task uuids, score = creation sequence
 *   <p>:tasks:seq                               the creation sequence counter
 *   <p>:tasks:<uuid>                            task JSON
 *   <p>:tasks:executions:<type>:<uuid>          sorted set of execution timestamps
 *   <p>:tasks:executions:<type>:<uuid>:<ts>     execution JSON (always starts with {"status":…)
 *   <p>:scheduler:queue                         work queue (list of refs <type>:<uuid>:<ts>, FIFO)
 *   <p>:scheduler:due                           SCHEDULED refs, score = due time (ms)
 *   <p>:scheduler:inflight                      claimed refs, score = lease deadline (ms)
 *   <p>:scheduler:dead                          refs of dead executions still kept, score = when (ms)
 *   <p>:lock:<ref>                              per-execution lock (SET NX PX, value = claim token)
 *   <p>:stop:<ref>                              stop requested for a running execution
 *   <p>:maintenance                             "true" | "false"; also published on channel <p>:maintenance
 * Every transition that moves a ref between structures is one Lua script, so a crash or a Redis
 * restart between two steps cannot lose an execution: a claimed ref stays in `inflight` until it
 * is DONE or rescheduled, and a lapsed lease puts it back at the front of the queue.
 */
import type {TaskType} from '../model.js'

export function redisKeys(p: string) {
  const execPrefix = `${p}:tasks:executions:`
  return {
    tasks: `${p}:tasks`,
    seq: `${p}:tasks:seq`,
    task: (uuid: string) => `${p}:tasks:${uuid}`,
    executions: (type: TaskType, uuid: string) => `${execPrefix}${type}:${uuid}`,
    execution: (type: TaskType, uuid: string, ts: number | string) => `${execPrefix}${type}:${uuid}:${ts}`,
    /** The execution key of a queue ref. */
    ofRef: (ref: string) => execPrefix + ref,
    execPrefix,
    queue: `${p}:scheduler:queue`,
    due: `${p}:scheduler:due`,
    inflight: `${p}:scheduler:inflight`,
    dead: `${p}:scheduler:dead`,
    lock: (ref: string) => `${p}:lock:${ref}`,
    stop: (ref: string) => `${p}:stop:${ref}`,
    maintenance: `${p}:maintenance`,
  }
}
export type RedisKeys = ReturnType<typeof redisKeys>

// Status is the first key of the stored JSON so scripts can change it without decoding
// (cjson would round 16-digit µs timestamps).
const SET_STATUS = `local function setStatus(key, status)
  local json = redis.call('GET', key)
  if json then redis.call('SET', key, (string.gsub(json, '^{"status":"%u+"', '{"status":"' .. status .. '"', 1))) end
  return json
end
`

/** Redis' clock in ms (scripts are replicated by their effects on Redis 7, so TIME may precede writes). */
const NOW_MS = `local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

export const SCRIPTS = {
  // KEYS: exec, task executions, queue, due   ARGV: json, ts, mode (queue|due|none), ref, due_at
  insert: {
    keys: 4,
    lua: `if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[2])
  if ARGV[3] == 'queue' then redis.call('RPUSH', KEYS[3], ARGV[4]) elseif ARGV[3] == 'due' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4]) end
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0`,
  },
  // KEYS: task, exec, task executions, queue   ARGV: method, json, ts, ref, deadline (Redis ms, 0 = none)
  // A replayed command (ioredis resends what was queued while Redis was away) that arrives after
  // the intake's deadline was answered 503: it stores nothing ('late'), so the sender's retry is
  // the only copy.
  intake: {
    keys: 4,
    lua: `${NOW_MS}
if tonumber(ARGV[5]) > 0 and nowMs() > tonumber(ARGV[5]) then return {'late'} end
local json = redis.call('GET', KEYS[1])
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
  },
  // KEYS: due, queue   ARGV: now, limit, key prefix for executions
  enqueueDue: {
    keys: 2,
    lua: `${SET_STATUS}
local refs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, ref in ipairs(refs) do
  redis.call('ZREM', KEYS[1], ref)
  redis.call('RPUSH', KEYS[2], ref)
  setStatus(ARGV[3] .. ref, 'ENQUEUED')
end
return refs`,
  },
  // KEYS: queue, inflight   ARGV: lease deadline
  pop: {
    keys: 2,
    lua: `local ref = redis.call('LPOP', KEYS[1])
if not ref then return false end
redis.call('ZADD', KEYS[2], ARGV[1], ref)
return ref`,
  },
  // KEYS: lock, exec, inflight, due, queue, dead   ARGV: token, json, mode (doing|done|dead|retry|requeue|stopped), ref, score
  write: {
    keys: 6,
    lua: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[4]); redis.call('ZREM', KEYS[4], ARGV[4]); redis.call('DEL', KEYS[1]); return -1
end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] == 'doing' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4]); return 1 end
redis.call('ZREM', KEYS[3], ARGV[4])
if ARGV[3] == 'retry' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
elseif ARGV[3] == 'requeue' then redis.call('LPUSH', KEYS[5], ARGV[4])
elseif ARGV[3] == 'dead' then redis.call('ZADD', KEYS[6], ARGV[5], ARGV[4])
elseif ARGV[3] == 'stopped' then redis.call('ZREM', KEYS[4], ARGV[4]); redis.call('LREM', KEYS[5], 0, ARGV[4]) end
redis.call('DEL', KEYS[1])
return 1`,
  },
  // KEYS: lock, inflight   ARGV: token, lease ms, deadline, ref
  heartbeat: {
    keys: 2,
    lua: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[4])
return 1`,
  },
  // KEYS: lock   ARGV: token
  release: {
    keys: 1,
    lua: `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
  },
} as const

export type ScriptName = keyof typeof SCRIPTS
/** What a script call takes: its keys, then its arguments. */
export type ScriptArgs = Array<string | number>
