// Baseline: a minimal durable drain, the physical limit of "SQLite file → HTTP" on this machine:
// better-sqlite3 with the queue's pragmas (WAL, synchronous FULL), select a batch of 10, POST each
// (keep-alive, concurrent), delete the batch in one transaction. No leases, no receipts, no groups:
// one process, one consumer, at least once only because the delete follows the POSTs.
import Database from 'better-sqlite3'

import {PRAGMAS, cpuSince, payload, serve} from './child.js'
import {poster} from './post.js'

const count = Number(process.env.BENCH_COUNT)
const bytes = Number(process.env.BENCH_BYTES)
const db = new Database(process.env.BENCH_DB)
for (const pragma of PRAGMAS) db.pragma(pragma)
db.exec('CREATE TABLE messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL, sent_at INTEGER NOT NULL)')
const insert = db.prepare('INSERT INTO messages (id, body, sent_at) VALUES (?, ?, ?)')
db.transaction(() => {
  for (let i = 0; i < count; i++) insert.run(`id-${i}`, payload(i, bytes), Date.now())
})()
const take = db.prepare('SELECT seq, body FROM messages ORDER BY seq LIMIT 10')
const remove = db.prepare('DELETE FROM messages WHERE seq = ?')
const removeBatch = db.transaction((seqs) => {
  for (const seq of seqs) remove.run(seq)
})
const client = poster(process.env.BENCH_SINK)
process.send({ready: true})
serve({
  async go() {
    const cpu = process.cpuUsage()
    const t0 = performance.now()
    let drained = 0
    for (;;) {
      const rows = take.all()
      if (rows.length === 0) break
      await client.postAll(rows.map((row) => row.body))
      removeBatch.immediate(rows.map((row) => row.seq))
      drained += rows.length
    }
    return {ms: performance.now() - t0, cpuUs: cpuSince(cpu), drained}
  },
  stop: () => {
    db.close()
    return client.close()
  },
})
