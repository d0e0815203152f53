// cistern's embedded queue in the drain's place: receive 10 (leased), POST each (the same client),
// deleteBatch. What a consumer of the queue pays on top of the minimal durable drain.
import {statSync} from 'node:fs'

import {openQueue} from '../../dist/core/queue/index.js'
import {cpuSince, payload, serve} from './child.js'
import {poster} from './post.js'

const count = Number(process.env.BENCH_COUNT)
const bytes = Number(process.env.BENCH_BYTES)
const groups = Number(process.env.BENCH_GROUPS ?? 0)
const queue = await openQueue(`sqlite:${process.env.BENCH_DB}#bench${process.env.BENCH_QUERY ?? ''}`, {maxReceiveCount: 0})
for (let i = 0; i < count; i += 100) {
  await queue.sendBatch(Array.from({length: Math.min(100, count - i)}, (_, j) => ({body: payload(i + j, bytes), ...(groups ? {groupId: `repo-${(i + j) % groups}`} : {})})))
}
const client = poster(process.env.BENCH_SINK)
/** The queue's file and its WAL, in bytes. */
const onDisk = () => [process.env.BENCH_DB, `${process.env.BENCH_DB}-wal`].reduce((sum, f) => sum + (statSync(f, {throwIfNoEntry: false})?.size ?? 0), 0)
process.send({ready: true, bytesFull: onDisk()})
serve({
  async go() {
    const cpu = process.cpuUsage()
    const t0 = performance.now()
    let drained = 0
    while (drained < count) {
      const messages = await queue.receive({maxMessages: 10, visibilityTimeout: 300})
      if (messages.length === 0) throw new Error(`queue ran dry after ${drained} of ${count}`)
      await client.postAll(messages.map((m) => m.body))
      await queue.deleteBatch(messages.map((m) => m.receiptHandle))
      drained += messages.length
    }
    const ms = performance.now() - t0
    const cpuUs = cpuSince(cpu)
    const left = await queue.stats()
    await queue.receive() // finds it empty: gives the disk back
    return {ms, cpuUs, drained, left: left.visible + left.inFlight + left.delayed, bytesDrained: onDisk()}
  },
  stop: async () => {
    await queue.close()
    await client.close()
  },
})
