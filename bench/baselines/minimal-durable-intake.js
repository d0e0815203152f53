// Baseline: a minimal durable intake, the physical limit of "HTTP → SQLite file" on this machine:
// node:http, and the bodies read in one event-loop turn inserted in one transaction (WAL,
// synchronous FULL: one fsync per batch), each answered 202 once its batch committed.
import Database from 'better-sqlite3'
import {randomUUID} from 'node:crypto'
import {createServer} from 'node:http'

import {PRAGMAS, serveHttp} from './child.js'

const db = new Database(process.env.BENCH_DB)
for (const pragma of PRAGMAS) db.pragma(pragma)
db.exec('CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL, sent_at INTEGER NOT NULL)')
const insert = db.prepare('INSERT INTO messages (id, body, sent_at) VALUES (?, ?, ?)')
const insertAll = db.transaction((batch) => {
  for (const item of batch) insert.run(randomUUID(), item.body, Date.now())
})
let pending = []
let scheduled = false
function commit() {
  scheduled = false
  const batch = pending
  pending = []
  try {
    insertAll.immediate(batch)
    for (const item of batch) item.res.writeHead(202, {'content-type': 'application/json'}).end('{"queued":true}')
  } catch {
    for (const item of batch) item.res.writeHead(503).end()
  }
}
const server = createServer((req, res) => {
  const chunks = []
  req.on('data', (chunk) => chunks.push(chunk))
  req.on('end', () => {
    pending.push({body: Buffer.concat(chunks).toString('utf8'), res})
    if (!scheduled) {
      scheduled = true
      setImmediate(commit)
    }
  })
})
serveHttp(server, (cpuUs) => {
  const stored = db.prepare('SELECT count(*) FROM messages').pluck().get()
  db.close()
  return {cpuUs, stored}
})
