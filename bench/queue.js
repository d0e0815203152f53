// npm run bench -- queue [messages=100000] [bodyBytes=256] [dir] [rounds=3] [key=value …]
// Three sections, one run (sections=roundtrip,drain,intake picks some):
//
// 1. roundtrip: the embedded queue (send, receive, delete in batches of 10) against plain
//    better-sqlite3 doing the same rows' inserts and deletes in transactions of 10, same pragmas.
// 2. drain (issue 15's baseline): a minimal durable drain (better-sqlite3, select 10, POST each over
//    keep-alive, delete the 10 in one transaction) against cistern's queue doing the same through
//    receive/deleteBatch, and both against the same POSTs with no queue at all; each drain in its
//    own process, the sink in another. drainCount=5000 drainBytes=7000 drainDir=<tmp, a disk>.
// 3. intake (issue 15's baseline): a minimal durable intake (node:http, the bodies of one turn
//    inserted in one transaction) against node:http + cistern's coalescing sender, and a bare
//    node:http server; each server in its own process, autocannon here. intakeSeconds=5
//    connections=64 intakeBytes=7000 intakeDir=<tmp>.
// 4. disk (issue 14, not in the default run): fill diskCount=100000 messages of diskBytes=8000
//    (FIFO, 50 groups) in diskDir=/dev/shm, drain them, and print the file's size full and drained.
//
// Where the files live decides what is measured. With synchronous=FULL every commit waits for an
// fsync, so on a disk both sides run at the disk's fsync rate and the ratio mostly counts commits
// (the queue needs 3 per 10 messages: send, receive, delete; the raw baseline 2). The default is
// /dev/shm (when present), where fsync is free and the ratio is the CPU cost of the queue's
// bookkeeping; pass a directory on disk as the third argument to measure the disk instead.
import Database from 'better-sqlite3'
import {existsSync, mkdtempSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {openQueue} from '../dist/core/queue/index.js'
import {drainOnce, startChild} from './baselines/child.js'
import {fmt, load, ratio, table} from './lib.js'

const PRAGMAS = ['busy_timeout = 10000', 'journal_mode = WAL', 'synchronous = FULL']

function body(i, size) {
  const head = `{"n":${i},"pad":"`
  return head + 'x'.repeat(Math.max(0, size - head.length - 2)) + '"}'
}

/** Plain better-sqlite3: insert 10 rows per transaction, then select+delete 10 per transaction. */
function baseline(path, n, size) {
  const db = new Database(path)
  for (const p of PRAGMAS) db.pragma(p)
  db.exec('CREATE TABLE rows (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL, sent_at INTEGER NOT NULL)')
  const insert = db.prepare('INSERT INTO rows (id, body, sent_at) VALUES (?, ?, ?)')
  const take = db.prepare('SELECT seq, id, body FROM rows ORDER BY seq LIMIT 10')
  const remove = db.prepare('DELETE FROM rows WHERE seq = ?')
  const sendBatch = db.transaction((from) => {
    for (let i = from; i < from + 10 && i < n; i++) insert.run(`id-${i}`, body(i, size), Date.now())
  })
  const takeBatch = db.transaction(() => {
    const rows = take.all()
    for (const row of rows) remove.run(row.seq)
    return rows.length
  })
  const t0 = performance.now()
  for (let i = 0; i < n; i += 10) sendBatch(i)
  const t1 = performance.now()
  let taken = 0
  while (taken < n) taken += takeBatch()
  const t2 = performance.now()
  db.close()
  return {sendMs: t1 - t0, drainMs: t2 - t1}
}

async function cistern(path, n, size) {
  const queue = await openQueue(`sqlite:${path}#bench`, {maxReceiveCount: 0})
  const t0 = performance.now()
  for (let i = 0; i < n; i += 10) {
    const batch = []
    for (let j = i; j < i + 10 && j < n; j++) batch.push({body: body(j, size)})
    await queue.sendBatch(batch)
  }
  const t1 = performance.now()
  let taken = 0
  while (taken < n) {
    const messages = await queue.receive({maxMessages: 10, visibilityTimeout: 600})
    if (messages.length === 0) throw new Error(`queue ran dry after ${taken} of ${n}`)
    await queue.deleteBatch(messages.map((m) => m.receiptHandle))
    taken += messages.length
  }
  const t2 = performance.now()
  const stats = await queue.stats()
  await queue.close()
  if (stats.visible + stats.inFlight + stats.delayed !== 0) throw new Error(`left behind: ${JSON.stringify(stats)}`)
  return {sendMs: t1 - t0, drainMs: t2 - t1}
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

export default async function run(argv = []) {
  const args = argv.filter((a) => !a.includes('='))
  const options = Object.fromEntries(argv.filter((a) => a.includes('=')).map((a) => a.split(/=(.*)/s).slice(0, 2)))
  const sections = (options.sections ?? 'roundtrip,drain,intake').split(',')
  const results = {}
  if (sections.includes('roundtrip')) results.roundtrip = await roundTrip(args)
  if (sections.includes('drain')) results.drain = await drainSection(options)
  if (sections.includes('intake')) results.intake = await intakeSection(options)
  if (sections.includes('disk')) results.disk = await diskSection(options)
  return results
}

async function roundTrip(args) {
  console.log('\n### round trip: the queue against bare better-sqlite3 inserts and deletes')
  const n = Number(args[0] ?? 100_000)
  const size = Number(args[1] ?? 256)
  const parent = args[2] ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir())
  const rounds = Number(args[3] ?? 3)
  const dir = mkdtempSync(join(parent, 'cistern-bench-queue-'))
  console.log(`files in ${parent}; ${n} messages of ${size} bytes; ${rounds} alternating rounds (medians below)`)
  try {
    const rate = (ms) => (n / ms) * 1000
    const results = []
    const rss = {before: process.memoryUsage().rss, peak: 0, after: 0}
    rss.peak = rss.before
    const sampler = setInterval(() => (rss.peak = Math.max(rss.peak, process.memoryUsage().rss)), 50)
    for (let round = 0; round < rounds; round++) {
      // Alternate so that load from elsewhere on the machine hits both sides alike.
      const baseBefore = process.memoryUsage().rss
      const base = baseline(join(dir, `baseline-${round}.db`), n, size)
      base.rssGrowth = process.memoryUsage().rss - baseBefore
      const before = process.memoryUsage().rss
      const ours = await cistern(join(dir, `cistern-${round}.db`), n, size)
      ours.rssGrowth = process.memoryUsage().rss - before
      results.push({base, ours})
      console.log(`round ${round + 1}: round-trip ratio ${fmt(ratio(rate(ours.sendMs + ours.drainMs), rate(base.sendMs + base.drainMs)), 2)}`)
    }
    clearInterval(sampler)
    rss.after = process.memoryUsage().rss
    rss.peak = Math.max(rss.peak, rss.after)

    const pick = (side, key) => median(results.map((r) => rate(key === 'both' ? r[side].sendMs + r[side].drainMs : r[side][key])))
    const ratios = (key) => median(results.map((r) => {
      const ms = (side) => (key === 'both' ? r[side].sendMs + r[side].drainMs : r[side][key])
      return ratio(rate(ms('ours')), rate(ms('base')))
    }))
    const row = (what, key) => ({
      what,
      'cistern msgs/s': fmt(pick('ours', key), 0),
      'raw better-sqlite3 msgs/s': fmt(pick('base', key), 0),
      ratio: fmt(ratios(key), 2),
    })
    table([
      row(`send (${n} msgs, batches of 10)`, 'sendMs'),
      row('receive + delete (batches of 10)', 'drainMs'),
      row('round trip (send + receive + delete)', 'both'),
    ])
    const mb = (bytes) => fmt(bytes / 1024 / 1024, 1)
    const phases = results.map((r) => mb(r.ours.rssGrowth) + ' MB').join(', ')
    console.log(`\nRSS growth over each queue phase (${n} messages each): ${phases}`)
    console.log(`RSS growth over each raw better-sqlite3 phase: ${results.map((r) => mb(r.base.rssGrowth) + ' MB').join(', ')}`)
    console.log(`RSS over the whole run (both sides, ${rounds} rounds): ${mb(rss.before)} MB at start, ${mb(rss.peak)} MB peak, ${mb(rss.after)} MB at the end`)
    console.log('ratio = cistern rate / raw rate (1.00 = as fast as bare inserts/deletes; both WAL + synchronous=FULL)')
    return {
      messages: n,
      bodyBytes: size,
      dir: parent,
      rounds,
      cistern: {sendPerSec: pick('ours', 'sendMs'), drainPerSec: pick('ours', 'drainMs'), roundTripPerSec: pick('ours', 'both')},
      baseline: {sendPerSec: pick('base', 'sendMs'), drainPerSec: pick('base', 'drainMs'), roundTripPerSec: pick('base', 'both')},
      ratio: ratios('both'),
      rssGrowthPerQueuePhaseBytes: results.map((r) => r.ours.rssGrowth),
      rssGrowthBytes: rss.after - rss.before,
      rssPeakGrowthBytes: rss.peak - rss.before,
    }
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}


async function drainSection(options) {
  const count = Number(options.drainCount ?? 5000)
  const bytes = Number(options.drainBytes ?? 7000)
  const parent = options.drainDir ?? tmpdir()
  const rounds = Number(options.drainRounds ?? 2)
  const groups = Number(options.groups ?? 20)
  console.log(`\n### drain: ${count} messages of ${bytes} bytes → a loopback sink (files in ${parent}; ${rounds} alternating rounds, medians)`)
  const dir = mkdtempSync(join(parent, 'cistern-bench-drain-'))
  const sink = startChild('sink')
  const {url} = await sink.next()
  const sides = {
    raw: {name: 'raw-posts', label: 'the same POSTs, no queue'},
    minimal: {name: 'minimal-durable-drain', label: 'minimal durable drain (better-sqlite3: select 10, POST, delete 10)'},
    cistern: {name: 'cistern-drain', label: 'cistern queue: receive 10, POST, deleteBatch'},
    fifo: {name: 'cistern-drain', label: `cistern queue, FIFO (${groups} groups, one in flight each)`, env: {BENCH_GROUPS: String(groups)}},
    normal: {name: 'cistern-drain', label: 'cistern queue, ?synchronous=normal', env: {BENCH_QUERY: '?synchronous=normal'}},
  }
  const runs = Object.fromEntries(Object.keys(sides).map((k) => [k, []]))
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [key, side] of Object.entries(sides)) {
        const db = join(dir, `${key}-${round}.db`)
        const result = await drainOnce(side.name, {BENCH_COUNT: String(count), BENCH_BYTES: String(bytes), BENCH_SINK: url, BENCH_DB: db, ...side.env}, sink)
        if (result.posted !== count) throw new Error(`${key}: the sink got ${result.posted} of ${count}`)
        if (result.left) throw new Error(`${key}: ${result.left} left in the queue`)
        runs[key].push(result)
      }
    }
  } finally {
    sink.send('stop')
    await sink.stop()
    rmSync(dir, {recursive: true, force: true})
  }
  const rate = (key) => median(runs[key].map((r) => (count / r.ms) * 1000))
  const cpu = (key) => median(runs[key].map((r) => r.cpuUs / count))
  const rows = Object.entries(sides).map(([key, side]) => ({
    what: side.label,
    'msgs/s': fmt(rate(key), 0),
    'CPU µs/msg (drain process)': fmt(cpu(key), 1),
    'vs no queue': fmt(ratio(rate(key), rate('raw')), 2),
    'vs minimal durable drain': key === 'raw' ? '' : fmt(ratio(rate(key), rate('minimal')), 2),
  }))
  table(rows)
  const mb = (b) => fmt(b / 1024 / 1024, 1)
  const disk = runs.cistern.map((r) => `${mb(r.bytesFull)} MB full → ${mb(r.bytesDrained)} MB drained`).join('; ')
  console.log(`\ncistern queue file (with its WAL): ${disk}`)
  return Object.fromEntries(Object.keys(sides).map((key) => [key, {perSec: rate(key), cpuUsPerMessage: cpu(key)}]))
}

async function intakeOnce(name, env, {seconds, connections, body}) {
  const server = startChild(name, env)
  const {url} = await server.next()
  await load(url, {connections, seconds: 1, body}) // warm-up
  server.send('mark')
  await server.next()
  const result = await load(url, {connections, seconds, body})
  server.send('stop')
  const end = await server.next()
  await server.stop()
  return {...result, ...end}
}

async function intakeSection(options) {
  const seconds = Number(options.intakeSeconds ?? 5)
  const connections = Number(options.connections ?? 64)
  const bytes = Number(options.intakeBytes ?? 7000)
  const parent = options.intakeDir ?? tmpdir()
  console.log(`\n### intake: ${connections} keep-alive connections, ${seconds} s, bodies of ${bytes} bytes (files in ${parent})`)
  const body = JSON.stringify({ref: 'refs/heads/main', pad: 'x'.repeat(Math.max(0, bytes - 40))})
  const dir = mkdtempSync(join(parent, 'cistern-bench-intake-'))
  const sides = {
    bare: {name: 'bare-server', label: 'bare node:http, no queue'},
    minimal: {name: 'minimal-durable-intake', label: 'minimal durable intake (node:http + one insert transaction per turn)'},
    cistern: {name: 'cistern-intake', label: 'node:http + cistern coalescingSender'},
    thread: {name: 'cistern-intake', label: 'node:http + cistern coalescingSender, writer thread', env: {BENCH_THREAD: '1'}},
    normal: {name: 'cistern-intake', label: 'node:http + cistern coalescingSender, ?synchronous=normal', env: {BENCH_QUERY: '?synchronous=normal'}},
  }
  const results = {}
  try {
    for (const [key, side] of Object.entries(sides)) {
      results[key] = await intakeOnce(side.name, {BENCH_DB: join(dir, `${key}.db`), ...side.env}, {seconds, connections, body})
      const r = results[key]
      if (r.non2xx || r.errors) throw new Error(`${key}: ${r.non2xx} non-2xx, ${r.errors} errors`)
      if (r.stored >= 0 && r.stored < r.total) throw new Error(`${key}: answered ${r.total} but stored ${r.stored}`)
    }
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
  table(
    Object.entries(sides).map(([key, side]) => ({
      what: side.label,
      'req/s': fmt(results[key].rps, 0),
      p50: `${results[key].p50} ms`,
      p99: `${results[key].p99} ms`,
      'CPU µs/req (server)': fmt(results[key].cpuUs / results[key].total, 0),
      'vs bare': fmt(ratio(results[key].rps, results.bare.rps), 2),
      'vs minimal durable intake': key === 'bare' ? '' : fmt(ratio(results[key].rps, results.minimal.rps), 2),
    })),
  )
  const batches = ['cistern', 'thread', 'normal'].map((k) => `${k}: ${results[k].commits} commits, largest ${results[k].largestBatch}${results[k].threaded ? ' (threaded)' : ''}`)
  console.log(`\ngroup commit: ${batches.join('; ')}. Every 202 was a stored message (checked).`)
  return Object.fromEntries(Object.entries(results).map(([key, r]) => [key, {rps: r.rps, p99: r.p99}]))
}

async function diskSection(options) {
  const count = Number(options.diskCount ?? 100_000)
  const bytes = Number(options.diskBytes ?? 8000)
  const parent = options.diskDir ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir())
  console.log(`\n### disk: ${count} messages of ${bytes} bytes in, all drained, in ${parent}`)
  const dir = mkdtempSync(join(parent, 'cistern-bench-disk-'))
  const path = join(dir, 'cistern.db')
  const onDisk = () => [path, `${path}-wal`].reduce((sum, f) => sum + (statSync(f, {throwIfNoEntry: false})?.size ?? 0), 0)
  try {
    const queue = await openQueue(`sqlite:${path}#spigot.fifo`)
    const pad = 'w'.repeat(Math.max(0, bytes - 20))
    for (let i = 0; i < count; i += 100) {
      await queue.sendBatch(Array.from({length: Math.min(100, count - i)}, (_, j) => ({body: `{"n":${i + j},"p":"${pad}"}`, groupId: `repo-${(i + j) % 50}`})))
    }
    const full = onDisk()
    let drained = 0
    for (let empty = 0; drained < count && empty < 100; ) {
      const got = await queue.receive({maxMessages: 10})
      if (got.length === 0) empty++
      await queue.deleteBatch(got.map((m) => m.receiptHandle))
      drained += got.length
    }
    const t0 = performance.now()
    await queue.receive() // the receive that finds it empty gives the space back
    const reclaimMs = performance.now() - t0
    await queue.close()
    const mb = (b) => fmt(b / 1024 / 1024, 2)
    console.log(`file + WAL: ${mb(full)} MB full → ${mb(onDisk())} MB after ${drained} drained; the empty receive took ${fmt(reclaimMs, 0)} ms`)
    return {fullBytes: full, drainedBytes: onDisk(), reclaimMs}
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}
