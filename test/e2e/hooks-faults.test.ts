// The built CLI (dist/): refresh with `npm run build`. `hooks serve` under faults (issue 11): action
// targets that fail 30 % of the time, are down, hang, refuse the credentials or refuse one payload;
// instances killed with SIGKILL while their jobs run; Redis killed and restarted under webhook load
// with two instances on it; SIGTERM while Redis is down. Asserted: nothing accepted is lost, nothing
// goes dead for a target's failure, the one poison is dead loudly (warn line, /mon/status, metrics),
// duplicates stay within what was in flight, exit codes and times as documented.
import {createServer} from 'node:http'
import {appendFileSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {execa, type ResultPromise} from 'execa'
import {afterAll, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'

import {CLI} from '../helpers/cli.js'
import {type StandIn, standIn} from '../helpers/http.js'
import {startRedis} from '../helpers/redis.js'
import {tempDir} from '../helpers/tmp.js'

const TOKEN = 'faults-token-5a4b3c2d1e'
const auth = {authorization: `Bearer ${TOKEN}`}

interface Serve {
  proc: ResultPromise
  url: string
  stderr: () => string
}

/** `cistern hooks serve` on a free port; resolves once it listens. */
async function serve(dir: string, args: string[], cleanup: Array<() => unknown>): Promise<Serve> {
  const proc = execa('node', [CLI, 'hooks', 'serve', '--port', '0', '--host', '127.0.0.1', ...args], {
    env: {CISTERN_DATA_DIR: dir, CISTERN_HOOKS_TOKEN: TOKEN, CISTERN_LOG_FORMAT: 'json', NO_COLOR: '1'},
    reject: false,
    timeout: 120_000,
  })
  cleanup.push(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL')
    return proc.catch(() => undefined)
  })
  let err = ''
  proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`hooks serve did not start: ${out} ${err}`)), 30_000)
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /listening on (http:\/\/\S+)/.exec(out)
      if (match?.[1]) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
  })
  return {proc, url, stderr: () => err}
}

interface ExecutionView {
  timestamp: number
  status: string
  nb_errors: number
  dead?: boolean
  last_error?: string
  request?: {raw_body: string}
}

async function api<T>(base: string, method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(base + path, {method, headers: {...auth, 'content-type': 'application/json'}, body: body === undefined ? undefined : JSON.stringify(body)})
  return (await response.json()) as T
}

const executionsOf = (base: string, uuid: string) => api<ExecutionView[]>(base, 'GET', `/task/${uuid}/execution`)

async function waitFor(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** A stand-in that answers with `status(request number, body)` and records which executions got a 2xx. */
async function target(status: (n: number, body: string) => number | 'hang'): Promise<StandIn & {delivered: string[]}> {
  const delivered: string[] = []
  let n = 0
  const stand = await standIn(async (req, res) => {
    const answer = status(n++, req.body.toString())
    if (answer === 'hang') return
    if (answer < 300) delivered.push(String(req.headers['x-cistern-hooks-execution']))
    res.statusCode = answer
    res.end(answer < 300 ? 'ok' : 'no')
  })
  return Object.assign(stand, {delivered})
}

const duplicates = (ids: string[]) => ids.length - new Set(ids).size

describe('hooks serve under faults (built CLI)', () => {
  const cleanup: Array<() => unknown> = []
  afterAll(async () => {
    for (const close of cleanup.reverse()) await close()
  })

  it('targets 30 % 5xx, down, hanging, 401 and one poison: nothing lost, only the poison dead, loudly', {timeout: 120_000}, async () => {
    const dir = tempDir('cistern-e2e-hooks-faults-')
    const flaky = await target((n) => (n % 10 < 3 ? 503 : 200))
    const hanging = await target((n) => (n < 3 ? 'hang' : 200))
    const refusing = await target(() => 401)
    const poisoned = await target((_n, body) => (body === 'poison' ? 400 : 200))
    // Down at first: nothing listens on its port for the first seconds.
    const downPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address()
        probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
      })
    })
    const downDelivered: string[] = []
    for (const stand of [flaky, hanging, refusing, poisoned]) cleanup.push(() => stand.close())

    const service = await serve(dir, ['--store', `sqlite:${join(dir, 'hooks.db')}`, '--concurrency', '8', '--retry-delay', '200ms'], cleanup)
    const tasks: Partial<Record<string, string>> = {}
    const urls = {flaky: flaky.url, hanging: hanging.url, refusing: refusing.url, poisoned: poisoned.url, down: `http://127.0.0.1:${downPort}`}
    for (const [name, url] of Object.entries(urls)) {
      const task = await api<{uuid: string}>(service.url, 'POST', '/task', {name, type: 'webhook', config: {action: {type: 'http', url, timeout_seconds: 1}}})
      tasks[name] = task.uuid
    }
    const accepted: Partial<Record<string, string[]>> = {}
    for (const [name, uuid] of Object.entries(tasks)) {
      const ids: string[] = []
      accepted[name] = ids
      for (let i = 0; i < 15; i++) {
        const body = name === 'poisoned' && i === 7 ? 'poison' : `${name}-${i}`
        const answer = await fetch(`${service.url}/webhook/${uuid}`, {method: 'POST', body})
        expect(answer.status).toBe(202)
        ids.push(String(((await answer.json()) as {execution: number}).execution))
      }
    }
    // The down target comes up after a while.
    await new Promise((resolve) => setTimeout(resolve, 2000))
    const up = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        downDelivered.push(String(req.headers['x-cistern-hooks-execution']))
        res.end('ok')
      })
    })
    await new Promise<void>((resolve) => up.listen(downPort, '127.0.0.1', resolve))
    cleanup.push(() => new Promise<void>((resolve) => {
      up.closeAllConnections()
      up.close(() => resolve())
    }))

    const done = async (name: string) => (await executionsOf(service.url, tasks[name] ?? '')).every((e) => e.status === 'DONE')
    await waitFor(async () => (await done('flaky')) && (await done('hanging')) && (await done('poisoned')) && (await done('down')), 90_000, 'every execution of the working targets')

    // Nothing lost, nothing delivered twice, no attempt counted for a target's failure.
    const delivered: Partial<Record<string, string[]>> = {flaky: flaky.delivered, hanging: hanging.delivered, down: downDelivered, poisoned: poisoned.delivered}
    for (const name of ['flaky', 'hanging', 'down']) {
      expect(new Set(delivered[name]), name).toEqual(new Set(accepted[name]))
      expect(duplicates(delivered[name] ?? []), name).toBe(0)
      const executions = await executionsOf(service.url, tasks[name] ?? '')
      expect(executions.filter((e) => e.dead === true || e.nb_errors > 0), name).toEqual([])
    }
    // The poison alone is dead, after being tried again while the others got through.
    const poisonedRuns = await executionsOf(service.url, tasks.poisoned ?? '')
    const dead = poisonedRuns.filter((e) => e.dead)
    expect(dead).toHaveLength(1)
    expect(Buffer.from(dead.at(0)?.request?.raw_body ?? '', 'base64').toString()).toBe('poison')
    expect(dead.at(0)?.last_error).toMatch(/answered 400: POST \/ again, while it accepted other messages/)
    expect(new Set(poisoned.delivered)).toEqual(new Set(accepted.poisoned?.filter((id) => id !== String(dead.at(0)?.timestamp))))

    // The credentials refused: waiting, not dead, not counted; the target is reported down.
    const refused = await executionsOf(service.url, tasks.refusing ?? '')
    expect(refused).toHaveLength(15)
    expect(refused.filter((e) => e.status === 'DONE' || e.nb_errors > 0)).toEqual([])
    expect(refused.some((e) => (e.last_error ?? '').includes('answered 401'))).toBe(true)

    // Loud: the warn line, /mon/status and the metrics.
    expect(service.stderr()).toMatch(new RegExp(`"level":"warn","msg":"execution webhook:${tasks.poisoned ?? ''}:${dead.at(0)?.timestamp ?? ''} is dead after 2 attempts`))
    const status = await api<{dead_letters: number; executions: {dead: number}; targets_down: Array<{target: string}>}>(service.url, 'GET', '/mon/status')
    expect(status.dead_letters).toBe(1)
    expect(status.executions.dead).toBe(1)
    expect(status.targets_down.map((t) => t.target)).toEqual([refusing.url])
    const metrics = await (await fetch(`${service.url}/metrics`)).text()
    expect(metrics).toMatch(/^cistern_dead_letters_total\{queue="sqlite:.*hooks\.db#hooks"\} 1$/m)
    expect(metrics).toContain(`cistern_target_up{target="${refusing.url}"} 0`)
    expect(metrics).toContain(`cistern_target_up{target="${flaky.url}"} 1`)
    expect(metrics).toMatch(/^cistern_queue_messages\{queue="[^"]+",state="dead"\} 1$/m)

    service.proc.kill('SIGTERM')
    expect((await service.proc).exitCode).toBe(0)
  })

  it('kill -9 of an instance while its jobs run, twice: the orphans are stopped before each execution runs again, each finishes once', {timeout: 120_000}, async () => {
    const dir = tempDir('cistern-e2e-hooks-orphans-')
    const log = join(dir, 'runs.log')
    writeFileSync(log, '')
    // start, then "alive" every 50 ms for 3 s, then end: a run killed early never writes end.
    const script = join(dir, 'slow.cjs')
    writeFileSync(
      script,
      `const fs = require('node:fs'); const log = ${JSON.stringify(log)}; const id = process.env.CISTERN_HOOKS_EXECUTION
       const line = (what) => fs.appendFileSync(log, what + ' ' + id + ' ' + process.pid + ' ' + Date.now() + '\\n')
       line('start'); const started = Date.now()
       const timer = setInterval(() => { line('alive'); if (Date.now() - started > 3000) { clearInterval(timer); line('end') } }, 50)`,
    )
    const jobs = join(dir, 'jobs.yml')
    writeFileSync(jobs, stringify({slow: {argv: [process.execPath, script]}}))
    const args = ['--store', `sqlite:${join(dir, 'hooks.db')}`, '--jobs', jobs, '--lease', '1', '--concurrency', '2']
    let instance = await serve(dir, args, cleanup)
    const task = await api<{uuid: string}>(instance.url, 'POST', '/task', {type: 'webhook', config: {action: {type: 'job', name: 'slow'}}})
    const accepted: string[] = []
    for (let i = 0; i < 4; i++) {
      const answer = await fetch(`${instance.url}/webhook/${task.uuid}`, {method: 'POST', body: `run ${i}`})
      accepted.push(String(((await answer.json()) as {execution: number}).execution))
    }
    const events = () =>
      readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((text) => {
          const [what = '', id = '', pid = '', at = ''] = text.split(' ')
          return {what, id, pid: Number(pid), at: Number(at)}
        })
    for (let kill = 0; kill < 2; kill++) {
      // Jobs are running (started, not ended) under this instance: kill it without a word.
      const startsBefore = events().filter((e) => e.what === 'start').length
      await waitFor(() => events().filter((e) => e.what === 'start').length >= startsBefore + 2, 30_000, 'two jobs running')
      instance.proc.kill('SIGKILL')
      await instance.proc
      instance = await serve(dir, args, cleanup)
    }
    const finished = () => new Set(events().filter((e) => e.what === 'end').map((e) => e.id))
    await waitFor(() => accepted.every((id) => finished().has(id)), 60_000, 'every execution to finish')
    const all = events()
    for (const id of accepted) {
      const runs = [...new Set(all.filter((e) => e.id === id && e.what === 'start').map((e) => e.pid))]
      // Each run of an execution began after the one before had stopped (its orphan was stopped first).
      for (let i = 1; i < runs.length; i++) {
        const lastAlive = Math.max(...all.filter((e) => e.pid === runs[i - 1]).map((e) => e.at))
        const nextStart = all.find((e) => e.pid === runs[i] && e.what === 'start')?.at ?? 0
        expect(nextStart, `execution ${id} run ${i + 1}`).toBeGreaterThanOrEqual(lastAlive)
      }
      expect(all.filter((e) => e.id === id && e.what === 'end'), `execution ${id}`).toHaveLength(1)
      expect(runs.length).toBeLessThanOrEqual(3)
    }
    expect(instance.stderr()).toMatch(/stopping 1 process\(es\) of execution \d+ of task .* left running by a cistern process that died/)
    // A job's last line is written before its execution is recorded DONE: wait for the records too.
    const states = async () => (await executionsOf(instance.url, task.uuid)).map((e) => [e.status, e.nb_errors, e.dead ?? false])
    await waitFor(async () => (await states()).every(([status]) => status === 'DONE'), 30_000, 'every execution recorded DONE').catch(() => undefined)
    expect(await states()).toEqual(accepted.map(() => ['DONE', 0, false]))
    instance.proc.kill('SIGTERM')
    expect((await instance.proc).exitCode).toBe(0)
    appendFileSync(log, '')
  })

  it('two instances on one Redis, Redis killed and restarted under load, a flaky target: every 202 runs, duplicates within in-flight; SIGTERM with Redis down exits in time', {timeout: 120_000}, async () => {
    const dir = tempDir('cistern-e2e-hooks-redis-')
    const redis = await startRedis()
    cleanup.push(() => redis.stop())
    const flaky = await target((n) => (n % 10 < 3 ? 502 : 200))
    cleanup.push(() => flaky.close())
    // A short lease: a claim cut by the crash (its reply lost) waits out the lease before another takes it.
    const args = ['--store', redis.url, '--concurrency', '4', '--stop-timeout', '3', '--intake-timeout', '2', '--lease', '2']
    const a = await serve(dir, args, cleanup)
    const b = await serve(dir, args, cleanup)
    const task = await api<{uuid: string}>(a.url, 'POST', '/task', {type: 'webhook', config: {action: {type: 'http', url: flaky.url}}})
    const accepted = new Set<string>()
    let refused = 0
    let killed = false
    await Promise.all(
      Array.from({length: 4}, async (_, lane) => {
        for (let i = 0; i < 30; i++) {
          if (lane === 0 && i === 10 && !killed) {
            killed = true
            await redis.kill()
            await new Promise((resolve) => setTimeout(resolve, 500))
            await redis.restart()
          }
          const via = (lane + i) % 2 ? a : b
          try {
            const answer = await fetch(`${via.url}/webhook/${task.uuid}`, {method: 'POST', body: `${lane}-${i}`, signal: AbortSignal.timeout(10_000)})
            if (answer.status === 202) accepted.add(String(((await answer.json()) as {execution: number}).execution))
            else refused++
          } catch {
            refused++
          }
        }
      }),
    )
    expect(killed).toBe(true)
    expect(accepted.size + refused).toBe(120)
    expect(accepted.size).toBeGreaterThan(80)
    await waitFor(() => [...accepted].every((id) => flaky.delivered.includes(id)), 60_000, 'every accepted execution to be delivered')
    // A duplicate can only be an execution in flight when Redis died (its result not yet recorded).
    expect(duplicates(flaky.delivered)).toBeLessThanOrEqual(8)
    const executions = await executionsOf(a.url, task.uuid)
    expect(executions.filter((e) => e.dead)).toEqual([])

    // SIGTERM while Redis is down: both exit 0 within --stop-timeout (3 s), whatever the store does.
    await redis.kill()
    const started = Date.now()
    a.proc.kill('SIGTERM')
    b.proc.kill('SIGTERM')
    const [endA, endB] = await Promise.all([a.proc, b.proc])
    expect([endA.exitCode, endB.exitCode], `${endA.signal ?? ''} ${endB.signal ?? ''}\n${a.stderr().slice(-1500)}\n${b.stderr().slice(-1500)}`).toEqual([0, 0])
    expect(Date.now() - started).toBeLessThan(3000 + 500)
  })
})
