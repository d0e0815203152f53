import {
  AcknowledgeJobCommand,
  CodePipelineClient,
  PollForJobsCommand,
  PutJobFailureResultCommand,
  PutJobSuccessResultCommand,
} from '@aws-sdk/client-codepipeline'
import {mockClient} from 'aws-sdk-client-mock'
import type {ServerResponse} from 'node:http'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {TravisHandler} from '../../src/codepipeline/actions/travis.js'
import {actionSchema, travisSettings} from '../../src/codepipeline/config.js'
import {runWorker} from '../../src/codepipeline/poller.js'
import {type RecordedRequest, type StandIn, standIn} from '../helpers/http.js'
import {captureLogger, context, fakeJob, until} from './fixtures.js'

const TOKEN = 'travis-token-0123456789abcdef'
let travis: StandIn
let script: {pendingChecks: number; runningChecks: number; final: string; rejected?: boolean}
let checks = 0

function json(res: ServerResponse, value: unknown, status = 200) {
  res.statusCode = status
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify(value))
}

function fakeTravis(req: RecordedRequest, res: ServerResponse) {
  if (req.method === 'POST' && req.url === '/repo/acme%2Fapp/requests') {
    json(res, {'@type': 'pending', remaining_requests: 9, request: {id: 501, branch: 'main'}, resource_type: 'request'}, 202)
    return
  }
  if (req.url === '/repo/acme%2Fapp/request/501') {
    checks++
    if (script.rejected) {
      json(res, {id: 501, state: 'finished', result: 'rejected', message: 'branch not included', builds: []})
      return
    }
    if (checks <= script.pendingChecks) {
      json(res, {id: 501, state: 'pending', builds: []})
      return
    }
    const state = checks <= script.pendingChecks + script.runningChecks ? 'started' : script.final
    json(res, {id: 501, state: 'finished', result: 'approved', builds: [{id: 9001, number: '42', state}]})
    return
  }
  res.statusCode = 404
  res.end()
}

const handler = (extra: Record<string, unknown> = {}) =>
  new TravisHandler({settings: travisSettings.parse({endpoint: travis.url, checkIntervalSeconds: 0.01, waitSeconds: 0, ...extra}), token: TOKEN})

beforeAll(async () => {
  travis = await standIn(fakeTravis)
})
afterAll(() => travis.close())
beforeEach(() => {
  travis.requests.length = 0
  travis.respond(fakeTravis)
  script = {pendingChecks: 1, runningChecks: 1, final: 'passed'}
  checks = 0
})

describe('travis handler', () => {
  it('POST /repo/{slug}/requests with the branch, API v3 headers; continuation token = request id', async () => {
    const outcome = await handler().run(context({configuration: {Repository: 'acme/app', Branch: 'main'}}))
    const post = travis.requests[0]!
    expect(post.method).toBe('POST')
    expect(post.url).toBe('/repo/acme%2Fapp/requests')
    expect(post.headers['travis-api-version']).toBe('3')
    expect(post.headers.authorization).toBe(`token ${TOKEN}`)
    expect(post.headers['content-type']).toBe('application/json')
    expect(JSON.parse(post.body.toString())).toEqual({request: {branch: 'main', message: 'CodePipeline demo-pipeline job-ctx'}})
    expect(outcome).toEqual({
      status: 'inProgress',
      continuationToken: JSON.stringify({requestId: '501'}),
      summary: 'Travis request 501: waiting for a build',
      percentComplete: 0,
    })
  })

  it('settings override the configuration; branch defaults to master', async () => {
    await handler({repo: 'acme/app'}).run(context())
    expect(JSON.parse(travis.requests[0]!.body.toString()).request.branch).toBe('master')
  })

  it('passed → success with the build URL', async () => {
    const outcome = await handler({repo: 'acme/app', waitSeconds: 5}).run(context())
    expect(outcome).toEqual({
      status: 'succeeded',
      summary: 'Travis build #42: passed',
      externalExecutionId: 'https://app.travis-ci.com/github/acme/app/builds/9001',
      percentComplete: 100,
    })
  })

  it.each(['failed', 'errored', 'canceled'])('%s → JobFailed', async (state) => {
    script.final = state
    const outcome = await handler({repo: 'acme/app', waitSeconds: 5}).run(context())
    expect(outcome).toEqual({
      status: 'failed',
      type: 'JobFailed',
      message: `Travis build #42: ${state}`,
      externalExecutionId: 'https://app.travis-ci.com/github/acme/app/builds/9001',
    })
  })

  it('a rejected request is JobFailed with the reason', async () => {
    script.rejected = true
    const outcome = await handler({repo: 'acme/app', waitSeconds: 5}).run(context())
    expect(outcome).toMatchObject({status: 'failed', type: 'JobFailed', message: 'Travis rejected request 501: branch not included'})
  })

  it('no repository, or not owner/name: ConfigurationError before any request', async () => {
    await expect(handler().run(context())).rejects.toMatchObject({type: 'ConfigurationError'})
    await expect(handler().run(context({configuration: {Repository: 'just-a-name'}}))).rejects.toMatchObject({type: 'ConfigurationError'})
    expect(travis.requests).toHaveLength(0)
  })

  // Issue 11's contract: Travis refusing the token or answering 5xx is Travis being down, not the job
  // failing: handed back with a continuation token until down for failAfterSeconds.
  it('403 → handed back, then PermissionError; 5xx on trigger → handed back, then SystemUnavailable', async () => {
    travis.respond((_req, res) => {res.statusCode = 403; res.end()})
    expect(await handler({repo: 'acme/app'}).run(context())).toMatchObject({status: 'inProgress', heldFor: `travis:127.0.0.1:${travis.port}`, summary: expect.stringMatching(/^Travis refused the credentials/)})
    await expect(handler({repo: 'acme/app', failAfterSeconds: 0}).run(context())).rejects.toMatchObject({type: 'PermissionError'})
    travis.respond((_req, res) => {res.statusCode = 502; res.end()})
    const held = await handler({repo: 'acme/app'}).run(context())
    expect(held).toMatchObject({status: 'inProgress', heldFor: expect.any(String)})
    // Handed back before a request existed: the next run requests the build.
    expect(JSON.parse((held as {continuationToken: string}).continuationToken)).toEqual({downSince: expect.any(Number)})
    await expect(handler({repo: 'acme/app', failAfterSeconds: 0}).run(context())).rejects.toMatchObject({type: 'SystemUnavailable'})
    travis.respond(fakeTravis)
    const before = travis.requests.length
    const resumed = await handler({repo: 'acme/app'}).run(context({continuationToken: (held as {continuationToken: string}).continuationToken}))
    expect(resumed).toMatchObject({status: 'inProgress', continuationToken: JSON.stringify({requestId: '501'})})
    expect(travis.requests.slice(before).filter((r) => r.method === 'POST' && r.url === '/repo/acme%2Fapp/requests')).toHaveLength(1)
  })

  it('round-trips a long build through continuation tokens with the CodePipeline mock', async () => {
    script = {pendingChecks: 1, runningChecks: 1, final: 'passed'}
    const cp = mockClient(CodePipelineClient)
    try {
      let issued = 0
      let pending: string | undefined
      cp.on(AcknowledgeJobCommand).resolves({status: 'InProgress'})
      cp.on(PutJobFailureResultCommand).resolves({})
      cp.on(PutJobSuccessResultCommand).callsFake((input) => ((pending = input.continuationToken), {}))
      cp.on(PollForJobsCommand).callsFake(() => {
        if (issued === 0) return {jobs: [fakeJob({id: `t-${++issued}`, configuration: {Repository: 'acme/app', Branch: 'main'}})]}
        if (!pending) return {jobs: []}
        const token = pending
        pending = undefined
        return {jobs: [fakeJob({id: `t-${++issued}`, configuration: {Repository: 'acme/app', Branch: 'main'}, continuationToken: token})]}
      })
      const stop = new AbortController()
      const capture = captureLogger()
      const config = actionSchema.parse({category: 'Test', provider: 'cistern-travis', version: '1', handler: 'travis', settings: {endpoint: travis.url}})
      const worker = runWorker({
        client: new CodePipelineClient({region: 'eu-west-1'}),
        actions: [{config, handler: handler()}],
        concurrency: 1,
        pollInterval: {min: 0.005, max: 0.02},
        stopTimeout: 1,
        logger: capture.logger,
        signal: stop.signal,
      })
      await until(() => cp.commandCalls(PutJobSuccessResultCommand).some((call) => !call.args[0].input.continuationToken), 10_000, 'final success')
      stop.abort()
      await worker
      const results = cp.commandCalls(PutJobSuccessResultCommand).map((call) => call.args[0].input)
      expect(results.map((r) => [r.jobId, r.continuationToken ?? null])).toEqual([
        ['t-1', '{"requestId":"501"}'],
        ['t-2', '{"requestId":"501"}'],
        ['t-3', null],
      ])
      expect(results[1]!.executionDetails).toEqual({summary: 'Travis build #42: started', externalExecutionId: 'https://app.travis-ci.com/github/acme/app/builds/9001'})
      expect(travis.requests.filter((r) => r.method === 'POST')).toHaveLength(1)
      expect(capture.text()).not.toContain(TOKEN)
    } finally {
      cp.restore()
    }
  })
})
