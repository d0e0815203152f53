// Webhook intake of `hooks serve` (POST /webhook/<uuid> → 202 once the execution is stored) on the
// SQLite store and on a real Redis, against a bare node HTTP server, all in the same run.
// Processing is paused (maintenance on) so the figure is intake alone.
//   npm run bench -- hooks [seconds=5] [connections=64]
import {spawn, execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {fmt, load, ratio, sink, table} from './lib.js'

const BODY = JSON.stringify({ref: 'refs/heads/main', repository: {full_name: 'octo/repo'}, commits: [{id: 'a'.repeat(40), message: 'bench'}]})

export default async function run(args = []) {
  const seconds = Number(args[0] ?? 5)
  const connections = Number(args[1] ?? 64)
  const {startHooksService} = await import('../dist/hooks/service.js')
  const dir = mkdtempSync(join(tmpdir(), 'cistern-bench-hooks-'))
  const rows = []
  const results = {}
  try {
    // The machine is shared and its load moves: each target is measured right after its own
    // baseline run, and the ratio is taken pair by pair.
    const bare = await sink()
    await load(bare.url, {connections, seconds: 1, body: BODY}) // warm-up
    const baselineRun = async () => (await load(bare.url, {connections, seconds, body: BODY})).rps
    const first = await baselineRun()
    rows.push({target: 'bare node http (baseline)', 'req/s': fmt(first), p50: '', p99: '', ratio: '1.00'})
    results.baseline = [first]
    // Default durability first (SQLite synchronous FULL: fsync before the 202), then the lighter
    // settings operators choose on slow disks; Redis with AOF everysec (its usual setting) and always.
    const stores = [
      ['sqlite', `sqlite:${join(dir, 'hooks.db')}`],
      ['sqlite ?synchronous=normal', `sqlite:${join(dir, 'hooks-normal.db')}?synchronous=normal`],
    ]
    const redis = await startRedis(dir)
    if (redis) stores.push(['redis (appendfsync everysec)', redis.url], ['redis (appendfsync always)', redis.url])
    else console.log('redis-server not found: Redis rows skipped (apt-get install redis-server)')
    try {
      for (const [name, store] of stores) {
        if (name.includes('appendfsync')) await redis.config(name.includes('always') ? 'always' : 'everysec')
        const service = await startHooksService({store, port: 0, token: 'bench-token-123456', storePrefix: `bench${rows.length}-${Date.now()}`})
        try {
          await service.setMaintenance(true)
          const created = await fetch(`${service.url}/task`, {
            method: 'POST',
            headers: {authorization: 'Bearer bench-token-123456', 'content-type': 'application/json'},
            body: JSON.stringify({type: 'webhook', config: {action: {type: 'http', url: 'http://127.0.0.1:9/'}}}),
          }).then((r) => r.json())
          const url = `${service.url}/webhook/${created.uuid}`
          await load(url, {connections, seconds: 1, body: BODY})
          const r = await load(url, {connections, seconds, body: BODY})
          const baseline = await baselineRun()
          results.baseline.push(baseline)
          const stored = await service.store.queueLength()
          const rate = ratio(r.rps, baseline)
          rows.push({target: `hooks intake, ${name} (baseline ${fmt(baseline, 0)})`, 'req/s': fmt(r.rps), p50: r.p50, p99: r.p99, ratio: rate.toFixed(2)})
          results[name] = {rps: r.rps, baseline, ratio: rate, non2xx: r.non2xx, errors: r.errors, stored}
          if (r.non2xx || r.errors) console.log(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors`)
        } finally {
          await service.stop(1000)
        }
      }
    } finally {
      await redis?.stop()
      await bare.close()
    }
    console.log(`\nPOST /webhook/<uuid>, ${BODY.length}-byte body, ${connections} connections, ${seconds} s each (target ratio ≥ 0.4)\n`)
    table(rows)
    return results
  } finally {
    rmSync(dir, {recursive: true, force: true})
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
    stop: () => new Promise((resolve) => {
      admin.disconnect()
      proc.once('exit', resolve)
      proc.kill('SIGTERM')
    }),
  }
}
