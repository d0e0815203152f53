// npm run bench -- queue [messages=100000] [bodyBytes=256] [dir] [rounds=3]
// The embedded queue (send, receive, delete in batches of 10) against plain better-sqlite3 doing
// the same rows' inserts and deletes in transactions of 10, same file pragmas, same run.
//
// Where the files live decides what is measured. With synchronous=FULL every commit waits for an
// fsync, so on a disk both sides run at the disk's fsync rate and the ratio mostly counts commits
// (the queue needs 3 per 10 messages: send, receive, delete; the raw baseline 2). The default is
// /dev/shm (when present), where fsync is free and the ratio is the CPU cost of the queue's
// bookkeeping; pass a directory on disk as the third argument to measure the disk instead.
import Database from 'better-sqlite3'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {openQueue} from '../dist/core/queue/index.js'
import {fmt, ratio, table} from './lib.js'

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

export default async function run(args = []) {
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
