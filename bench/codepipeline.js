// npm run bench -- codepipeline [jobs] [concurrency]
// Job lifecycle throughput of the worker (poll → ack → handler → PutJobSuccessResult, no-op handler)
// against a loopback stand-in speaking CodePipeline's JSON protocol, compared with a bare loop making
// the same SDK calls in batches of the same size (the baseline): the ratio is what cistern's
// lifecycle (slots, back-off, masking logger, result mapping) costs or saves on top of the AWS calls
// (the worker refills free slots as jobs finish instead of waiting for a whole batch). CPU per job
// (this process: the stand-in's share is the same on both sides) is the figure that holds under load.
import {createServer} from 'node:http'

import {actionSchema} from '../dist/codepipeline/config.js'
import {runWorker} from '../dist/codepipeline/poller.js'
import {silentLogger} from '../dist/core/log.js'

async function fakeCodePipeline(total) {
  let issued = 0
  let reported = 0
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      const op = String(req.headers['x-amz-target']).split('.')[1]
      res.setHeader('content-type', 'application/x-amz-json-1.1')
      if (op === 'PollForJobs') {
        const want = JSON.parse(body).maxBatchSize ?? 1
        const jobs = []
        while (jobs.length < want && issued < total) {
          issued++
          jobs.push({id: `job-${issued}`, nonce: `n-${issued}`, data: {actionConfiguration: {configuration: {}}, inputArtifacts: [], outputArtifacts: [], artifactCredentials: {accessKeyId: 'ASIABENCH', secretAccessKey: 'bench-secret', sessionToken: 'bench-token'}}})
        }
        return res.end(JSON.stringify({jobs}))
      }
      if (op === 'AcknowledgeJob') return res.end('{"status":"InProgress"}')
      reported++
      res.end('{}')
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    get reported() {
      return reported
    },
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(resolve))),
  }
}

async function client(url) {
  const {CodePipelineClient} = await import('@aws-sdk/client-codepipeline')
  return new CodePipelineClient({region: 'eu-west-1', endpoint: url, credentials: {accessKeyId: 'x', secretAccessKey: 'y'}, maxAttempts: 1})
}

const actionTypeId = {category: 'Build', owner: 'Custom', provider: 'bench', version: '1'}

async function baseline(total, concurrency) {
  const fake = await fakeCodePipeline(total)
  const cp = await client(fake.url)
  const {PollForJobsCommand, AcknowledgeJobCommand, PutJobSuccessResultCommand} = await import('@aws-sdk/client-codepipeline')
  const started = performance.now()
  const cpu = process.cpuUsage()
  // A batch loop: poll up to `concurrency` jobs, ack + report them all in parallel, repeat.
  for (;;) {
    const {jobs = []} = await cp.send(new PollForJobsCommand({actionTypeId, maxBatchSize: concurrency}))
    if (jobs.length === 0) break
    await Promise.all(
      jobs.map(async (job) => {
        await cp.send(new AcknowledgeJobCommand({jobId: job.id, nonce: job.nonce}))
        await cp.send(new PutJobSuccessResultCommand({jobId: job.id, executionDetails: {summary: 'ok'}}))
      }),
    )
  }
  const seconds = (performance.now() - started) / 1000
  const cpuPerJob = cpuMicros(process.cpuUsage(cpu)) / fake.reported
  await fake.close()
  return {jobs: fake.reported, seconds, rate: fake.reported / seconds, cpuPerJob}
}

function cpuMicros({user, system}) {
  return user + system
}

async function worker(total, concurrency) {
  const fake = await fakeCodePipeline(total)
  const cp = await client(fake.url)
  const stop = new AbortController()
  const config = actionSchema.parse({...actionTypeId, handler: 'travis', concurrency, settings: {repo: 'a/b'}})
  const started = performance.now()
  const cpu = process.cpuUsage()
  const running = runWorker({
    client: cp,
    actions: [{config, handler: {run: async () => ({status: 'succeeded', summary: 'ok'})}}],
    concurrency,
    pollInterval: {min: 0, max: 0.05},
    stopTimeout: 5,
    logger: silentLogger,
    signal: stop.signal,
  })
  while (fake.reported < total) await new Promise((resolve) => setTimeout(resolve, 2))
  const seconds = (performance.now() - started) / 1000
  const cpuPerJob = cpuMicros(process.cpuUsage(cpu)) / fake.reported
  stop.abort()
  await running
  await fake.close()
  return {jobs: fake.reported, seconds, rate: fake.reported / seconds, cpuPerJob}
}

export default async function run(args = []) {
  const total = Number(args[0] ?? 2000)
  const concurrency = Number(args[1] ?? 16)
  await baseline(200, concurrency) // warm-up (SDK, sockets, JIT)
  const base = await baseline(total, concurrency)
  const ours = await worker(total, concurrency)
  const ratio = ours.rate / base.rate
  console.log(`jobs=${total} concurrency=${concurrency}`)
  console.log(`baseline bare SDK poll/ack/put loop: ${base.rate.toFixed(0)} jobs/s (${base.seconds.toFixed(2)} s), CPU ${base.cpuPerJob.toFixed(0)} µs/job`)
  console.log(`cistern runWorker lifecycle:         ${ours.rate.toFixed(0)} jobs/s (${ours.seconds.toFixed(2)} s), CPU ${ours.cpuPerJob.toFixed(0)} µs/job`)
  console.log(`ratio worker/baseline: ${ratio.toFixed(2)} jobs/s, ${(ours.cpuPerJob / base.cpuPerJob).toFixed(2)} CPU/job`)
  return {total, concurrency, baseline: base.rate, worker: ours.rate, ratio, cpuPerJob: {baseline: base.cpuPerJob, worker: ours.cpuPerJob}}
}
