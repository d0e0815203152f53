import {
  AcknowledgeJobCommand,
  CodePipelineClient,
  InvalidNonceException,
  JobNotFoundException,
  PutJobFailureResultCommand,
  PutJobSuccessResultCommand,
} from '@aws-sdk/client-codepipeline'
import {mockClient} from 'aws-sdk-client-mock'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {ActionConfigurationError, type ActionHandler, JobFailure, jobSecrets} from '../../src/codepipeline/job.js'
import {processJob} from '../../src/codepipeline/lifecycle.js'
import {LIMITS, clampPercent, resultRequest, truncate} from '../../src/codepipeline/result.js'
import {CREDS, captureLogger, commandNames, fakeJob} from './fixtures.js'

const cp = mockClient(CodePipelineClient)
const client = new CodePipelineClient({region: 'eu-west-1'})

function run(handler: ActionHandler, job = fakeJob(), extra: {secretKeys?: string[]} = {}) {
  const capture = captureLogger()
  const stop = new AbortController()
  const deadline = new AbortController()
  const result = processJob(job, {client, handler, logger: capture.logger, stopping: stop.signal, deadline: deadline.signal, ...extra})
  return {result, capture, stop, deadline, job}
}

beforeEach(() => {
  cp.reset()
  cp.on(AcknowledgeJobCommand).resolves({status: 'InProgress'})
  cp.on(PutJobSuccessResultCommand).resolves({})
  cp.on(PutJobFailureResultCommand).resolves({})
})
afterEach(() => cp.reset())

describe('processJob', () => {
  it('acknowledges with the nonce, runs the handler and reports success', async () => {
    const seen: string[] = []
    const {result, job} = run({
      async run(ctx) {
        seen.push(ctx.id, ctx.pipelineName!, ctx.stageName!, ctx.actionName!)
        return {status: 'succeeded', summary: 'built', externalExecutionId: 'ext-1', percentComplete: 100}
      },
    })
    expect(await result).toBe('succeeded')
    expect(commandNames(cp)).toEqual(['AcknowledgeJob', 'PutJobSuccessResult'])
    expect(cp.commandCalls(AcknowledgeJobCommand)[0]!.args[0].input).toEqual({jobId: job.id, nonce: job.nonce})
    expect(cp.commandCalls(PutJobSuccessResultCommand)[0]!.args[0].input).toEqual({
      jobId: job.id,
      executionDetails: {summary: 'built', externalExecutionId: 'ext-1', percentComplete: 100},
    })
    expect(seen).toEqual([job.id, 'demo-pipeline', 'Build', 'RunIt'])
  })

  it('InvalidNonceException: skips quietly, never runs the handler, reports nothing', async () => {
    cp.on(AcknowledgeJobCommand).rejects(new InvalidNonceException({message: 'nonce taken', $metadata: {}}))
    let ran = false
    const {result, capture} = run({
      async run() {
        ran = true
        return {status: 'succeeded'}
      },
    })
    expect(await result).toBe('skipped')
    expect(ran).toBe(false)
    expect(commandNames(cp)).toEqual(['AcknowledgeJob'])
    expect(capture.lines().filter((line) => line.level !== 'debug')).toEqual([])
  })

  it('a job no longer InProgress after acknowledge is not run', async () => {
    cp.on(AcknowledgeJobCommand).resolves({status: 'TimedOut'})
    let ran = false
    const {result} = run({
      async run() {
        ran = true
        return {status: 'succeeded'}
      },
    })
    expect(await result).toBe('skipped')
    expect(ran).toBe(false)
    expect(commandNames(cp)).toEqual(['AcknowledgeJob'])
  })

  it('other acknowledge errors skip the job with a warning', async () => {
    cp.on(AcknowledgeJobCommand).rejects(new JobNotFoundException({message: 'gone', $metadata: {}}))
    const {result, capture} = run({run: async () => ({status: 'succeeded'})})
    expect(await result).toBe('skipped')
    expect(commandNames(cp)).toEqual(['AcknowledgeJob'])
    expect(capture.lines().some((line) => line.level === 'warn')).toBe(true)
  })

  it('a handler that throws becomes PutJobFailureResult JobFailed', async () => {
    const {result, job} = run({
      async run() {
        throw new TypeError('cannot read properties of undefined')
      },
    })
    expect(await result).toBe('failed')
    expect(commandNames(cp)).toEqual(['AcknowledgeJob', 'PutJobFailureResult'])
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input).toEqual({
      jobId: job.id,
      failureDetails: {type: 'JobFailed', message: 'cannot read properties of undefined'},
    })
  })

  it('a bad action configuration becomes ConfigurationError', async () => {
    const {result} = run({
      async run() {
        throw new ActionConfigurationError('ProjectName is required')
      },
    })
    expect(await result).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails).toEqual({
      type: 'ConfigurationError',
      message: 'ProjectName is required',
    })
  })

  it('a JobFailure keeps its type and external id', async () => {
    const {result} = run({
      async run() {
        throw new JobFailure('PermissionError', 'AccessDenied on the artifact', 'ext-9')
      },
    })
    await result
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails).toEqual({
      type: 'PermissionError',
      message: 'AccessDenied on the artifact',
      externalExecutionId: 'ext-9',
    })
  })

  it('hands the continuation token to the handler and reports the next one', async () => {
    let got: string | undefined
    const {result, job} = run(
      {
        async run(ctx) {
          got = ctx.continuationToken
          return {status: 'inProgress', continuationToken: 'step-2', summary: 'half way', percentComplete: 50}
        },
      },
      fakeJob({continuationToken: 'step-1'}),
    )
    expect(await result).toBe('continued')
    expect(got).toBe('step-1')
    expect(cp.commandCalls(PutJobSuccessResultCommand)[0]!.args[0].input).toEqual({
      jobId: job.id,
      continuationToken: 'step-2',
      executionDetails: {summary: 'half way', percentComplete: 50},
    })
  })

  it('a too-long continuation token is a failure, not a silently broken resume', async () => {
    const {result} = run({run: async () => ({status: 'inProgress', continuationToken: 'x'.repeat(LIMITS.continuationToken + 1)})})
    expect(await result).toBe('failed')
    expect(commandNames(cp)).toEqual(['AcknowledgeJob', 'PutJobFailureResult'])
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails?.message).toMatch(/continuation token is 2049 characters/)
  })

  it('reports "unreported" when CodePipeline refuses the result', async () => {
    cp.on(PutJobSuccessResultCommand).rejects(Object.assign(new Error('job timed out'), {name: 'InvalidJobStateException'}))
    const {result, capture} = run({run: async () => ({status: 'succeeded'})})
    expect(await result).toBe('unreported')
    expect(capture.lines().some((line) => line.level === 'error' && line.msg === 'reporting the job result failed')).toBe(true)
  })

  it('a handler ignoring the stop deadline is cut off and reported as "worker stopped"', async () => {
    const capture = captureLogger()
    const deadline = new AbortController()
    const job = fakeJob()
    const done = processJob(job, {
      client,
      handler: {run: () => new Promise(() => undefined)},
      logger: capture.logger,
      stopping: deadline.signal,
      deadline: deadline.signal,
      deadlineGraceMs: 20,
    })
    await new Promise((resolve) => setTimeout(resolve, 20))
    deadline.abort()
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails).toEqual({
      type: 'JobFailed',
      message: 'worker stopped before the action finished',
    })
  })

  it('never logs job data: credentials, nonce and secret configuration are absent from logs and failure messages', async () => {
    const configuration = {ApiToken: 'cfg-token-value-7781', DeployKey: 'deploy-key-value-9912', Region: 'eu-west-1'}
    const job = fakeJob({configuration})
    const {result, capture} = run(
      {
        async run(ctx) {
          ctx.logger.info(`handler saw ${ctx.artifactCredentials!.secretAccessKey} and ${ctx.configuration.ApiToken}`, {
            config: ctx.configuration,
            creds: ctx.artifactCredentials,
            note: `nonce ${job.nonce} key ${ctx.configuration.DeployKey}`,
          })
          throw new Error(`boom with ${ctx.artifactCredentials!.sessionToken} / ${ctx.configuration.DeployKey} / ${ctx.configuration.ApiToken}`)
        },
      },
      job,
      {secretKeys: ['DeployKey']},
    )
    expect(await result).toBe('failed')
    const logs = capture.text()
    const message = cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails!.message!
    for (const secret of [CREDS.accessKeyId, CREDS.secretAccessKey, CREDS.sessionToken, job.nonce!, configuration.ApiToken, configuration.DeployKey]) {
      expect(logs).not.toContain(secret)
      expect(message).not.toContain(secret)
    }
    expect(logs).toContain('handler saw [redacted]')
    expect(message).toMatch(/^boom with \[redacted\]/)
    // non-secret configuration values stay readable
    expect(logs).toContain('eu-west-1')
  })
})

describe('results are delivered (issue 11.6)', () => {
  const throttled = () => Object.assign(new Error('Rate exceeded'), {name: 'ThrottlingException', $metadata: {httpStatusCode: 400}})
  const fast = {baseMs: 2, maxMs: 10}

  function runFast(handler: ActionHandler, job = fakeJob(), resultDeadline?: (jobDeadline: number) => number) {
    const capture = captureLogger()
    const never = new AbortController().signal
    const result = processJob(job, {client, handler, logger: capture.logger, stopping: never, deadline: never, retryBackoff: fast, resultDeadline})
    return {result, capture, job}
  }

  it.each([
    ['a success', {status: 'succeeded', summary: 'built'}, PutJobSuccessResultCommand, 'succeeded'],
    ['a continuation token', {status: 'inProgress', continuationToken: '{"buildUrl":"b"}', summary: 'building'}, PutJobSuccessResultCommand, 'continued'],
    ['a failure', {status: 'failed', type: 'JobFailed', message: 'exited with 2'}, PutJobFailureResultCommand, 'failed'],
  ] as const)('%s throttled 6 times beyond the SDK is retried with back-off until delivered, the same request each time', async (_name, outcome, command, kind) => {
    let calls = 0
    // One stub type for both commands (their outputs are both {}).
    cp.on(command as typeof PutJobSuccessResultCommand).callsFake(() => {
      if (++calls <= 6) throw throttled()
      return {}
    })
    const {result, capture, job} = runFast({run: async () => outcome})
    expect(await result).toBe(kind)
    const sent = cp.commandCalls(command as typeof PutJobSuccessResultCommand).map((call) => call.args[0].input)
    expect(sent).toHaveLength(7)
    for (const input of sent) expect(input).toEqual(sent[0])
    expect(sent[0]).toMatchObject({jobId: job.id})
    const retries = capture.lines().filter((line) => line.level === 'warn' && String(line.msg).startsWith('job result not delivered yet; retrying in'))
    expect(retries).toHaveLength(6)
    expect(commandNames(cp).filter((name) => name !== 'AcknowledgeJob')).toHaveLength(7)
  })

  it('5xx and no answer are retried too; a refusal (InvalidJobStateException) is not', async () => {
    let calls = 0
    cp.on(PutJobSuccessResultCommand).callsFake(() => {
      calls++
      if (calls === 1) throw Object.assign(new Error('internal'), {name: 'InternalFailure', $fault: 'server', $metadata: {httpStatusCode: 500}})
      if (calls === 2) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), {code: 'ECONNREFUSED'})
      return {}
    })
    expect(await runFast({run: async () => ({status: 'succeeded'})}).result).toBe('succeeded')
    expect(calls).toBe(3)
    cp.on(PutJobSuccessResultCommand).rejects(Object.assign(new Error('job timed out'), {name: 'InvalidJobStateException'}))
    cp.resetHistory()
    expect(await runFast({run: async () => ({status: 'succeeded'})}).result).toBe('unreported')
    expect(cp.commandCalls(PutJobSuccessResultCommand)).toHaveLength(1)
  })

  it("throttled until the job's deadline: given up with a warn line, unreported", async () => {
    cp.on(PutJobSuccessResultCommand).rejects(throttled())
    const started = Date.now()
    const {result, capture} = runFast({run: async () => ({status: 'succeeded'})}, fakeJob(), () => started + 150)
    expect(await result).toBe('unreported')
    expect(cp.commandCalls(PutJobSuccessResultCommand).length).toBeGreaterThan(2)
    const gaveUp = capture.lines().filter((line) => line.level === 'warn' && line.msg === 'job result not delivered: giving up at its deadline')
    expect(gaveUp).toHaveLength(1)
    expect(gaveUp[0]).toMatchObject({result: 'success', error: 'Rate exceeded'})
  })

  it('AcknowledgeJob throttled is retried, then the job runs once', async () => {
    let acks = 0
    cp.on(AcknowledgeJobCommand).callsFake(() => (++acks <= 2 ? Promise.reject(throttled()) : {status: 'InProgress'}))
    let ran = 0
    const {result} = runFast({
      async run() {
        ran++
        return {status: 'succeeded'}
      },
    })
    expect(await result).toBe('succeeded')
    expect([acks, ran]).toEqual([3, 1])
  })
})

describe('result limits', () => {
  it('truncates summary, external id and message to the CodePipeline limits', () => {
    const long = 'y'.repeat(10_000)
    const ok = resultRequest('j', {status: 'succeeded', summary: long, externalExecutionId: long, percentComplete: 250})
    expect(ok.kind).toBe('success')
    const details = (ok.input as {executionDetails: {summary: string; externalExecutionId: string; percentComplete: number}}).executionDetails
    expect(details.summary).toHaveLength(LIMITS.summary)
    expect(details.summary.endsWith('…')).toBe(true)
    expect(details.externalExecutionId).toHaveLength(LIMITS.externalExecutionId)
    expect(details.percentComplete).toBe(100)
    const failed = resultRequest('j', {status: 'failed', message: long, externalExecutionId: long})
    const failure = (failed.input as {failureDetails: {message: string; externalExecutionId: string; type: string}}).failureDetails
    expect(failure.message).toHaveLength(LIMITS.message)
    expect(failure.externalExecutionId).toHaveLength(LIMITS.externalExecutionId)
    expect(failure.type).toBe('JobFailed')
  })

  it('keeps values at the limit intact and clamps percentComplete to 0–100', () => {
    expect(truncate('a'.repeat(2048), LIMITS.summary)).toBe('a'.repeat(2048))
    expect(clampPercent(-5)).toBe(0)
    expect(clampPercent(42.4)).toBe(42)
    expect(clampPercent(Number.NaN)).toBeUndefined()
  })

  it('an empty failure message still says something', () => {
    const failed = resultRequest('j', {status: 'failed', message: ''})
    expect((failed.input as {failureDetails: {message: string}}).failureDetails.message).toBe('failed')
  })

  it('secret configuration: by key name or by the configured list', () => {
    const job = fakeJob({configuration: {GitHubToken: 'abcd1234', Password: 'pw-123456', Plain: 'visible-value', Custom: 'custom-secret'}})
    const secrets = jobSecrets(job, ['custom'])
    expect(secrets).toEqual(expect.arrayContaining(['abcd1234', 'pw-123456', 'custom-secret', CREDS.sessionToken]))
    expect(secrets).not.toContain('visible-value')
  })
})
