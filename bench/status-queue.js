// status-queue: statuses/s from the embedded queue into a loopback GitHub stand-in, as a ratio of
// the raw keep-alive POST rate to the same stand-in at the same concurrency, and of the minimal
// durable drain (bench/baselines/) into the same stand-in, both measured in this run.
// The original worker's design rate is one status per 5 s (0.2/s). --latency is how long the
// stand-in takes to answer: 0 measures CPU per status, 50 ms is a GitHub Enterprise on the LAN,
// 150 ms is about github.com.
// Each measured run follows a warm-up run of --warmup messages in the same process (a worker runs
// for hours: module loading and the JIT are start-up, measured by `npm run bench -- startup`).
//   npm run bench -- status-queue [--messages 3000] [--warmup 300] [--concurrency 16] [--latency 0,50,150]
import {mkdtempSync, rmSync} from 'node:fs'
import {createServer} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {openQueue} from '../dist/core/queue/index.js'
import {resolveSettings} from '../dist/status-queue/config.js'
import {runStatusQueue} from '../dist/status-queue/worker.js'
import {startChild} from './baselines/child.js'
import {fmt, rawPostRate, ratio, table} from './lib.js'

/**
 * A loopback GitHub stand-in in this process: answers every request 201 with a small JSON body,
 * as GitHub does (cistern counts a status posted only on the API's JSON), after `delayMs`.
 */
async function sink({delayMs = 0} = {}) {
  let count = 0
  const answer = '{"id":1,"state":"success","context":"buildkite/web-app"}'
  const headers = {'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(answer))}
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (req.method === 'POST') count++
      const reply = () => res.writeHead(req.method === 'POST' ? 201 : 200, headers).end(answer)
      if (delayMs) setTimeout(reply, delayMs)
      else reply()
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    get count() {
      return count
    },
    reset() {
      count = 0
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(resolve)
      }),
  }
}

const ORIGINAL_RATE = 0.2

function option(args, name, fallback) {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback
}

function detail(i) {
  return JSON.stringify({
    version: 1,
    build: {number: i, commit: i.toString(16).padStart(40, '0'), state: i % 3 ? 'passed' : 'failed', branch: 'main', message: 'bench'},
    pipeline: {slug: 'web-app', repo: 'git@127.0.0.1:acme/web-app.git'},
    organization: {slug: 'acme'},
  })
}

/** One `status-queue work --once` over `messages` queued events: statuses/s and CPU µs per status. */
async function work(dir, name, target, {messages, concurrency}) {
  const queueUrl = `sqlite:${join(dir, 'cistern.db')}#${name}`
  const queue = await openQueue(queueUrl)
  for (let i = 0; i < messages; i += 10) {
    await queue.sendBatch(Array.from({length: Math.min(10, messages - i)}, (_, k) => ({body: detail(i + k)})))
  }
  await queue.close()

  const settings = resolveSettings({
    flags: {queue: queueUrl, concurrency},
    env: {GITHUB_URL: `${target.url}/api/v3`, GITHUB_ACCESS_TOKEN: 'bench-token-not-secret'},
    file: {github: {writesPerMinute: 0}},
  })
  target.reset()
  const cpu = process.cpuUsage()
  const began = process.hrtime.bigint()
  const summary = await runStatusQueue(settings, {once: true})
  const seconds = Number(process.hrtime.bigint() - began) / 1e9
  const {user, system} = process.cpuUsage(cpu)
  if (summary.delivered !== messages || target.count !== messages) {
    throw new Error(`bench run incomplete: delivered ${summary.delivered}, requests ${target.count}, expected ${messages}`)
  }
  return {rate: messages / seconds, cpuUs: (user + system) / messages}
}

/**
 * The design's physical limit on this disk, in the same run: bench/baselines/minimal-durable-drain
 * (better-sqlite3 with the queue's pragmas: select 10, POST them, delete them in one fsync'ed
 * transaction), posting event-sized bodies to the same stand-in. Messages per second.
 */
async function minimalDurableDrain(dir, target, messages) {
  const child = startChild('minimal-durable-drain', {BENCH_COUNT: String(messages), BENCH_BYTES: '400', BENCH_SINK: target.url, BENCH_DB: join(dir, 'minimal.db')})
  await child.next()
  child.send('go')
  const done = await child.next()
  child.send('stop')
  await child.stop()
  if (done.drained !== messages) throw new Error(`minimal durable drain: ${done.drained} of ${messages}`)
  return (messages / done.ms) * 1000
}

async function once({messages, concurrency, latencyMs, warmup}) {
  const dir = mkdtempSync(join(tmpdir(), 'cistern-bench-sq-'))
  const target = await sink({delayMs: latencyMs})
  try {
    // A worker runs for hours: its first statuses (module loading, the JIT) are start-up, not its rate.
    if (warmup > 0) await work(dir, 'warmup', target, {messages: warmup, concurrency})
    const {rate: workerRate, cpuUs} = await work(dir, 'status-queue', target, {messages, concurrency})
    const minimal = await minimalDurableDrain(dir, target, messages)

    target.reset()
    const raw = await rawPostRate(target.url, {connections: concurrency, seconds: 3, body: '{"state":"success"}'})
    return {
      latency: `${latencyMs} ms`,
      concurrency,
      messages,
      'statuses/s': fmt(workerRate),
      'CPU µs/status (stand-in included)': fmt(cpuUs, 0),
      'minimal durable drain msgs/s': fmt(minimal),
      'vs minimal durable drain': fmt(ratio(workerRate, minimal), 2),
      'raw POST/s': fmt(raw),
      'vs raw POSTs': fmt(ratio(workerRate, raw), 2),
      'vs original (0.2/s)': `${fmt(workerRate / ORIGINAL_RATE, 0)}×`,
    }
  } finally {
    await target.close()
    rmSync(dir, {recursive: true, force: true})
  }
}

export default async function run(args = []) {
  const messages = Number(option(args, 'messages', 3000))
  const warmup = Number(option(args, 'warmup', 300))
  const concurrency = Number(option(args, 'concurrency', 16))
  const latencies = String(option(args, 'latency', '0,50,150')).split(',').map(Number)
  const rows = []
  for (const latencyMs of latencies) rows.push(await once({messages, concurrency, latencyMs, warmup}))
  table(rows)
  console.log(`\ntargets: ratio ≥ 0.2 at 0 ms (issue 15), ≥ 0.5 at GitHub-like latency; the original worker's design rate is ${ORIGINAL_RATE} statuses/s (one per 5 s).`)
  return {rows, originalRate: ORIGINAL_RATE}
}
