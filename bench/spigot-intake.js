// npm run bench -- spigot-intake [seconds=5] [connections=64] [runs=1] [dir=<tmp>] [log=0] [thread=0]
// `spigot serve`'s intake with durable enqueue (issue 15): the spigot is OFF, so every webhook is
// verified (X-Hub-Signature-256), parsed, routed and queued in the embedded SQLite queue (WAL,
// synchronous=FULL: the 202 waits for the commit). Against two baselines in the same run, under the
// same load: a bare node:http server (reads the body, answers 200) and the queue engineer's minimal
// durable intake (node:http + one insert transaction per event-loop turn, bench/baselines/). Each
// server runs in its own process; the load (autocannon here, keep-alive connections, a real signed
// GitHub push payload, a fresh X-GitHub-Delivery per request so nothing is deduplicated away) runs
// in this one. `runs=N` interleaves the three N times and reports the medians (a shared machine is
// noisy). `log=1` gives serve its real JSON logger at info, writing to /dev/null; `thread=1` commits
// in the queue layer's writer thread.
// BENCH_SPIGOT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the spigot process.
import autocannon from 'autocannon'
import {spawn} from 'node:child_process'
import {createHmac, randomUUID} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {createRequire} from 'node:module'
import {loadavg, tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {startChild} from './baselines/child.js'
import {fmt, ratio, table} from './lib.js'

const SECRET = 'bench-webhook-secret'
const dist = (path) => new URL(`../dist/${path}`, import.meta.url).href

// The spigot side: createSpigotServer as `spigot serve` builds it, the spigot OFF.
const SPIGOT = `
import {openQueue} from '${dist('core/queue/index.js')}'
import {createLogger, silentLogger} from '${dist('core/log.js')}'
import {DEFAULT_ROUTES} from '${dist('spigot/config.js')}'
import {createSpigotServer} from '${dist('spigot/serve.js')}'
import {openStateStore} from '${dist('spigot/state.js')}'
import {createWriteStream} from 'node:fs'
const db = process.env.BENCH_DB
const queue = await openQueue('sqlite:' + db + '#spigot', {fifo: true})
const state = await openStateStore({backend: 'local', dbPath: db})
await state.set('OFF')
const config = {queue: queue.url, targets: [{name: 'default', url: 'http://127.0.0.1:9/'}], routes: {...DEFAULT_ROUTES}, unrouted: 'accept', forwardTimeoutMs: 3000, webhookSecret: process.env.BENCH_SECRET}
const log = process.env.BENCH_LOG === '1' ? createLogger({level: 'info', format: 'json', stream: createWriteStream('/dev/null')}) : silentLogger
const server = await createSpigotServer({config, queue, state, log, writerThread: process.env.BENCH_THREAD === '1'})
const url = await server.listen(0, '127.0.0.1')
process.send({url})
let mark = process.cpuUsage()
process.on('message', async (m) => {
  if (m === 'mark') { mark = process.cpuUsage(); process.send({marked: true}); return }
  if (m !== 'stop') return
  const used = process.cpuUsage(mark)
  await server.close()
  const stats = await queue.stats()
  await queue.close(); await state.close()
  process.send({cpuUs: used.user + used.system, stored: stats.visible + stats.inFlight + stats.delayed, answered: server.counts.queued}, () => process.exit(0))
})
`

function startSpigot(env) {
  const nodeArgs = (process.env.BENCH_SPIGOT_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const child = spawn(process.execPath, [...nodeArgs, '--input-type=module', '-e', SPIGOT], {stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: {...process.env, ...env}})
  const messages = []
  let wake
  child.on('message', (message) => {
    messages.push(message)
    wake?.()
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return {
    next: () =>
      new Promise((resolve, reject) => {
        const check = () => (messages.length ? resolve(messages.shift()) : undefined)
        wake = check
        exited.then((code) => reject(new Error(`spigot child exited (${code})`)))
        check()
      }),
    send: (message) => child.send(message),
    stop: () => exited,
  }
}

/** The real GitHub push example (@octokit/webhooks-examples), compact JSON as GitHub sends it. */
function pushPayload() {
  const require = createRequire(import.meta.url)
  const groups = require('@octokit/webhooks-examples')
  return Buffer.from(JSON.stringify(groups.find((g) => g.name === 'push').examples[0]))
}

async function hammer(url, {seconds, connections, body, headers}) {
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [{method: 'POST', body, headers, setupRequest: (req) => ({...req, headers: {...req.headers, 'x-github-delivery': randomUUID()}})}],
  })
  return {rps: result.requests.average, total: result.requests.total, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors, timeouts: result.timeouts, non2xx: result.non2xx}
}

/** One server under load: start it, warm it up for 1 s, measure, stop it; CPU per request from the server's own count. */
async function measure(server, load) {
  const {url} = await server.next()
  await hammer(url, {...load, seconds: 1})
  server.send('mark')
  await server.next()
  const result = await hammer(url, load)
  server.send('stop')
  const end = await server.next()
  await server.stop()
  if (result.non2xx || result.errors) throw new Error(`${result.non2xx} non-2xx answers, ${result.errors} errors`)
  return {...result, ...end}
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function options(args) {
  const named = Object.fromEntries(args.filter((a) => a.includes('=')).map((a) => a.split(/=(.*)/s).slice(0, 2)))
  return {
    seconds: Number(named.seconds ?? 5),
    connections: Number(named.connections ?? 64),
    runs: Number(named.runs ?? 1),
    dir: named.dir ?? tmpdir(),
    log: named.log === '1',
    thread: named.thread === '1',
  }
}

export default async function run(args = []) {
  const {seconds, connections, runs, dir: parent, log, thread} = options(args)
  const dir = mkdtempSync(join(parent, 'cistern-bench-spigot-intake-'))
  const body = pushPayload()
  const headers = {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/bench',
    'x-github-event': 'push',
    'x-github-hook-id': '1',
    'x-hub-signature-256': 'sha256=' + createHmac('sha256', SECRET).update(body).digest('hex'),
  }
  const load = {seconds, connections, body, headers}
  const before = loadavg()
  console.log(`${connections} keep-alive connections, ${seconds} s per server after a 1 s warm-up, ${runs} interleaved run(s), ${body.length}-byte signed push payload, files in ${parent}`)
  const results = {bare: [], minimal: [], spigot: []}
  try {
    for (let i = 0; i < runs; i++) {
      results.bare.push(await measure(startChild('bare-server'), load))
      results.minimal.push(await measure(startChild('minimal-durable-intake', {BENCH_DB: join(dir, `minimal-${i}.db`)}), load))
      const spigot = await measure(startSpigot({BENCH_DB: join(dir, `spigot-${i}.db`), BENCH_SECRET: SECRET, BENCH_LOG: log ? '1' : '0', BENCH_THREAD: thread ? '1' : '0'}), load)
      // Every 202 is a message in the queue (the warm-up's included): nothing acknowledged was lost.
      if (spigot.stored !== spigot.answered) throw new Error(`spigot: answered ${spigot.answered} webhooks 202 but the queue holds ${spigot.stored}`)
      results.spigot.push(spigot)
      const r = (key) => results[key][i]
      console.log(`run ${i + 1}: bare ${fmt(r('bare').rps, 0)}/s, minimal durable ${fmt(r('minimal').rps, 0)}/s, spigot ${fmt(r('spigot').rps, 0)}/s (p99 ${r('spigot').p99} ms)`)
    }
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
  const summary = (key) => ({
    rps: median(results[key].map((r) => r.rps)),
    p50: median(results[key].map((r) => r.p50)),
    p99: median(results[key].map((r) => r.p99)),
    cpuUs: median(results[key].map((r) => r.cpuUs / r.total)),
  })
  const bare = summary('bare')
  const minimal = summary('minimal')
  const spigot = summary('spigot')
  const labels = {bare: 'bare node:http 200', minimal: 'minimal durable intake (node:http + one insert transaction per turn)', spigot: `spigot serve, OFF (verify, parse, route, durable enqueue)${log ? ', info log' : ''}${thread ? ', writer thread' : ''}`}
  table(
    Object.entries({bare, minimal, spigot}).map(([key, s]) => ({
      server: labels[key],
      'req/s': fmt(s.rps, 0),
      p50: `${s.p50} ms`,
      p99: `${s.p99} ms`,
      'CPU µs/req': fmt(s.cpuUs, 0),
      'vs bare': fmt(ratio(s.rps, bare.rps), 2),
      'vs minimal durable intake': key === 'bare' ? '' : fmt(ratio(s.rps, minimal.rps), 2),
    })),
  )
  const vsBare = ratio(spigot.rps, bare.rps)
  const vsMinimal = ratio(spigot.rps, minimal.rps)
  console.log(
    `\nspigot intake: ${fmt(vsBare, 2)} of bare (goal ≥ 0.3), ${fmt(vsMinimal, 2)} of the minimal durable intake (goal ≥ 0.7), p99 ${spigot.p99} ms (goal < 50 ms); every 202 was a queued message (checked)`,
  )
  console.log(`load average before ${before.map((x) => x.toFixed(1)).join(' ')}, after ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)
  return {bare, minimal, spigot, vsBare, vsMinimal, connections, seconds, runs, payloadBytes: body.length}
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run(process.argv.slice(2))
