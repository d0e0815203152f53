// sqs-listen: requests/s through the listener on the embedded queues (request in → started →
// working → success out → request deleted), as a ratio of the bare rate of running the same job
// with the shared runner at the same concurrency, measured in this run. A second case measures
// output lines/s delivered as `working` responses against the job printing them alone.
// The original ran one job at a time with a 2 s sleep between polls (≤ 0.5 requests/s).
//   npm run bench -- sqs-listen [--requests 200] [--concurrency 1,4] [--lines 50000]
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {silentLogger} from '../dist/core/log.js'
import {runJob} from '../dist/core/jobs.js'
import {openQueue} from '../dist/core/queue/index.js'
import {listen} from '../dist/sqs-listener/listener.js'
import {openRequestStore} from '../dist/sqs-listener/store.js'
import {fmt, ratio, table} from './lib.js'

const ORIGINAL_RATE = 0.5

function option(args, name, fallback) {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback
}

const settings = (concurrency) => ({
  maxConcurrentJobs: concurrency,
  visibilityTimeout: 30,
  pollingIntervalSeconds: 1,
  responseEncoding: 'base64',
  stopTimeoutSeconds: 5,
  workingLines: 50,
  workingIntervalMs: 2000,
  jobsPath: 'bench',
})

async function withQueues(fn) {
  const dir = mkdtempSync(join(tmpdir(), 'cistern-bench-sl-'))
  const db = join(dir, 'queues.db')
  const requests = await openQueue(`sqlite:${db}#requests`)
  const responses = await openQueue(`sqlite:${db}#responses`)
  const store = openRequestStore({path: join(dir, 'state.db'), queue: requests.url, windowMs: 3_600_000})
  try {
    return await fn({dir, requests, responses, store})
  } finally {
    store.close()
    await requests.close()
    await responses.close()
    rmSync(dir, {recursive: true, force: true})
  }
}

async function send(requests, count, jobName) {
  for (let i = 0; i < count; i += 10) {
    await requests.sendBatch(
      Array.from({length: Math.min(10, count - i)}, (_, k) => ({body: `${jobName}:\n  request_id: r-${i + k}\n  parameters: [a, b]\n`})),
    )
  }
}

async function bareRate(job, count, concurrency) {
  const began = process.hrtime.bigint()
  let next = 0
  await Promise.all(
    Array.from({length: concurrency}, async () => {
      while (next < count) {
        next++
        await runJob(job, {parameters: ['a', 'b']})
      }
    }),
  )
  return count / (Number(process.hrtime.bigint() - began) / 1e9)
}

async function requestRate(job, count, concurrency) {
  return withQueues(async ({requests, responses, store}) => {
    await send(requests, count, job.name)
    const began = process.hrtime.bigint()
    const summary = await listen({requests, responses, store, jobs: new Map([[job.name, job]]), log: silentLogger, settings: settings(concurrency)}, {once: true})
    const seconds = Number(process.hrtime.bigint() - began) / 1e9
    if (summary.succeeded !== count) throw new Error(`only ${summary.succeeded} of ${count} succeeded`)
    return count / seconds
  })
}

async function lineRate(lines) {
  const script = `const n=${lines};let s='';for(let i=0;i<n;i++){s+='output line '+i+' of the job\\n';if(s.length>65536){process.stdout.write(s);s=''}}process.stdout.write(s)`
  const job = {name: 'printer', argv: [process.execPath, '-e', script]}
  const bareBegan = process.hrtime.bigint()
  const bare = await runJob(job, {onLine: () => {}})
  const bareSeconds = Number(process.hrtime.bigint() - bareBegan) / 1e9
  if (bare.exitCode !== 0) throw new Error('printer failed')
  const listened = await withQueues(async ({requests, responses, store}) => {
    await send(requests, 1, 'printer')
    const began = process.hrtime.bigint()
    await listen({requests, responses, store, jobs: new Map([[job.name, job]]), log: silentLogger, settings: settings(1)}, {once: true})
    const seconds = Number(process.hrtime.bigint() - began) / 1e9
    const stats = await responses.stats()
    return {seconds, messages: stats.visible}
  })
  return {bare: lines / bareSeconds, listened: lines / listened.seconds, messages: listened.messages}
}

export default async function run(args) {
  const count = Number(option(args, 'requests', 200))
  const levels = String(option(args, 'concurrency', '1,4')).split(',').map(Number)
  const lines = Number(option(args, 'lines', 50_000))
  const dir = mkdtempSync(join(tmpdir(), 'cistern-bench-sl-job-'))
  const script = join(dir, 'noop.sh')
  writeFileSync(script, '#!/bin/sh\necho "job $CISTERN_REQUEST_ID: $*"\n', {mode: 0o755})
  const job = {name: 'noop', argv: [script]}
  const rows = []
  const results = {requests: [], lines: undefined}
  try {
    for (const concurrency of levels) {
      const bare = await bareRate(job, count, concurrency)
      const listened = await requestRate(job, count, concurrency)
      results.requests.push({concurrency, bare, listened})
      rows.push({
        concurrency,
        'requests/s (listener)': fmt(listened),
        'jobs/s (bare runJob)': fmt(bare),
        'ratio listener/bare': fmt(ratio(listened, bare), 2),
        'vs original (0.5/s)': `${fmt(ratio(listened, ORIGINAL_RATE), 0)}×`,
      })
    }
    table(rows)
    const l = await lineRate(lines)
    results.lines = l
    console.log('')
    table([
      {
        'output lines': fmt(lines, 0),
        'lines/s as working responses': fmt(l.listened, 0),
        'lines/s read by runJob alone': fmt(l.bare, 0),
        'ratio': fmt(ratio(l.listened, l.bare), 2),
        'working messages': l.messages - 2,
      },
    ])
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
  return results
}
