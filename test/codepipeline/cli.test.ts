// End to end: the BUILT CLI as a subprocess against a loopback stand-in speaking CodePipeline's
// JSON protocol (AWS_ENDPOINT_URL), so the whole poll → ack → run → report path crosses the process.
import {writeFileSync} from 'node:fs'
import type {ServerResponse} from 'node:http'
import {join} from 'node:path'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {cistern} from '../helpers/cli.js'
import {type RecordedRequest, type StandIn, standIn} from '../helpers/http.js'
import {tempDir} from '../helpers/tmp.js'
import {CREDS, until} from './fixtures.js'

const dir = tempDir('cistern-cp-e2e-')
const SECRET_CONFIG = 'cfg-secret-value-5531'
let aws: StandIn
/** Jobs the fake CodePipeline hands out, one per poll, in order. */
let queue: Array<Record<string, unknown>>
let ackError: string | undefined

writeFileSync(join(dir, 'ok.mjs'), `console.log('ran ' + process.env.CP_JOB_ID + ' for ' + process.env.CP_PIPELINE_NAME + ' stage ' + process.env.CP_CONFIG_STAGE)\n`)
writeFileSync(join(dir, 'fail.mjs'), `console.log('step 1 ok'); console.error('step 2 broke'); process.exit(3)\n`)
writeFileSync(join(dir, 'hang.mjs'), `console.log('hanging'); setInterval(() => {}, 1000)\n`)
const job = (name: string) => `${name}:\n  argv: [${JSON.stringify(process.execPath)}, ${JSON.stringify(join(dir, name + '.mjs'))}]\n`
writeFileSync(join(dir, 'jobs.yml'), job('ok') + job('fail') + job('hang'))
const config = (jobName: string, extra = '') =>
  `jobs: jobs.yml\nconcurrency: 2\npollInterval: {min: 0.05, max: 0.2}\nstopTimeout: 1\n${extra}actions:\n  - {category: Build, provider: cistern-e2e, version: "1", handler: command, concurrency: 2, settings: {job: ${jobName}}}\n`
writeFileSync(join(dir, 'ok.yml'), config('ok'))
writeFileSync(join(dir, 'fail.yml'), config('fail'))
writeFileSync(join(dir, 'hang.yml'), config('hang'))

function cpJob(id: string) {
  return {
    id,
    nonce: `nonce-${id}`,
    accountId: '111122223333',
    data: {
      actionTypeId: {category: 'Build', owner: 'Custom', provider: 'cistern-e2e', version: '1'},
      actionConfiguration: {configuration: {Stage: 'qa', ApiToken: SECRET_CONFIG}},
      pipelineContext: {pipelineName: 'e2e-pipeline', stage: {name: 'Build'}, action: {name: 'Run'}},
      inputArtifacts: [],
      outputArtifacts: [],
      artifactCredentials: CREDS,
    },
  }
}

function fakeCodePipeline(req: RecordedRequest, res: ServerResponse) {
  const target = String(req.headers['x-amz-target'] ?? '').replace('CodePipeline_20150709.', '')
  const send = (status: number, value: unknown) => {
    res.statusCode = status
    res.setHeader('content-type', 'application/x-amz-json-1.1')
    res.end(JSON.stringify(value))
  }
  if (target === 'PollForJobs') {
    send(200, {jobs: queue.length ? [queue.shift()] : []})
    return
  }
  if (target === 'AcknowledgeJob') {
    if (ackError) send(400, {__type: ackError, message: 'nope'})
    else send(200, {status: 'InProgress'})
    return
  }
  if (target === 'PutJobSuccessResult' || target === 'PutJobFailureResult') {
    send(200, {})
    return
  }
  send(400, {__type: 'UnknownOperationException', message: target})
  return
}

const calls = () =>
  aws.requests.map((req) => ({
    op: String(req.headers['x-amz-target']).replace('CodePipeline_20150709.', ''),
    input: JSON.parse(req.body.toString() || '{}') as Record<string, unknown>,
  }))

function env(extra: Record<string, string> = {}) {
  return {
    AWS_ENDPOINT_URL: aws.url,
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDWORKER0000000000',
    AWS_SECRET_ACCESS_KEY: 'worker-secret-not-the-job-one',
    AWS_EC2_METADATA_DISABLED: 'true',
    CISTERN_DATA_DIR: dir,
    CISTERN_LOG_FORMAT: 'json',
    ...extra,
  }
}

beforeAll(async () => {
  aws = await standIn(fakeCodePipeline)
})
afterAll(() => aws.close())
beforeEach(() => {
  aws.requests.length = 0
  aws.respond(fakeCodePipeline)
  queue = []
  ackError = undefined
})

describe('cistern codepipeline-worker run (built CLI)', () => {
  it('--once: poll → ack → run the job → PutJobSuccessResult; secrets never on stderr', async () => {
    queue = [cpJob('e2e-1')]
    const result = await cistern(['codepipeline-worker', 'run', '--config', join(dir, 'ok.yml'), '--once', '--json', '--log-level', 'debug'], {env: env()})
    expect(result.exitCode).toBe(0)
    expect(JSON.parse(String(result.stdout))).toMatchObject({polls: 1, jobs: 1, succeeded: 1, failed: 0, unreported: 0})
    expect(calls().map((c) => c.op)).toEqual(['PollForJobs', 'AcknowledgeJob', 'PutJobSuccessResult'])
    expect(calls()[0]!.input).toEqual({actionTypeId: {category: 'Build', owner: 'Custom', provider: 'cistern-e2e', version: '1'}, maxBatchSize: 2})
    expect(calls()[1]!.input).toEqual({jobId: 'e2e-1', nonce: 'nonce-e2e-1'})
    expect(calls()[2]!.input).toMatchObject({jobId: 'e2e-1', executionDetails: {summary: expect.stringMatching(/^job ok succeeded/)}})
    const stderr = String(result.stderr)
    expect(stderr).toContain('ran e2e-1 for e2e-pipeline stage qa')
    for (const secret of [...Object.values(CREDS), SECRET_CONFIG, 'nonce-e2e-1']) expect(stderr).not.toContain(secret)
  })

  it('--once: a failing job is reported as JobFailed with its last lines (exit 0: the result was delivered)', async () => {
    queue = [cpJob('e2e-2')]
    const result = await cistern(['codepipeline-worker', 'run', '-c', join(dir, 'fail.yml'), '--once'], {env: env()})
    expect(result.exitCode).toBe(0)
    expect(calls().map((c) => c.op)).toEqual(['PollForJobs', 'AcknowledgeJob', 'PutJobFailureResult'])
    expect(calls()[2]!.input).toEqual({jobId: 'e2e-2', failureDetails: {type: 'JobFailed', message: 'job fail exited with 3\nstep 1 ok\nstep 2 broke'}})
  })

  it('--once: InvalidNonceException → nothing else is sent', async () => {
    queue = [cpJob('e2e-3')]
    ackError = 'InvalidNonceException'
    const result = await cistern(['codepipeline-worker', 'run', '-c', join(dir, 'ok.yml'), '--once', '--json'], {env: env()})
    expect(result.exitCode).toBe(0)
    expect(calls().map((c) => c.op)).toEqual(['PollForJobs', 'AcknowledgeJob'])
    expect(JSON.parse(String(result.stdout))).toMatchObject({skipped: 1})
  })

  it('SIGTERM: stops polling, kills the job at the stop deadline, reports "worker stopped", exits 0', async () => {
    queue = [cpJob('e2e-4')]
    const child = cistern(['codepipeline-worker', 'run', '-c', join(dir, 'hang.yml'), '--log-level', 'debug'], {env: env()})
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    // the job's output reaches the debug log: signal only once the job is really running
    await until(() => stderr.includes('"msg":"hanging"'), 20_000, 'the job to start')
    child.kill('SIGTERM')
    const pollsAtStop = calls().filter((c) => c.op === 'PollForJobs').length
    const result = await child
    expect(result.exitCode).toBe(0)
    const failure = calls().find((c) => c.op === 'PutJobFailureResult')
    expect(failure?.input).toEqual({jobId: 'e2e-4', failureDetails: {type: 'JobFailed', message: 'worker stopped before job hang finished\nhanging'}})
    // at most one poll already in flight when the signal arrived
    expect(calls().filter((c) => c.op === 'PollForJobs').length).toBeLessThanOrEqual(pollsAtStop + 1)
  })

  it('a bad config is exit 2 with one line naming the file', async () => {
    writeFileSync(join(dir, 'bad.yml'), 'actions:\n  - {category: Build, provider: p, version: "1", handler: jenkins, settings: {url: "https://j.example", token: abc}}\n')
    const result = await cistern(['codepipeline-worker', 'run', '-c', join(dir, 'bad.yml'), '--once'], {env: env()})
    expect(result.exitCode).toBe(2)
    expect(String(result.stderr)).toMatch(/bad\.yml:2 actions\.0\.settings\.token: a literal secret is not allowed/)
    expect(String(result.stderr)).not.toMatch(/\n\s+at /) // no stack trace
    expect(aws.requests).toHaveLength(0)
  })

  it('a missing credential variable is exit 2 before any call to AWS', async () => {
    writeFileSync(join(dir, 'travis.yml'), 'actions:\n  - {category: Test, provider: p, version: "1", handler: travis, settings: {repo: a/b}}\n')
    const result = await cistern(['codepipeline-worker', 'run', '-c', join(dir, 'travis.yml'), '--once'], {env: env({TRAVIS_TOKEN: ''})})
    expect(result.exitCode).toBe(2)
    expect(String(result.stderr)).toMatch(/TRAVIS_TOKEN is not set/)
    expect(aws.requests).toHaveLength(0)
  })

  it('no AWS region anywhere is exit 2 with the fix', async () => {
    const result = await cistern(['codepipeline-worker', 'run', '-c', join(dir, 'ok.yml'), '--once'], {
      env: env({AWS_REGION: '', AWS_DEFAULT_REGION: '', AWS_CONFIG_FILE: join(dir, 'no-such-aws-config'), AWS_PROFILE: ''}),
    })
    expect(result.exitCode).toBe(2)
    expect(String(result.stderr)).toMatch(/no AWS region — pass --region/)
    expect(aws.requests).toHaveLength(0)
  })

  // Issue 11's contract: CodePipeline failing is its target being down (it was exit 1 after one failed poll):
  // --once retries with back-off until --give-up-after, then exits 3 with the reason.
  it('--once: a poll that keeps failing is retried with back-off, then exit 3', async () => {
    aws.respond((_req, res) => {
      res.statusCode = 500
      res.setHeader('content-type', 'application/x-amz-json-1.1')
      res.end(JSON.stringify({__type: 'InternalServiceError', message: 'boom'}))
    })
    const result = await cistern(['codepipeline-worker', 'run', '-c', join(dir, 'ok.yml'), '--once', '--json', '--give-up-after', '1s'], {env: env({AWS_MAX_ATTEMPTS: '1'})})
    expect(result.exitCode).toBe(3)
    const summary = JSON.parse(String(result.stdout))
    expect(summary).toMatchObject({jobs: 0, exitCode: 3})
    expect(summary.pollErrors).toBeGreaterThanOrEqual(2)
    // Backed off (pollInterval.max 0.2 s in this config: at least 100 ms apart): never a hot loop.
    expect(summary.pollErrors).toBeLessThanOrEqual(12)
    expect(String(result.stderr)).toMatch(/giving up polling: CodePipeline failed PollForJobs on Custom\/Build\/cistern-e2e\/1 \(InternalServiceError: boom\)/)
  })

  it('an action type CodePipeline does not know is exit 2', async () => {
    aws.respond((_req, res) => {
      res.statusCode = 400
      res.setHeader('content-type', 'application/x-amz-json-1.1')
      res.end(JSON.stringify({__type: 'ActionTypeNotFoundException', message: 'not found'}))
    })
    const result = await cistern(['codepipeline-worker', 'run', '-c', join(dir, 'ok.yml')], {env: env()})
    expect(result.exitCode).toBe(2)
    expect(String(result.stderr)).toMatch(/action type Custom\/Build\/cistern-e2e\/1 does not exist/)
  })
})
