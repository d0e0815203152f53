// Baseline: the same POSTs as a drain (batches of 10, concurrent within a batch, keep-alive) with no
// queue at all: the ceiling any drain to this sink can reach.
import {cpuSince, payload, serve} from './child.js'
import {poster} from './post.js'

const count = Number(process.env.BENCH_COUNT)
const bytes = Number(process.env.BENCH_BYTES)
const bodies = Array.from({length: count}, (_, i) => payload(i, bytes))
const client = poster(process.env.BENCH_SINK)
process.send({ready: true})
serve({
  async go() {
    const cpu = process.cpuUsage()
    const t0 = performance.now()
    for (let i = 0; i < count; i += 10) await client.postAll(bodies.slice(i, i + 10))
    return {ms: performance.now() - t0, cpuUs: cpuSince(cpu)}
  },
  stop: () => client.close(),
})
