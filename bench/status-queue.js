// status-queue: statuses/s from the embedded queue into a loopback GitHub stand-in, as a ratio of
// the raw keep-alive POST rate to the same stand-in at the same concurrency, measured in this run.
// The original worker's design rate is one status per 5 s (0.2/s). --latency is how long the
// stand-in takes to answer: 0 measures CPU per status, 50 ms is a GitHub Enterprise on the LAN,
// 150 ms is about github.com.
//   npm run bench -- status-queue [--messages 1000] [--concurrency 16] [--latency 0,50,150]
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {openQueue} from '../dist/core/queue/index.js'
import {resolveSettings} from '../dist/status-queue/config.js'
import {runStatusQueue} from '../dist/status-queue/worker.js'
import {fmt, rawPostRate, ratio, sink, table} from './lib.js'

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

async function once({messages, concurrency, latencyMs}) {
  const dir = mkdtempSync(join(tmpdir(), 'cistern-bench-sq-'))
  const target = await sink({delayMs: latencyMs, status: 201})
  try {
    const queueUrl = `sqlite:${join(dir, 'cistern.db')}#status-queue`
    const queue = await openQueue(queueUrl)
    for (let i = 0; i < messages; i += 10) {
      await queue.sendBatch(Array.from({length: Math.min(10, messages - i)}, (_, k) => ({body: detail(i + k)})))
    }
    await queue.close()

    const settings = resolveSettings({
      flags: {queue: queueUrl, concurrency},
      env: {GITHUB_URL: `${target.url}/api/v3`, GITHUB_ACCESS_TOKEN: 'bench-token-not-secret'},
      file: {github: {'writes-per-minute': 0}},
    })
    target.reset()
    const began = process.hrtime.bigint()
    const summary = await runStatusQueue(settings, {once: true})
    const seconds = Number(process.hrtime.bigint() - began) / 1e9
    if (summary.delivered !== messages || target.count !== messages) {
      throw new Error(`bench run incomplete: delivered ${summary.delivered}, requests ${target.count}, expected ${messages}`)
    }
    const workerRate = messages / seconds

    target.reset()
    const raw = await rawPostRate(target.url, {connections: concurrency, seconds: 3, body: '{"state":"success"}'})
    return {
      latency: `${latencyMs} ms`,
      concurrency,
      messages,
      'statuses/s': fmt(workerRate),
      'raw POST/s': fmt(raw),
      ratio: fmt(ratio(workerRate, raw), 2),
      'vs original (0.2/s)': `${fmt(workerRate / ORIGINAL_RATE, 0)}×`,
    }
  } finally {
    await target.close()
    rmSync(dir, {recursive: true, force: true})
  }
}

export default async function run(args = []) {
  const messages = Number(option(args, 'messages', 1000))
  const concurrency = Number(option(args, 'concurrency', 16))
  const latencies = String(option(args, 'latency', '0,50,150')).split(',').map(Number)
  const rows = []
  for (const latencyMs of latencies) rows.push(await once({messages, concurrency, latencyMs}))
  table(rows)
  console.log(`\ntarget: ratio ≥ 0.5; the original worker's design rate is ${ORIGINAL_RATE} statuses/s (one per 5 s).`)
  return {rows, originalRate: ORIGINAL_RATE}
}
