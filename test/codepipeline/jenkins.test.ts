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

import {CiTargets} from '../../src/codepipeline/actions/ci-server.js'
import {JenkinsHandler, jobPath} from '../../src/codepipeline/actions/jenkins.js'
import {actionSchema, jenkinsSettings} from '../../src/codepipeline/config.js'
import {runWorker} from '../../src/codepipeline/poller.js'
import {type RecordedRequest, type StandIn, standIn} from '../helpers/http.js'
import {captureLogger, commandNames, context, fakeJob, until} from './fixtures.js'

const USER = 'ci-bot'
const TOKEN = '11aa22bb33cc44dd55ee66ff77889900aa'
const EXTERNAL = 'https://jenkins.example.com'

let jenkins: StandIn
/** The fake Jenkins: the queue item turns into build 12 after `queueChecks` looks, the build finishes after `buildChecks`. */
let script: {queueChecks: number; buildChecks: number; result: string; cancelled?: boolean}
let counts: {queue: number; build: number}

function json(res: ServerResponse, value: unknown, status = 200) {
  res.statusCode = status
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify(value))
}

function fakeJenkins(req: RecordedRequest, res: ServerResponse) {
  const path = req.url.split('?')[0]!
  if (req.method === 'POST' && /\/(buildWithParameters|build)$/.test(path)) {
    res.statusCode = 201
    res.setHeader('location', `${EXTERNAL}/queue/item/7/`)
    res.end()
    return
  }
  if (path === '/queue/item/7/api/json') {
    counts.queue++
    if (script.cancelled) {
      json(res, {cancelled: true, executable: null})
      return
    }
    if (counts.queue <= script.queueChecks) {
      json(res, {why: 'Waiting for next available executor', executable: null})
      return
    }
    json(res, {executable: {number: 12, url: `${EXTERNAL}/job/app/12/`}})
    return
  }
  if (path === '/job/app/12/api/json') {
    counts.build++
    const done = counts.build > script.buildChecks
    json(res, {
      number: 12,
      url: `${EXTERNAL}/job/app/12/`,
      fullDisplayName: 'app #12',
      building: !done,
      result: done ? script.result : null,
      timestamp: Date.now() - 30_000,
      estimatedDuration: 60_000,
    })
    return
  }
  res.statusCode = 404
  res.end('not found')
}

function settings(extra: Record<string, unknown> = {}) {
  return jenkinsSettings.parse({url: jenkins.url, checkIntervalSeconds: 0.01, waitSeconds: 0, ...extra})
}
const handler = (extra: Record<string, unknown> = {}, targets?: CiTargets) => new JenkinsHandler({settings: settings(extra), user: USER, token: TOKEN, targets})

beforeAll(async () => {
  jenkins = await standIn(fakeJenkins)
})
afterAll(() => jenkins.close())
beforeEach(() => {
  jenkins.requests.length = 0
  jenkins.respond(fakeJenkins)
  script = {queueChecks: 1, buildChecks: 1, result: 'SUCCESS'}
  counts = {queue: 0, build: 0}
})

describe('jenkins handler', () => {
  it('triggers buildWithParameters with user + API token and the configuration as parameters, then hands back the queue item', async () => {
    const outcome = await handler({parameters: {FROM: 'codepipeline'}}).run(context({configuration: {ProjectName: 'app', Branch: 'main'}}))
    const trigger = jenkins.requests[0]!
    expect(trigger.method).toBe('POST')
    expect(trigger.url).toBe('/job/app/buildWithParameters')
    expect(trigger.headers.authorization).toBe('Basic ' + Buffer.from(`${USER}:${TOKEN}`).toString('base64'))
    expect(Object.fromEntries(new URLSearchParams(trigger.body.toString()))).toEqual({FROM: 'codepipeline', Branch: 'main'})
    expect(outcome).toEqual({
      status: 'inProgress',
      continuationToken: JSON.stringify({queueUrl: `${jenkins.url}/queue/item/7/`, job: 'app'}),
      summary: 'Jenkins: waiting in the queue (Waiting for next available executor)',
      percentComplete: 0,
    })
    // the Location's host (Jenkins' own root URL) never receives the credentials: we follow under the configured URL
    expect(jenkins.requests.map((r) => r.url)).toEqual(['/job/app/buildWithParameters', '/queue/item/7/api/json'])
  })

  it('a job without parameters is started with build; folder jobs map to job/a/job/b', async () => {
    await handler({job: 'app', forwardConfiguration: false}).run(context())
    expect(jenkins.requests[0]!.url).toBe('/job/app/build')
    expect(jobPath('team/svc app')).toBe('job/team/job/svc%20app')
  })

  it('follows queue item → build → SUCCESS within one run when waitSeconds allows', async () => {
    const outcome = await handler({job: 'app', waitSeconds: 5}).run(context())
    expect(outcome).toEqual({status: 'succeeded', summary: 'app #12: SUCCESS', externalExecutionId: `${EXTERNAL}/job/app/12/`, percentComplete: 100})
  })

  it.each(['FAILURE', 'UNSTABLE', 'ABORTED'])('%s → JobFailed with the build URL', async (result) => {
    script.result = result
    const outcome = await handler({job: 'app', waitSeconds: 5}).run(context())
    expect(outcome).toEqual({status: 'failed', type: 'JobFailed', message: `app #12: ${result}`, externalExecutionId: `${EXTERNAL}/job/app/12/`})
  })

  it('a build cancelled in the queue is JobFailed', async () => {
    script.cancelled = true
    const outcome = await handler({job: 'app', waitSeconds: 5}).run(context())
    expect(outcome).toMatchObject({status: 'failed', type: 'JobFailed', message: 'the Jenkins build was cancelled while queued'})
  })

  it('no job name anywhere: ConfigurationError', async () => {
    await expect(handler().run(context())).rejects.toMatchObject({type: 'ConfigurationError'})
    expect(jenkins.requests).toHaveLength(0)
  })

  // Issue 11's contract: Jenkins refusing the token (401) or unreachable is Jenkins being down, not the
  // job failing: the job is handed back with a continuation token, and fails (PermissionError,
  // SystemUnavailable) only once Jenkins has been down for failAfterSeconds. A 404 is still the job's.
  it('401 → handed back, then PermissionError; 404 → ConfigurationError; unreachable → handed back, then SystemUnavailable', async () => {
    jenkins.respond((_req, res) => {res.statusCode = 401; res.end()})
    const held = await handler({job: 'app'}).run(context())
    expect(held).toMatchObject({status: 'inProgress', heldFor: `jenkins:127.0.0.1:${jenkins.port}`, summary: expect.stringMatching(/^Jenkins refused the credentials: .* answered 401.*; the build starts once it is back$/)})
    expect(JSON.parse((held as {continuationToken: string}).continuationToken)).toEqual({downSince: expect.any(Number)})
    await expect(handler({job: 'app', failAfterSeconds: 0}).run(context())).rejects.toMatchObject({type: 'PermissionError'})
    jenkins.respond((_req, res) => {res.statusCode = 404; res.end()})
    await expect(handler({job: 'app'}).run(context())).rejects.toMatchObject({type: 'ConfigurationError'})
    const down = (extra: Record<string, unknown>) =>
      new JenkinsHandler({settings: jenkinsSettings.parse({url: 'http://127.0.0.1:9', job: 'app', requestTimeoutSeconds: 2, waitSeconds: 0, ...extra}), user: USER, token: TOKEN})
    expect(await down({}).run(context())).toMatchObject({status: 'inProgress', heldFor: 'jenkins:127.0.0.1:9', summary: expect.stringMatching(/connection refused/)})
    await expect(down({failAfterSeconds: 0}).run(context())).rejects.toMatchObject({type: 'SystemUnavailable'})
  })

  it('a stopping worker gets a continuation token at once instead of waiting', async () => {
    script.queueChecks = 0
    script.buildChecks = 1000
    const stop = new AbortController()
    const running = handler({job: 'app', waitSeconds: 60, checkIntervalSeconds: 30}).run(context({stopping: stop.signal}))
    await until(() => counts.build >= 1, 5000, 'build check')
    stop.abort()
    const outcome = await running
    expect(outcome).toMatchObject({status: 'inProgress', continuationToken: JSON.stringify({buildUrl: `${jenkins.url}/job/app/12/`})})
    expect(outcome).toMatchObject({percentComplete: expect.any(Number), externalExecutionId: `${EXTERNAL}/job/app/12/`})
  })

  it('Jenkins down while resuming: keeps the token with the time it went down, then SystemUnavailable once down for failAfterSeconds', async () => {
    jenkins.respond((_req, res) => {res.statusCode = 503; res.end()})
    const token = JSON.stringify({buildUrl: `${jenkins.url}/job/app/12/`})
    const first = await handler().run(context({continuationToken: token}))
    expect(first).toMatchObject({status: 'inProgress', heldFor: `jenkins:127.0.0.1:${jenkins.port}`})
    const kept = JSON.parse((first as {continuationToken: string}).continuationToken)
    expect(kept).toEqual({buildUrl: `${jenkins.url}/job/app/12/`, downSince: expect.any(Number)})
    // The next run (a new CodePipeline job with that token) keeps the time it first went down.
    const second = await handler().run(context({continuationToken: JSON.stringify(kept)}))
    expect(JSON.parse((second as {continuationToken: string}).continuationToken)).toEqual(kept)
    const last = JSON.stringify({buildUrl: `${jenkins.url}/job/app/12/`, downSince: Date.now() - 601_000})
    await expect(handler().run(context({continuationToken: last}))).rejects.toMatchObject({type: 'SystemUnavailable', message: expect.stringMatching(/answered 503.*down for 60\d s/)})
    // Back: the build is followed from the token, no new build.
    jenkins.respond(fakeJenkins)
    script.buildChecks = 0
    expect(await handler().run(context({continuationToken: JSON.stringify(kept)}))).toMatchObject({status: 'succeeded'})
    expect(jenkins.requests.filter((r) => r.method === 'POST')).toHaveLength(0)
  })

  it('flapping: jobs sharing a server wait for its gate (no request while it is closed) and start their builds once it is back', async () => {
    let down = true
    jenkins.respond((req, res) => {
      if (down) {
        res.statusCode = 502
        res.end()
        return
      }
      fakeJenkins(req, res)
    })
    const targets = new CiTargets()
    try {
      const first = await handler({job: 'app'}, targets).run(context({id: 'flap-1'}))
      expect(first).toMatchObject({status: 'inProgress', heldFor: `jenkins:127.0.0.1:${jenkins.port}`})
      const sent = jenkins.requests.length
      // The gate is closed: another job hands back at once, without a request.
      expect(await handler({job: 'app'}, targets).run(context({id: 'flap-2'}))).toMatchObject({status: 'inProgress', heldFor: expect.any(String)})
      expect(jenkins.requests).toHaveLength(sent)
      // A job that may wait: Jenkins comes back while it waits, and its build is started and followed.
      setTimeout(() => (down = false), 300)
      const third = await handler({job: 'app', waitSeconds: 10}, targets).run(context({id: 'flap-3'}))
      expect(third).toMatchObject({status: 'succeeded', summary: 'app #12: SUCCESS'})
      expect(jenkins.requests.filter((r) => r.method === 'POST' && r.url === '/job/app/build')).toHaveLength(2) // one refused (502), one started
    } finally {
      await targets.close()
    }
  })

  it('a hanging Jenkins (no answer within requestTimeoutSeconds) holds the job like a down one', async () => {
    jenkins.respond(() => undefined) // never answers
    const outcome = await handler({job: 'app', requestTimeoutSeconds: 0.3}).run(context())
    expect(outcome).toMatchObject({status: 'inProgress', heldFor: expect.any(String), summary: expect.stringMatching(/timed out/)})
  })

  it('a queue item Jenkins has forgotten (404) is JobFailed, not a configuration problem', async () => {
    const token = JSON.stringify({queueUrl: `${jenkins.url}/queue/item/999/`, job: 'app'})
    await expect(handler().run(context({continuationToken: token}))).rejects.toMatchObject({type: 'JobFailed', message: expect.stringMatching(/no longer knows queue item/)})
  })

  it('a token pointing at another host is refused without sending the credentials there', async () => {
    const elsewhere = await standIn()
    try {
      const token = JSON.stringify({buildUrl: `${elsewhere.url}/job/app/12/`})
      await expect(handler().run(context({continuationToken: token}))).rejects.toMatchObject({type: 'JobFailed'})
      expect(elsewhere.requests).toHaveLength(0)
      await expect(handler().run(context({continuationToken: 'garbage'}))).rejects.toMatchObject({type: 'JobFailed'})
    } finally {
      await elsewhere.close()
    }
  })

  it('a long build round-trips through continuation tokens across CodePipeline jobs', async () => {
    script = {queueChecks: 1, buildChecks: 2, result: 'SUCCESS'}
    const cp = mockClient(CodePipelineClient)
    try {
      let n = 0
      let pendingToken: string | undefined
      const first = fakeJob({id: 'cp-1', configuration: {ProjectName: 'app'}})
      cp.on(AcknowledgeJobCommand).resolves({status: 'InProgress'})
      cp.on(PutJobFailureResultCommand).resolves({})
      cp.on(PutJobSuccessResultCommand).callsFake((input) => {
        pendingToken = input.continuationToken
        return {}
      })
      // CodePipeline offers the job again (new job id) with the token the last result carried.
      cp.on(PollForJobsCommand).callsFake(() => {
        if (n === 0) return (n++, {jobs: [first]})
        if (pendingToken) {
          const token = pendingToken
          pendingToken = undefined
          return {jobs: [fakeJob({id: `cp-${++n}`, configuration: {ProjectName: 'app'}, continuationToken: token})]}
        }
        return {jobs: []}
      })
      const capture = captureLogger()
      const stop = new AbortController()
      const action = actionSchema.parse({category: 'Build', provider: 'cistern-jenkins', version: '1', handler: 'jenkins', settings: {url: jenkins.url, waitSeconds: 0}})
      const worker = runWorker({
        client: new CodePipelineClient({region: 'eu-west-1'}),
        actions: [{config: action, handler: handler()}],
        concurrency: 2,
        pollInterval: {min: 0.005, max: 0.02},
        stopTimeout: 1,
        logger: capture.logger,
        signal: stop.signal,
      })
      await until(() => cp.commandCalls(PutJobSuccessResultCommand).some((call) => !call.args[0].input.continuationToken), 10_000, 'final success')
      stop.abort()
      const summary = await worker

      const results = cp.commandCalls(PutJobSuccessResultCommand).map((call) => call.args[0].input)
      expect(results.map((r) => [r.jobId, r.continuationToken ?? null])).toEqual([
        ['cp-1', JSON.stringify({queueUrl: `${jenkins.url}/queue/item/7/`, job: 'app'})],
        ['cp-2', JSON.stringify({buildUrl: `${jenkins.url}/job/app/12/`})],
        ['cp-3', JSON.stringify({buildUrl: `${jenkins.url}/job/app/12/`})],
        ['cp-4', null],
      ])
      expect(results[3]!.executionDetails).toEqual({summary: 'app #12: SUCCESS', externalExecutionId: `${EXTERNAL}/job/app/12/`, percentComplete: 100})
      expect(results[1]!.executionDetails).toMatchObject({summary: 'app #12: building', externalExecutionId: `${EXTERNAL}/job/app/12/`})
      // one trigger only: a continuation resumes, it never starts another build
      expect(jenkins.requests.filter((r) => r.method === 'POST')).toHaveLength(1)
      expect(summary).toMatchObject({continued: 3, succeeded: 1, failed: 0})
      expect(commandNames(cp).filter((name) => name !== 'PollForJobs')).toEqual([
        'AcknowledgeJob', 'PutJobSuccessResult', 'AcknowledgeJob', 'PutJobSuccessResult', 'AcknowledgeJob', 'PutJobSuccessResult', 'AcknowledgeJob', 'PutJobSuccessResult',
      ])
      expect(capture.text()).not.toContain(TOKEN)
      expect(capture.text()).not.toContain(Buffer.from(`${USER}:${TOKEN}`).toString('base64'))
    } finally {
      cp.restore()
    }
  })
})
