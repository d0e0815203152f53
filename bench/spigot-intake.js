// npm run bench -- spigot-intake [seconds=5] [connections=64] [dir]
// `spigot serve`'s intake with durable enqueue: the spigot is OFF so every webhook is verified
// (X-Hub-Signature-256), parsed, routed and queued in the embedded SQLite queue (WAL,
// synchronous=FULL: the answer waits for the commit) before the 202. Load: autocannon, 64
// keep-alive connections, a real GitHub push payload, a fresh X-GitHub-Delivery per request (so
// nothing is deduplicated away). Baseline, same run, same load: a bare node:http server answering
// 200. Each server runs in its own process, so the load generator does not share its event loop.
// The queue file lives in `dir` (default the OS temp dir); /dev/shm measures CPU, a disk its fsync.
import autocannon from 'autocannon'
import {createHmac, randomUUID} from 'node:crypto'
import {spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {fmt, ratio, table} from './lib.js'

const SECRET = 'bench-webhook-secret'
const dist = (path) => new URL(`../dist/${path}`, import.meta.url).href

const BARE = `
import {createServer} from 'node:http'
const server = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(200, {'content-type': 'application/json'}).end('{"ok":true}')) })
server.keepAliveTimeout = 65_000
server.listen(0, '127.0.0.1', () => process.send({url: 'http://127.0.0.1:' + server.address().port}))
let mark = process.cpuUsage()
process.on('message', (m) => {
  if (m === 'mark') { mark = process.cpuUsage(); process.send({marked: true}) }
  if (m === 'stop') { const cpu = process.cpuUsage(mark); process.send({cpu}); server.closeAllConnections(); server.close(() => process.exit(0)) }
})
`

const SPIGOT = `
import {openQueue} from '${dist('core/queue/index.js')}'
import {silentLogger, createLogger} from '${dist('core/log.js')}'
import {DEFAULT_ROUTES} from '${dist('spigot/config.js')}'
import {createSpigotServer} from '${dist('spigot/serve.js')}'
import {openStateStore} from '${dist('spigot/state.js')}'
const db = process.env.BENCH_DB
const queue = await openQueue('sqlite:' + db + '#spigot', {fifo: true})
const state = await openStateStore({backend: 'local', dbPath: db})
await state.set('OFF')
const config = {queue: queue.url, targets: [{name: 'default', url: 'http://127.0.0.1:9/'}], routes: {...DEFAULT_ROUTES}, unrouted: 'accept', forwardTimeoutMs: 3000, webhookSecret: process.env.BENCH_SECRET}
const server = await createSpigotServer({config, queue, state, log: process.env.BENCH_LOG ? createLogger({level: 'warn', format: 'json'}) : silentLogger, writerThread: process.env.BENCH_WRITER_THREAD !== '0'})
const url = await server.listen(0, '127.0.0.1')
process.send({url})
let mark = process.cpuUsage()
process.on('message', async (m) => {
  if (m === 'mark') { mark = process.cpuUsage(); process.send({marked: true}); return }
  if (m !== 'stop') return
  const cpu = process.cpuUsage(mark)
  await server.close()
  const stats = await queue.stats()
  await queue.close(); await state.close()
  process.send({stats, counts: server.counts, cpu})
  process.exit(0)
})
`

function startChild(source, env = {}, nodeArgs = []) {
  const child = spawn(process.execPath, [...nodeArgs, '--input-type=module', '-e', source], {stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: {...process.env, ...env}})
  const messages = []
  let wake
  child.on('message', (m) => {
    messages.push(m)
    wake?.()
  })
  const next = () =>
    new Promise((resolve, reject) => {
      const check = () => (messages.length ? resolve(messages.shift()) : undefined)
      wake = check
      child.once('exit', (code) => reject(new Error(`child exited ${code}`)))
      check()
    })
  return {child, next}
}

function pushPayload() {
  const require = createRequire(import.meta.url)
  const groups = require('@octokit/webhooks-examples')
  const push = groups.find((g) => g.name === 'push').examples[0]
  return Buffer.from(JSON.stringify(push))
}

async function hammer(url, {seconds, connections, body, headers, uniqueDelivery}) {
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        body,
        headers,
        ...(uniqueDelivery ? {setupRequest: (req) => ({...req, headers: {...req.headers, 'x-github-delivery': randomUUID()}})} : {}),
      },
    ],
  })
  return {
    rps: result.requests.average,
    total: result.requests.total,
    ok: result['2xx'],
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
  }
}

export default async function run(args = []) {
  const seconds = Number(args[0] ?? 5)
  const connections = Number(args[1] ?? 64)
  const dir = mkdtempSync(join(args[2] ?? tmpdir(), 'cistern-bench-intake-'))
  const body = pushPayload()
  const headers = {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/bench',
    'x-github-event': 'push',
    'x-github-hook-id': '1',
    'x-hub-signature-256': 'sha256=' + createHmac('sha256', SECRET).update(body).digest('hex'),
  }
  try {
    const bare = startChild(BARE)
    const {url: bareUrl} = await bare.next()
    await hammer(bareUrl, {seconds: 1, connections, body, headers}) // warm-up
    bare.child.send('mark')
    await bare.next()
    const baseline = await hammer(bareUrl, {seconds, connections, body, headers})
    bare.child.send('stop')
    const {cpu: bareCpu} = await bare.next()

    // BENCH_SPIGOT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the intake process.
    const nodeArgs = (process.env.BENCH_SPIGOT_NODE_ARGS ?? '').split(' ').filter(Boolean)
    const spigot = startChild(SPIGOT, {BENCH_DB: join(dir, 'cistern.db'), BENCH_SECRET: SECRET}, nodeArgs)
    const {url: spigotUrl} = await spigot.next()
    await hammer(spigotUrl, {seconds: 1, connections, body, headers, uniqueDelivery: true}) // warm-up
    spigot.child.send('mark')
    await spigot.next()
    const intake = await hammer(spigotUrl, {seconds, connections, body, headers, uniqueDelivery: true})
    spigot.child.send('stop')
    const {stats, counts, cpu} = await spigot.next()

    const r = ratio(intake.rps, baseline.rps)
    // CPU time per answered request (user + system, main and writer threads): the cost that does
    // not depend on what else the machine is running, unlike req/s on a shared box.
    const cpuPer = (cpu, total) => (total > 0 ? (cpu.user + cpu.system) / total : 0)
    const bareUs = cpuPer(bareCpu, baseline.total)
    const intakeUs = cpuPer(cpu, intake.total)
    table([
      {server: 'bare node:http 200', 'req/s': fmt(baseline.rps), p50: `${baseline.p50} ms`, p99: `${baseline.p99} ms`, 'CPU µs/req': fmt(bareUs), non2xx: baseline.non2xx, errors: baseline.errors},
      {server: 'spigot serve (OFF: verify + durable enqueue)', 'req/s': fmt(intake.rps), p50: `${intake.p50} ms`, p99: `${intake.p99} ms`, 'CPU µs/req': fmt(intakeUs), non2xx: intake.non2xx, errors: intake.errors},
    ])
    const os = await import('node:os')
    console.log(`\nload average before/after: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs; CPU-cost ratio ${fmt(bareUs / intakeUs, 3)}`)
    console.log(`ratio ${fmt(r, 3)} (target ≥ 0.4), p99 ${intake.p99} ms (target < 50 ms); ${connections} connections, ${seconds} s, ${body.length}-byte push payload, queue in ${dir}`)
    // Every 2xx must be a message in the queue (warm-up included): nothing acknowledged was lost.
    const queued = stats.visible + stats.inFlight + stats.delayed
    console.log(`queued ${fmt(queued, 0)} messages; the intake answered queued=${counts.queued} rejected=${counts.rejected}`)
    if (queued !== counts.queued) console.log(`MISMATCH: ${counts.queued} answered 202 but ${queued} in the queue`)
    return {baseline, intake, ratio: r, cpuUsPerRequest: {baseline: bareUs, intake: intakeUs}, loadavg: os.loadavg(), p99: intake.p99, queued, answeredQueued: counts.queued, connections, seconds, payloadBytes: body.length}
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run(process.argv.slice(2))
