// npm run bench -- spigot-drain [messages=5000] [concurrency=10] [dir=<tmp, a disk>] [rounds=2] [key=value …]
//
// `spigot drain` (issue 15): push webhooks of about 7 KB in the embedded queue (FIFO, 20
// repositories = 20 groups, on disk by default: synchronous=FULL) replayed to a loopback sink in
// its own process, against, in the same run and to the same sink:
//   - raw keep-alive POSTs: autocannon, `concurrency` connections, the same body (the ratio);
//   - the minimal durable drain (bench/baselines/minimal-durable-drain.js: better-sqlite3 with the
//     queue's pragmas, select 10, POST each, delete the 10 in one transaction);
//   - cistern's queue alone (receive 10, POST, deleteBatch: bench/baselines/cistern-drain.js).
// Every drain runs in its own process (bench/baselines/), rounds alternate, medians are printed.
// Options: raw=1 (messages carry raw_body, as for bodies that do not re-serialise), groups=N,
// bytes=N, shm=1 (files in /dev/shm: the CPU cost without fsyncs).
// BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the drain processes.
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {drainOnce, startChild} from './baselines/child.js'
import {fmt, load, ratio, table} from './lib.js'

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

/** One drain child run to the end; every message must have reached the sink. */
async function drainAll(name, env, sink) {
  const result = await drainOnce(name, env, sink)
  if (result.posted < Number(env.BENCH_COUNT)) throw new Error(`${name}: the sink got ${result.posted} of ${env.BENCH_COUNT}`)
  return result
}

export default async function run(argv = []) {
  const args = argv.filter((a) => !a.includes('='))
  const options = Object.fromEntries(argv.filter((a) => a.includes('=')).map((a) => a.split(/=(.*)/s).slice(0, 2)))
  const count = Number(args[0] ?? 5000)
  const concurrency = Number(args[1] ?? 10)
  const parent = args[2] ?? (options.shm === '1' && existsSync('/dev/shm') ? '/dev/shm' : tmpdir())
  const rounds = Number(args[3] ?? 2)
  const bytes = Number(options.bytes ?? 7000)
  const groups = Number(options.groups ?? 20)
  console.log(`${count} push webhooks of ~${bytes} bytes, ${groups} repositories, concurrency ${concurrency}, files in ${parent}; ${rounds} alternating rounds (medians)`)
  const dir = mkdtempSync(join(parent, 'cistern-bench-spigot-drain-'))
  const sink = startChild('sink')
  const {url} = await sink.next()
  const base = {BENCH_COUNT: String(count), BENCH_BYTES: String(bytes), BENCH_SINK: url}
  const sides = {
    minimal: {name: 'minimal-durable-drain', label: 'minimal durable drain (better-sqlite3: select 10, POST, delete 10)'},
    queue: {name: 'cistern-drain', label: "cistern's queue alone (receive 10, POST, deleteBatch), FIFO", env: {BENCH_GROUPS: String(groups)}},
    spigot: {
      name: 'spigot-drain',
      label: `spigot drain(), concurrency ${concurrency}${options.raw === '1' ? ', raw_body' : ''}`,
      env: {BENCH_GROUPS: String(groups), BENCH_CONCURRENCY: String(concurrency), BENCH_RAW: options.raw ?? '0'},
    },
  }
  const runs = Object.fromEntries(Object.keys(sides).map((key) => [key, []]))
  const raw = []
  const body = JSON.stringify({ref: 'refs/heads/main', pad: 'x'.repeat(Math.max(0, bytes - 40))})
  try {
    await load(url, {connections: concurrency, seconds: 1, body}) // warm-up
    for (let round = 0; round < rounds; round++) {
      raw.push((await load(url, {connections: concurrency, seconds: 3, body})).rps)
      for (const [key, side] of Object.entries(sides)) {
        runs[key].push(await drainAll(side.name, {...base, BENCH_DB: join(dir, `${key}-${round}.db`), ...side.env}, sink))
      }
    }
  } finally {
    sink.send('stop')
    await sink.stop()
    rmSync(dir, {recursive: true, force: true})
  }
  const rawRate = median(raw)
  const rate = (key) => median(runs[key].map((r) => (count / r.ms) * 1000))
  const cpu = (key) => median(runs[key].map((r) => r.cpuUs / count))
  table([
    {what: `raw keep-alive POSTs (autocannon, ${concurrency} connections)`, 'msgs/s': fmt(rawRate, 0), 'CPU µs/msg (drain process)': '', 'vs raw POSTs': '1', 'vs minimal durable drain': ''},
    ...Object.entries(sides).map(([key, side]) => ({
      what: side.label,
      'msgs/s': fmt(rate(key), 0),
      'CPU µs/msg (drain process)': fmt(cpu(key), 1),
      'vs raw POSTs': fmt(ratio(rate(key), rawRate), 2),
      'vs minimal durable drain': key === 'minimal' ? '1' : fmt(ratio(rate(key), rate('minimal')), 2),
    })),
  ])
  console.log(`goals (issue 15): spigot drain ≥ 0.35 × raw POSTs, ≥ 0.7 × the minimal durable drain`)
  return {
    rawPerSec: rawRate,
    ...Object.fromEntries(Object.keys(sides).map((key) => [key, {perSec: rate(key), cpuUsPerMessage: cpu(key)}])),
    spigotVsRaw: ratio(rate('spigot'), rawRate),
    spigotVsMinimal: ratio(rate('spigot'), rate('minimal')),
  }
}
