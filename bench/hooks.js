// Webhook intake of `cistern hooks serve` (POST /webhook/<uuid> → 202 once the execution is stored)
// on the SQLite store and on a real Redis, against a bare node HTTP server (the goal: ≥ 0.4)
// and, for SQLite, against the minimal durable intake (node:http + one group-committed insert per
// batch, bench/baselines/minimal-durable-intake.js). Every server is a process of its own — the
// real CLI for hooks — and the load (autocannon) runs in this one, so they never share an event
// loop. Processing is paused (maintenance on) so the figure is intake alone. Each target is measured
// right after its own bare-server run, and the ratio is taken pair by pair (the machine is shared).
//   npm run bench -- hooks [seconds=5] [connections=64] [rows=all|sqlite|redis]
//   BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the servers.
import {execFileSync, spawn} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {createServer} from 'node:net'
import {loadavg, tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {startChild} from './baselines/child.js'
import {fmt, load, ratio, table} from './lib.js'

const CLI = fileURLToPath(new URL('../bin/run.js', import.meta.url))
const BODY = JSON.stringify({ref: 'refs/heads/main', repository: {full_name: 'octo/repo'}, commits: [{id: 'a'.repeat(40), message: 'bench'}]})
const TOKEN = 'bench-token-0123456789'
const TICKS = 100 // USER_HZ: /proc/<pid>/stat counts CPU in 1/100 s

export default async function run(args = []) {
  const seconds = Number(args[0] ?? 5)
  const connections = Number(args[1] ?? 64)
  const only = args[2] ?? 'all'
  const dir = mkdtempSync(join(tmpdir(), 'cistern-bench-hooks-'))
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const rows = []
  const results = {connections, seconds, bodyBytes: BODY.length, loadavgBefore: loadavg()}
  const bare = startChild('bare-server')
  try {
    const {url: bareUrl} = await bare.next()
    await load(bareUrl, {connections, seconds: 1, body: BODY}) // warm-up
    // The bare server's rate, and its CPU per request: on a loaded machine the CPU cost per request
    // is the steadier figure (req/s moves with whatever else runs).
    const baseline = async () => {
      const before = processCpuSeconds(bare.child.pid)
      const r = await load(bareUrl, {connections, seconds, body: BODY})
      return {rps: r.rps, cpuUs: ((processCpuSeconds(bare.child.pid) - before) * 1e6) / Math.max(1, r.total)}
    }

    const targets = []
    if (only !== 'redis') {
      targets.push({name: 'hooks, SQLite (WAL, synchronous=FULL)', store: `sqlite:${join(dir, 'hooks.db')}`})
      targets.push({name: 'hooks, SQLite ?synchronous=normal', store: `sqlite:${join(dir, 'hooks-normal.db')}?synchronous=normal`})
      targets.push({name: 'minimal durable intake (node:http + group-committed insert, FULL)', baseline: 'minimal-durable-intake'})
    }
    const redis = only === 'sqlite' ? undefined : await startRedis(dir)
    if (redis) targets.push({name: 'hooks, Redis (AOF everysec)', store: redis.url, fsync: 'everysec'}, {name: 'hooks, Redis (AOF always)', store: redis.url, fsync: 'always'})
    else if (only !== 'sqlite') console.log('redis-server not found: Redis rows skipped (apt-get install redis-server)')
    try {
      for (const target of targets) {
        if (target.fsync) await redis.config(target.fsync)
        const server = target.baseline ? await startBaseline(target.baseline, dir) : await startHooks(target.store, dir, nodeArgs)
        try {
          await load(server.url, {connections, seconds: 1, body: BODY}) // warm-up
          const cpuBefore = server.cpuSeconds()
          const r = await load(server.url, {connections, seconds, body: BODY})
          const cpuUs = ((server.cpuSeconds() - cpuBefore) * 1e6) / Math.max(1, r.total)
          const bareRun = await baseline()
          const rate = ratio(r.rps, bareRun.rps)
          const cpuRatio = ratio(bareRun.cpuUs, cpuUs)
          rows.push({
            target: target.name,
            'req/s': fmt(r.rps),
            'bare req/s': fmt(bareRun.rps),
            ratio: rate.toFixed(2),
            p50: `${r.p50} ms`,
            p99: `${r.p99} ms`,
            'CPU µs/req (bare)': `${fmt(cpuUs, 0)} (${fmt(bareRun.cpuUs, 0)})`,
            'CPU ratio': cpuRatio.toFixed(2),
            non2xx: r.non2xx,
            errors: r.errors,
          })
          results[target.name] = {rps: r.rps, bareRps: bareRun.rps, ratio: rate, p50: r.p50, p99: r.p99, cpuUsPerRequest: cpuUs, bareCpuUsPerRequest: bareRun.cpuUs, cpuRatio, non2xx: r.non2xx, errors: r.errors}
        } finally {
          await server.stop()
        }
      }
    } finally {
      await redis?.stop()
    }
    const durable = results['minimal durable intake (node:http + group-committed insert, FULL)']
    const sqlite = results['hooks, SQLite (WAL, synchronous=FULL)']
    console.log(`\nPOST /webhook/<uuid>, ${BODY.length}-byte body, ${connections} connections, ${seconds} s each; servers in their own processes, load here (target ratio ≥ 0.4)`)
    console.log('CPU ratio: the bare server\'s CPU per request over the target\'s (the Redis server\'s own CPU not counted)\n')
    table(rows)
    if (durable && sqlite) console.log(`\nhooks SQLite vs the minimal durable intake: ${fmt(sqlite.rps / durable.rps, 2)}`)
    results.loadavgAfter = loadavg()
    console.log(`load average before ${results.loadavgBefore.map((x) => x.toFixed(1)).join(' ')}, after ${results.loadavgAfter.map((x) => x.toFixed(1)).join(' ')}`)
    return results
  } finally {
    bare.send('stop')
    await bare.stop()
    rmSync(dir, {recursive: true, force: true})
  }
}

/** `cistern hooks serve` on a free port, a webhook task, maintenance on (intake only). */
async function startHooks(store, dir, nodeArgs) {
  const proc = spawn(process.execPath, [...nodeArgs, CLI, 'hooks', 'serve', '--port', '0', '--host', '127.0.0.1', '--store', store, '--log-level', 'warn'], {
    env: {...process.env, CISTERN_HOOKS_TOKEN: TOKEN, CISTERN_DATA_DIR: dir, CISTERN_LOG_FORMAT: 'json'},
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  const url = await new Promise((resolve, reject) => {
    let out = ''
    proc.stdout.on('data', (chunk) => {
      out += chunk
      const match = /listening on (http:\/\/\S+)/.exec(out)
      if (match) resolve(match[1])
    })
    exited.then((code) => reject(new Error(`hooks serve exited (${code}): ${out}`)))
  })
  const api = (method, path, body) =>
    fetch(url + path, {method, headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'}, body: body && JSON.stringify(body)}).then((r) => r.json())
  await api('POST', '/admin/maintenance?enable=true')
  const task = await api('POST', '/task', {type: 'webhook', config: {action: {type: 'http', url: 'http://127.0.0.1:9/'}}})
  return {
    url: `${url}/webhook/${task.uuid}`,
    cpuSeconds: () => processCpuSeconds(proc.pid),
    stop: async () => {
      proc.kill('SIGTERM')
      await exited
    },
  }
}

/** One of bench/baselines' servers (a minimal durable intake), in its own process. */
async function startBaseline(name, dir) {
  const child = startChild(name, {BENCH_DB: join(dir, `${name}.db`)})
  const {url} = await child.next()
  return {
    url,
    cpuSeconds: () => processCpuSeconds(child.child.pid),
    stop: async () => {
      child.send('stop')
      await child.stop()
    },
  }
}

/** User + system CPU of a process and its threads so far, in seconds (Linux). */
function processCpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS
  } catch {
    return 0
  }
}

async function startRedis(dir) {
  try {
    execFileSync('redis-server', ['--version'], {stdio: 'ignore'})
  } catch {
    return undefined
  }
  const port = await new Promise((resolve) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', ''], {stdio: ['ignore', 'pipe', 'inherit']})
  await new Promise((resolve, reject) => {
    let out = ''
    proc.stdout.on('data', (c) => {
      out += c
      if (/Ready to accept connections/.test(out)) resolve()
    })
    proc.once('exit', (code) => reject(new Error(`redis-server exited ${code}`)))
  })
  proc.stdout.resume()
  const {Redis} = await import('ioredis')
  const admin = new Redis(`redis://127.0.0.1:${port}/0`)
  return {
    url: `redis://127.0.0.1:${port}/0`,
    config: (fsync) => admin.config('SET', 'appendfsync', fsync),
    stop: () =>
      new Promise((resolve) => {
        admin.disconnect()
        proc.once('exit', resolve)
        proc.kill('SIGTERM')
      }),
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run(process.argv.slice(2))
