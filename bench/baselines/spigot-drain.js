// `spigot drain` in the drain's place (bench/spigot-drain.js): the embedded queue filled with push
// webhooks as `spigot serve` queues them (the spigot's message: parsed body, kept headers, the
// repository as the FIFO group), then drain() replays them to the sink with its concurrency.
// What the spigot pays on top of the queue: decoding, routing, the Jenkins client, the gates.
import {openQueue} from '../../dist/core/queue/index.js'
import {drain} from '../../dist/spigot/drain.js'
import {cpuSince, serve} from './child.js'
import {spigotMessage} from './webhooks.js'

const count = Number(process.env.BENCH_COUNT)
const bytes = Number(process.env.BENCH_BYTES)
const groups = Number(process.env.BENCH_GROUPS ?? 20)
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 10)
const raw = process.env.BENCH_RAW === '1'

const queue = await openQueue(`sqlite:${process.env.BENCH_DB}#spigot`, {fifo: true, maxReceiveCount: 0})
for (let i = 0; i < count; i += 100) {
  const batch = []
  for (let j = i; j < Math.min(count, i + 100); j++) {
    const {message, repository, delivery} = spigotMessage(j, `acme/repo-${j % groups}`, bytes, {raw})
    batch.push({body: JSON.stringify(message), groupId: repository, deduplicationId: `${delivery}:default`})
  }
  await queue.sendBatch(batch)
}
// What the queue is asked, by call (BENCH_CALLS=1): how many transactions the drain costs.
const calls = {}
if (process.env.BENCH_CALLS) {
  for (const name of ['receive', 'deleteBatch', 'delete', 'changeVisibility', 'release', 'stats']) {
    const original = queue[name].bind(queue)
    queue[name] = (...args) => {
      calls[name] = (calls[name] ?? 0) + 1
      return original(...args)
    }
  }
}
// The drain loads its HTTP client on first use; the baselines load theirs before they start.
await import('undici')
const config = {
  queue: queue.url,
  targets: [{name: 'default', url: `${process.env.BENCH_SINK}/`}],
  routes: {push: {path: 'github-webhook/', targets: ['default']}},
  unrouted: 'accept',
  forwardTimeoutMs: 3000,
}
process.send({ready: true})
serve({
  async go() {
    const profiler = process.env.BENCH_PROFILE ? await startProfile() : undefined
    const cpu = process.cpuUsage()
    const t0 = performance.now()
    const summary = await drain({queue, config, concurrency})
    const ms = performance.now() - t0
    await profiler?.stop(process.env.BENCH_PROFILE)
    if (summary.delivered !== count) throw new Error(`drain delivered ${summary.delivered} of ${count}: ${JSON.stringify(summary.problems)}`)
    return {ms, cpuUs: cpuSince(cpu), drained: summary.delivered, left: summary.remaining, ...(process.env.BENCH_CALLS ? {calls} : {})}
  },
  stop: () => queue.close(),
})

/** BENCH_PROFILE=<file.cpuprofile>: a V8 CPU profile of the drain alone (not the filling). */
async function startProfile() {
  const {Session} = await import('node:inspector/promises')
  const {writeFileSync} = await import('node:fs')
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', {interval: 100})
  await session.post('Profiler.start')
  return {
    async stop(file) {
      const {profile} = await session.post('Profiler.stop')
      writeFileSync(file, JSON.stringify(profile))
      session.disconnect()
    },
  }
}
