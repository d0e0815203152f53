// cistern's embedded queue behind the same node:http intake: each body is sent through the queue
// layer's coalescing sender (group commit: one sendBatch per batch), answered 202 once stored.
// BENCH_THREAD=1 commits in the writer thread.
import {createServer} from 'node:http'

import {coalescingSender} from '../../dist/core/queue/batching.js'
import {openQueue} from '../../dist/core/queue/index.js'
import {serveHttp} from './child.js'

const queue = await openQueue(`sqlite:${process.env.BENCH_DB}#intake${process.env.BENCH_QUERY ?? ''}`)
const sender = coalescingSender(queue, {thread: process.env.BENCH_THREAD === '1'})
const server = createServer((req, res) => {
  const chunks = []
  req.on('data', (chunk) => chunks.push(chunk))
  req.on('end', () => {
    sender.send({body: Buffer.concat(chunks).toString('utf8')}).then(
      () => res.writeHead(202, {'content-type': 'application/json'}).end('{"queued":true}'),
      () => res.writeHead(503).end(),
    )
  })
})
serveHttp(server, async (cpuUs) => {
  await sender.close()
  const stats = await queue.stats()
  await queue.close()
  return {cpuUs, stored: stats.visible, threaded: sender.threaded, commits: sender.stats.commits, largestBatch: sender.stats.largestBatch}
})
