// The fault suite (issue 11) over the BUILT CLI (`npm run build` first): CodePipeline flaky or
// throttling, a Jenkins action's server down, hanging or refusing the token, the worker killed -9
// mid-job. What is asserted: no job lost (each ends with exactly one result, or is handed back with
// a continuation token and finished by the next run), none failed for a target's fault, no job
// acknowledged twice, back-off instead of a hot loop, and the documented exit codes.
import {type ResultPromise} from 'execa'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import type {ServerResponse} from 'node:http'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'

import {cistern} from '../helpers/cli.js'
import {type RecordedRequest, type StandIn, standIn} from '../helpers/http.js'
import {tempDir} from '../helpers/tmp.js'
import {FakeCodePipeline, jobData} from './fake-codepipeline.js'
import {until} from './fixtures.js'

const dir = tempDir('cistern-cp-faults-')
const COMMAND_TYPE = {category: 'Build', owner: 'Custom', provider: 'fault-cmd', version: '1'}
const JENKINS_TYPE = {category: 'Build', owner: 'Custom', provider: 'fault-jenkins', version: '1'}

writeFileSync(join(dir, 'quick.mjs'), `console.log('built ' + process.env.CP_JOB_ID)\n`)
// Writes its pid where the action configuration says, then runs until killed.
writeFileSync(join(dir, 'hang.mjs'), `import {writeFileSync} from 'node:fs'\nwriteFileSync(process.env.CP_CONFIG_PIDFILE, String(process.pid))\nsetInterval(() => {}, 1000)\n`)
writeFileSync(
  join(dir, 'jobs.yml'),
  stringify({quick: {argv: [process.execPath, join(dir, 'quick.mjs')]}, hang: {argv: [process.execPath, join(dir, 'hang.mjs')]}}),
)
const base = {jobs: 'jobs.yml', concurrency: 4, pollInterval: {min: 0.05, max: 0.2}, stopTimeout: 2}
writeFileSync(
  join(dir, 'command.yml'),
  stringify({...base, actions: [{...COMMAND_TYPE, owner: undefined, handler: 'command', concurrency: 4, settings: {job: 'quick', workRoot: join(dir, 'work')}}]}),
)
writeFileSync(
  join(dir, 'hang.yml'),
  stringify({...base, actions: [{...COMMAND_TYPE, owner: undefined, handler: 'command', concurrency: 1, settings: {job: 'hang', workRoot: join(dir, 'work')}}]}),
)
const jenkinsConfig = (url: string) => {
  const path = join(dir, 'jenkins.yml')
  // requestTimeoutSeconds: long enough for a loaded machine, short enough for the hanging case.
  const settings = {url, job: 'app', waitSeconds: 1, checkIntervalSeconds: 0.05, requestTimeoutSeconds: 2}
  writeFileSync(path, stringify({...base, actions: [{...JENKINS_TYPE, owner: undefined, handler: 'jenkins', concurrency: 2, settings}]}))
  return path
}

let codepipeline: FakeCodePipeline
let endpoint: string
let jenkins: StandIn
const children: ResultPromise[] = []
const orphans: number[] = []

function env(extra: Record<string, string> = {}) {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDFAULTS0000000000',
    AWS_SECRET_ACCESS_KEY: 'faults-worker-secret',
    AWS_EC2_METADATA_DISABLED: 'true',
    // One SDK try per call: the faults reach cistern's own retries.
    AWS_MAX_ATTEMPTS: '1',
    JENKINS_USER: 'ci-bot',
    JENKINS_TOKEN: 'faults-jenkins-token-0001',
    CISTERN_DATA_DIR: dir,
    CISTERN_LOG_FORMAT: 'json',
    ...extra,
  }
}

const run = (config: string, args: string[] = [], extra: Record<string, string> = {}) =>
  cistern(['codepipeline-worker', 'run', '-c', config, '--json', ...args], {env: env(extra)})

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as {port: number}
  await new Promise((resolve) => server.close(resolve))
  return port
}

// A Jenkins that queues the build as item 7, starts it as build 12 and finishes it SUCCESS.
function healthyJenkins(req: RecordedRequest, res: ServerResponse) {
  const json = (value: unknown) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(value))
  }
  if (req.method === 'POST') {
    res.statusCode = 201
    res.setHeader('location', `${jenkins.url}/queue/item/7/`)
    res.end()
    return
  }
  if (req.url.startsWith('/queue/item/7/api/json')) {
    json({executable: {number: 12, url: `${jenkins.url}/job/app/12/`}})
    return
  }
  if (req.url.startsWith('/job/app/12/api/json')) {
    json({number: 12, url: `${jenkins.url}/job/app/12/`, fullDisplayName: 'app #12', result: 'SUCCESS'})
    return
  }
  res.statusCode = 404
  res.end()
}

beforeAll(async () => {
  jenkins = await standIn(healthyJenkins)
})
beforeEach(async () => {
  codepipeline = new FakeCodePipeline()
  endpoint = await codepipeline.start()
  jenkins.requests.length = 0
  jenkins.respond(healthyJenkins)
})
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL')
  for (const pid of orphans.splice(0)) {
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
  await codepipeline.close()
})
afterAll(() => jenkins.close())

describe('codepipeline-worker under faults (built CLI)', () => {
  it('CodePipeline answering 30 % of all calls with 500: every job acknowledged once, exactly one result each, none lost or failed (exit 0)', async () => {
    codepipeline.faults = {failRate: 0.3}
    const ids = Array.from({length: 8}, (_, i) => `flaky-${i}`)
    for (const id of ids) codepipeline.add(id, jobData(COMMAND_TYPE))
    const result = await run(join(dir, 'command.yml'), ['--once', '--give-up-after', '20s'])
    expect(result.exitCode, String(result.stderr)).toBe(0)
    expect(JSON.parse(String(result.stdout))).toMatchObject({jobs: 8, succeeded: 8, failed: 0, unreported: 0, exitCode: 0})
    for (const id of ids) {
      const job = codepipeline.jobs.get(id)!
      expect([job.state, job.acks, job.results.length], id).toEqual(['Succeeded', 1, 1])
    }
    // The faults did happen, on every kind of call.
    const failedOps = new Set(codepipeline.calls.filter((call) => call.answered === 500).map((call) => call.op))
    expect(codepipeline.calls.filter((call) => call.answered === 500).length).toBeGreaterThanOrEqual(5)
    expect(failedOps.size).toBeGreaterThanOrEqual(2)
  })

  it('PollForJobs throttled 6 times in a row: backed off (no hot loop), then the waiting job is taken (exit 0)', async () => {
    codepipeline.add('after-throttle', jobData(COMMAND_TYPE))
    codepipeline.faults = {throttle: {PollForJobs: 6}}
    const result = await run(join(dir, 'command.yml'), ['--once', '--give-up-after', '20s'])
    expect(result.exitCode, String(result.stderr)).toBe(0)
    expect(JSON.parse(String(result.stdout))).toMatchObject({succeeded: 1, throttled: 6, exitCode: 0})
    // pollInterval.max 0.2 s in this config: each throttled poll waited at least 100 ms before the next.
    const polls = codepipeline.calls.filter((call) => call.op === 'PollForJobs').map((call) => call.at)
    for (let i = 1; i <= 6; i++) expect(polls[i]! - polls[i - 1]!).toBeGreaterThanOrEqual(95)
    expect(codepipeline.jobs.get('after-throttle')!.results).toHaveLength(1)
  })

  it.each([
    ['down (connection refused)', 'down', /connection refused/],
    ['hanging (no answer within requestTimeoutSeconds)', 'hang', /timed out/],
    ['refusing the token (401)', '401', /refused the credentials.*answered 401/],
  ] as const)('a Jenkins action whose server is %s: the job is handed back with a continuation token, not failed (exit 3)', async (_name, mode, why) => {
    const url = mode === 'down' ? `http://127.0.0.1:${await closedPort()}` : jenkins.url
    if (mode === 'hang') jenkins.respond(() => undefined)
    if (mode === '401') {
      jenkins.respond((_req, res) => {
        res.statusCode = 401
        res.end()
      })
    }
    codepipeline.add('held', jobData(JENKINS_TYPE))
    const result = await run(jenkinsConfig(url), ['--once', '--give-up-after', '1s'])
    expect(result.exitCode, String(result.stderr)).toBe(3)
    expect(JSON.parse(String(result.stdout))).toMatchObject({jobs: 1, held: 1, failed: 0, exitCode: 3})
    const held = codepipeline.jobs.get('held')!
    expect(held.results).toHaveLength(1)
    expect(held.results[0]!.op).toBe('PutJobSuccessResult')
    const input = held.results[0]!.input as {continuationToken: string; executionDetails: {summary: string}}
    expect(JSON.parse(input.continuationToken)).toEqual({downSince: expect.any(Number)})
    expect(input.executionDetails.summary).toMatch(why)
    expect(String(result.stderr)).toMatch(/jenkins:127\.0\.0\.1:\d+ is down: .*its jobs were handed back to CodePipeline with a continuation token/)
    expect(String(result.stderr)).not.toContain('faults-jenkins-token-0001')
    // A hanging Jenkins may have received the POST it never answered: at most that one more build (in flight).
    expect(jenkins.requests.filter((req) => req.method === 'POST').length).toBeLessThanOrEqual(1)

    if (mode !== 'down') return
    // Jenkins is back: the next run takes the job CodePipeline offers again (with the token), starts the build once, reports success.
    const back = await run(jenkinsConfig(jenkins.url), ['--once'])
    expect(back.exitCode, String(back.stderr)).toBe(0)
    const resumed = [...codepipeline.jobs.values()].find((job) => job.id.startsWith('held~'))!
    expect(resumed.results.map((r) => [r.op, (r.input as {continuationToken?: string}).continuationToken ?? null])).toEqual([['PutJobSuccessResult', null]])
    expect(jenkins.requests.filter((req) => req.method === 'POST')).toHaveLength(1)
  })

  it('kill -9 of the worker mid-job, three times: no job is acknowledged twice or reported by anyone else; CodePipeline keeps each InProgress until its timeout', async () => {
    for (let round = 1; round <= 3; round++) {
      const pidFile = join(dir, `job-${round}.pid`)
      codepipeline.add(`killed-${round}`, jobData(COMMAND_TYPE, {actionConfiguration: {configuration: {PidFile: pidFile}}}))
      const child = cistern(['codepipeline-worker', 'run', '-c', join(dir, 'hang.yml')], {env: env()})
      children.push(child)
      await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8') !== '', 20_000, `job ${round} to start`)
      orphans.push(Number(readFileSync(pidFile, 'utf8')))
      child.kill('SIGKILL')
      expect((await child).signal).toBe('SIGKILL')
    }
    // A worker started after the crashes: nothing is offered again, nothing acknowledged twice.
    const after = await run(join(dir, 'hang.yml'), ['--once'])
    expect(after.exitCode, String(after.stderr)).toBe(0)
    expect(JSON.parse(String(after.stdout))).toMatchObject({jobs: 0})
    for (let round = 1; round <= 3; round++) {
      const job = codepipeline.jobs.get(`killed-${round}`)!
      expect([job.state, job.acks, job.results.length]).toEqual(['InProgress', 1, 0])
    }
    expect(codepipeline.count('AcknowledgeJob')).toBe(3)
  })
})
