import {
  AcknowledgeJobCommand,
  CodePipelineClient,
  type Job,
  PollForJobsCommand,
  type PollForJobsInput,
  PutJobFailureResultCommand,
  PutJobSuccessResultCommand,
} from '@aws-sdk/client-codepipeline'
import {mockClient} from 'aws-sdk-client-mock'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {actionSchema} from '../../src/codepipeline/config.js'
import type {ActionHandler} from '../../src/codepipeline/job.js'
import {type WorkerAction, runWorker} from '../../src/codepipeline/poller.js'
import {JobSlots} from '../../src/codepipeline/slots.js'
import {TargetGates} from '../../src/core/delivery.js'
import {ConfigError} from '../../src/core/errors.js'
import {captureLogger, commandNames, delay, fakeJob, until} from './fixtures.js'

const cp = mockClient(CodePipelineClient)
const client = new CodePipelineClient({region: 'eu-west-1'})

function action(provider: string, concurrency: number, handler: ActionHandler, extra: Record<string, unknown> = {}): WorkerAction {
  const config = actionSchema.parse({category: 'Build', provider, version: '1', handler: 'command', settings: {job: 'x'}, concurrency, ...extra})
  return {config, handler}
}

const succeed: ActionHandler = {run: async () => ({status: 'succeeded', summary: 'ok'})}

beforeEach(() => {
  cp.reset()
  cp.on(AcknowledgeJobCommand).resolves({status: 'InProgress'})
  cp.on(PutJobSuccessResultCommand).resolves({})
  cp.on(PutJobFailureResultCommand).resolves({})
})
afterEach(() => cp.reset())

describe('runWorker', () => {
  it('--once: poll (maxBatchSize = free slots, owner Custom, queryParam) → ack → success, exact sequence', async () => {
    const job = fakeJob()
    cp.on(PollForJobsCommand).resolvesOnce({jobs: [job]}).resolves({jobs: []})
    const {logger} = captureLogger()
    const summary = await runWorker({
      client,
      actions: [action('cistern-test', 3, succeed, {queryParam: {Team: 'blue'}})],
      concurrency: 2,
      pollInterval: {min: 0.01, max: 0.05},
      stopTimeout: 1,
      logger,
      once: true,
    })
    expect(commandNames(cp)).toEqual(['PollForJobs', 'AcknowledgeJob', 'PutJobSuccessResult'])
    expect(cp.commandCalls(PollForJobsCommand)[0]!.args[0].input).toEqual({
      actionTypeId: {category: 'Build', owner: 'Custom', provider: 'cistern-test', version: '1'},
      maxBatchSize: 2,
      queryParam: {Team: 'blue'},
    })
    expect(cp.commandCalls(PutJobSuccessResultCommand)[0]!.args[0].input).toEqual({jobId: job.id, executionDetails: {summary: 'ok'}})
    expect(summary).toMatchObject({polls: 1, jobs: 1, succeeded: 1, failed: 0, pollErrors: 0, stopped: false})
  })

  it('polls again at once while jobs come back, then backs off when none do', async () => {
    let served = 0
    const stop = new AbortController()
    const times: number[] = []
    cp.on(PollForJobsCommand).callsFake(() => {
      times.push(Date.now())
      return served < 3 ? {jobs: [fakeJob({id: `j${++served}`})]} : {jobs: []}
    })
    const {logger} = captureLogger()
    const running = runWorker({
      client,
      actions: [action('a', 1, succeed)],
      concurrency: 1,
      pollInterval: {min: 0.2, max: 1},
      stopTimeout: 1,
      logger,
      signal: stop.signal,
      random: () => 0.999,
    })
    await until(() => times.length >= 5, 10_000, '5 polls')
    stop.abort()
    const summary = await running
    expect(summary.succeeded).toBe(3)
    // After the third job, the empty polls wait (min, then doubled): never a hot loop.
    expect(times[4]! - times[3]!).toBeGreaterThanOrEqual(190)
    expect(summary.stopped).toBe(true)
  })

  it('ThrottlingException: backs off (jittered, capped at max) instead of re-polling at once', async () => {
    const times: number[] = []
    cp.on(PollForJobsCommand).callsFake(() => {
      times.push(Date.now())
      throw Object.assign(new Error('Rate exceeded'), {name: 'ThrottlingException', $metadata: {}})
    })
    const stop = new AbortController()
    const capture = captureLogger()
    const running = runWorker({
      client,
      actions: [action('a', 1, succeed)],
      concurrency: 1,
      pollInterval: {min: 0, max: 0.4},
      stopTimeout: 1,
      logger: capture.logger,
      signal: stop.signal,
      random: () => 0,
    })
    const started = Date.now()
    await until(() => times.length >= 3, 10_000, 'three throttled polls')
    stop.abort()
    const summary = await running
    const elapsed = Date.now() - started
    // At least 200 ms (half of max, the jitter floor) between throttled polls: never a hot loop.
    expect(times.length).toBeLessThanOrEqual(Math.floor(elapsed / 190) + 1)
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(190)
    expect(summary.throttled).toBe(times.length)
    // One warn line per throttled poll, from the core poll loop (issue 13: its back-off replaced the worker's own).
    const throttledLines = capture.lines().filter((line) => line.level === 'warn' && String(line.msg).startsWith('poll failed; retrying in') && String(line.error).includes('AWS throttled CodePipeline PollForJobs'))
    expect(throttledLines).toHaveLength(times.length)
    expect(commandNames(cp).every((name) => name === 'PollForJobs')).toBe(true)
  })

  it('recovers after throttling: the next successful poll takes jobs', async () => {
    let calls = 0
    cp.on(PollForJobsCommand).callsFake(() => {
      calls++
      if (calls === 1) throw Object.assign(new Error('slow down'), {name: 'ThrottlingException'})
      return calls === 2 ? {jobs: [fakeJob({id: 'after-throttle'})]} : {jobs: []}
    })
    const stop = new AbortController()
    const running = runWorker({
      client,
      actions: [action('a', 1, succeed)],
      concurrency: 1,
      pollInterval: {min: 0.01, max: 0.05},
      stopTimeout: 1,
      logger: captureLogger().logger,
      signal: stop.signal,
    })
    await until(() => cp.commandCalls(PutJobSuccessResultCommand).length === 1, 10_000, 'success after throttle')
    stop.abort()
    const summary = await running
    expect(summary).toMatchObject({throttled: 1, succeeded: 1})
    expect(commandNames(cp).slice(0, 4)).toEqual(['PollForJobs', 'PollForJobs', 'AcknowledgeJob', 'PutJobSuccessResult'])
  })

  it('concurrency: never more jobs than the global and per-action limits, never asks for more than free slots', async () => {
    const limits = {a: 2, b: 3}
    const global = 3
    const running = {a: 0, b: 0, all: 0}
    const max = {a: 0, b: 0, all: 0}
    const total = 24
    let issued = 0
    const handler = (name: 'a' | 'b'): ActionHandler => ({
      async run() {
        running[name]++
        running.all++
        max[name] = Math.max(max[name], running[name])
        max.all = Math.max(max.all, running.all)
        await delay(5 + Math.floor(Math.random() * 15))
        running[name]--
        running.all--
        return {status: 'succeeded'}
      },
    })
    const asked: Array<{provider: string; max: number; runningAtPoll: number}> = []
    cp.on(PollForJobsCommand).callsFake((input: PollForJobsInput) => {
      const provider = input.actionTypeId!.provider! as 'a' | 'b'
      asked.push({provider, max: input.maxBatchSize!, runningAtPoll: running.all})
      const jobs: Job[] = []
      // Hand out one MORE job than asked for: the worker must leave the extra one alone.
      for (let i = 0; i < input.maxBatchSize! + 1 && issued < total; i++) jobs.push(fakeJob({id: `${provider}-${++issued}`}))
      return {jobs}
    })
    const stop = new AbortController()
    const capture = captureLogger()
    const worker = runWorker({
      client,
      actions: [action('a', limits.a, handler('a')), action('b', limits.b, handler('b'))],
      concurrency: global,
      pollInterval: {min: 0.005, max: 0.02},
      stopTimeout: 1,
      logger: capture.logger,
      signal: stop.signal,
    })
    await until(() => issued >= total && running.all === 0 && asked.length > 0, 20_000, 'all jobs')
    await delay(50)
    stop.abort()
    const summary = await worker
    expect(max.all).toBeLessThanOrEqual(global)
    expect(max.a).toBeLessThanOrEqual(limits.a)
    expect(max.b).toBeLessThanOrEqual(limits.b)
    expect(max.all).toBeGreaterThan(1) // it did run jobs in parallel
    for (const poll of asked) {
      expect(poll.max).toBeGreaterThanOrEqual(1)
      expect(poll.max).toBeLessThanOrEqual(Math.min(limits[poll.provider as 'a' | 'b'], global - poll.runningAtPoll))
    }
    const acked = cp.commandCalls(AcknowledgeJobCommand).map((call) => call.args[0].input.jobId)
    const reported = cp.commandCalls(PutJobSuccessResultCommand).map((call) => call.args[0].input.jobId)
    expect(new Set(acked).size).toBe(acked.length)
    expect(reported.sort()).toEqual([...acked].sort())
    expect(acked.length).toBe(summary.jobs)
    expect(acked.length).toBeLessThan(total) // the extras were never acknowledged
    expect(capture.lines().some((line) => line.msg === 'poll returned more jobs than asked for: leaving the extra ones')).toBe(true)
  })

  it('with every slot busy it does not poll until one frees', async () => {
    let release!: () => void
    const blocked = new Promise<void>((resolve) => (release = resolve))
    cp.on(PollForJobsCommand).resolvesOnce({jobs: [fakeJob({id: 'long'})]}).resolves({jobs: []})
    const stop = new AbortController()
    const worker = runWorker({
      client,
      actions: [action('a', 1, {run: async () => (await blocked, {status: 'succeeded'})})],
      concurrency: 1,
      pollInterval: {min: 0.01, max: 5},
      stopTimeout: 1,
      logger: captureLogger().logger,
      signal: stop.signal,
    })
    await until(() => cp.commandCalls(AcknowledgeJobCommand).length === 1, 5000, 'ack')
    await delay(150)
    expect(cp.commandCalls(PollForJobsCommand)).toHaveLength(1)
    release()
    await until(() => cp.commandCalls(PollForJobsCommand).length >= 2, 5000, 'poll after release')
    stop.abort()
    await worker
  })

  it('stop: no more polls; a handler hands back a continuation token; every job reported', async () => {
    cp.on(PollForJobsCommand).resolvesOnce({jobs: [fakeJob({id: 'ext'})]}).resolves({jobs: []})
    const stop = new AbortController()
    const handler: ActionHandler = {
      run: (ctx) =>
        new Promise((resolve) => {
          ctx.stopping.addEventListener('abort', () => resolve({status: 'inProgress', continuationToken: '{"buildUrl":"b"}', summary: 'still building'}))
        }),
    }
    const worker = runWorker({
      client,
      actions: [action('a', 1, handler)],
      concurrency: 1,
      pollInterval: {min: 0.01, max: 0.05},
      stopTimeout: 5,
      logger: captureLogger().logger,
      signal: stop.signal,
    })
    await until(() => cp.commandCalls(AcknowledgeJobCommand).length === 1, 5000, 'ack')
    const polls = cp.commandCalls(PollForJobsCommand).length
    stop.abort()
    const summary = await worker
    expect(summary).toMatchObject({continued: 1, stopped: true})
    expect(cp.commandCalls(PollForJobsCommand)).toHaveLength(polls)
    expect(cp.commandCalls(PutJobSuccessResultCommand)[0]!.args[0].input).toEqual({
      jobId: 'ext',
      continuationToken: '{"buildUrl":"b"}',
      executionDetails: {summary: 'still building'},
    })
  })

  it('ActionTypeNotFoundException is a config error (exit 2), after reporting jobs already taken', async () => {
    cp.on(PollForJobsCommand).rejects(Object.assign(new Error('no such action type'), {name: 'ActionTypeNotFoundException'}))
    await expect(
      runWorker({client, actions: [action('a', 1, succeed)], concurrency: 1, pollInterval: {min: 0, max: 0.01}, stopTimeout: 1, logger: captureLogger().logger}),
    ).rejects.toBeInstanceOf(ConfigError)
  })

  it('bad credentials before any successful poll stop the worker with the fix', async () => {
    cp.on(PollForJobsCommand).rejects(Object.assign(new Error('The security token included in the request is invalid.'), {name: 'UnrecognizedClientException'}))
    await expect(
      runWorker({client, actions: [action('a', 1, succeed)], concurrency: 1, pollInterval: {min: 0, max: 0.01}, stopTimeout: 1, logger: captureLogger().logger}),
    ).rejects.toThrow(/UnrecognizedClientException.*/)
  })

  // Issue 11's contract: CodePipeline unreachable is its target being down; a one-shot run retries
  // until it has been down for giveUpAfterMs, then ends with exit 3 (it was one failed poll, exit 1).
  it('--once with a poll that keeps failing retries with back-off, gives CodePipeline up after giveUpAfterMs: exit 3', async () => {
    cp.on(PollForJobsCommand).rejects(Object.assign(new Error('socket hang up'), {name: 'TimeoutError'}))
    const summary = await runWorker({
      client,
      actions: [action('a', 1, succeed)],
      concurrency: 1,
      pollInterval: {min: 0, max: 0.02},
      stopTimeout: 1,
      logger: captureLogger().logger,
      once: true,
      giveUpAfterMs: 150,
    })
    expect(summary).toMatchObject({jobs: 0, exitCode: 3})
    expect(summary.pollErrors).toBeGreaterThanOrEqual(2)
    // Backed off (10–20 ms a try at this max): never a hot loop.
    expect(summary.pollErrors).toBeLessThanOrEqual(20)
    expect(summary.problems[0]).toMatch(/^giving up polling: cannot reach CodePipeline .*PollForJobs \(timed out: socket hang up\)/)
  })
})

describe('runWorker --once (docs/delivery.md: one-shot runs)', () => {
  const once = (extra: Partial<Parameters<typeof runWorker>[0]> = {}) =>
    runWorker({
      client,
      actions: [action('a', 2, succeed)],
      concurrency: 2,
      pollInterval: {min: 0, max: 0.02},
      stopTimeout: 1,
      logger: captureLogger().logger,
      once: true,
      retryBackoff: {baseMs: 2, maxMs: 10},
      ...extra,
    })

  it('takes every job waiting now: polls again while a poll comes back full, stops at the first that does not', async () => {
    let left = 5
    cp.on(PollForJobsCommand).callsFake((input: PollForJobsInput) => {
      const jobs: Job[] = []
      while (jobs.length < input.maxBatchSize! && left > 0) jobs.push(fakeJob({id: `w-${left--}`}))
      return {jobs}
    })
    const summary = await once()
    // 2 + 2 + 1 (fewer than asked: nothing more waits)
    expect(summary).toMatchObject({polls: 3, jobs: 5, succeeded: 5, exitCode: 0, problems: [], stoppedBy: 'empty'})
  })

  it('stops polling at its deadline, finishes the jobs taken, says more may be waiting: exit 1', async () => {
    cp.on(PollForJobsCommand).callsFake((input: PollForJobsInput) => ({jobs: Array.from({length: input.maxBatchSize!}, () => fakeJob())}))
    const slow: ActionHandler = {run: async () => (await delay(40), {status: 'succeeded'})}
    const summary = await once({actions: [action('a', 2, slow)], deadlineMs: 150})
    expect(summary.stoppedBy).toBe('deadline')
    expect(summary.succeeded).toBe(summary.jobs)
    expect(cp.commandCalls(PutJobSuccessResultCommand)).toHaveLength(summary.jobs)
    expect(summary.exitCode).toBe(1)
    expect(summary.problems).toEqual(['stopped polling at the deadline (0.2s): more jobs of Custom/Build/a/1 may be waiting'])
  })

  it('CodePipeline throttling throughout: backed off, given up after giveUpAfterMs, exit 3 naming it', async () => {
    cp.on(PollForJobsCommand).rejects(Object.assign(new Error('Rate exceeded'), {name: 'ThrottlingException'}))
    const summary = await once({giveUpAfterMs: 100})
    expect(summary).toMatchObject({jobs: 0, exitCode: 3})
    expect(summary.throttled).toBe(summary.pollErrors)
    expect(summary.problems).toEqual([expect.stringMatching(/^giving up polling: AWS throttled CodePipeline PollForJobs on Custom\/Build\/a\/1 \(ThrottlingException\)/)])
    expect(summary.targetsDown).toEqual([expect.objectContaining({target: 'codepipeline', givenUp: true})])
  })

  it('a result CodePipeline keeps throttling is given up at the run deadline (at least giveUpAfterMs after it was ready): exit 1 naming the job', async () => {
    cp.on(PollForJobsCommand).resolvesOnce({jobs: [fakeJob({id: 'stuck'})]}).resolves({jobs: []})
    cp.on(PutJobSuccessResultCommand).rejects(Object.assign(new Error('Rate exceeded'), {name: 'ThrottlingException'}))
    const summary = await once({deadlineMs: 50, giveUpAfterMs: 150})
    expect(summary).toMatchObject({unreported: 1, unreportedJobs: ['stuck'], exitCode: 1})
    expect(summary.problems).toEqual(['1 job result not delivered to CodePipeline: stuck (CodePipeline times those jobs out)'])
    expect(cp.commandCalls(PutJobSuccessResultCommand).length).toBeGreaterThan(2)
  })

  it('a job it handed back, offered again at once, is taken once more, then the pass ends (no loop until the deadline)', async () => {
    let offered = 0
    let pending: string | undefined
    cp.on(PollForJobsCommand).callsFake(() => {
      if (offered === 0) return {jobs: [fakeJob({id: `again-${++offered}`})]}
      if (!pending) return {jobs: []}
      const token = pending
      pending = undefined
      return {jobs: [fakeJob({id: `again-${++offered}`, continuationToken: token})]}
    })
    cp.on(PutJobSuccessResultCommand).callsFake((input: {continuationToken?: string}) => ((pending = input.continuationToken), {}))
    const building: ActionHandler = {run: async () => ({status: 'inProgress', continuationToken: '{"buildUrl":"b"}', summary: 'building'})}
    const summary = await once({actions: [action('a', 1, building)], concurrency: 1})
    expect(summary).toMatchObject({jobs: 2, continued: 2, exitCode: 0, stoppedBy: 'empty'})
    expect(cp.commandCalls(PollForJobsCommand)).toHaveLength(2)
  })

  it('a CI server down: its jobs are handed back, the run ends with exit 3 naming it', async () => {
    cp.on(PollForJobsCommand).resolvesOnce({jobs: [fakeJob({id: 'waits'})]}).resolves({jobs: []})
    const gates = new TargetGates({once: true, giveUpAfterMs: 30_000})
    const down: ActionHandler = {
      async run() {
        gates.failed('jenkins:ci.example.com', 'jenkins:ci.example.com answered 503')
        return {status: 'inProgress', continuationToken: '{"downSince":1}', summary: 'Jenkins is down', heldFor: 'jenkins:ci.example.com'}
      },
    }
    const summary = await once({actions: [action('a', 1, down)], gates})
    expect(summary).toMatchObject({held: 1, continued: 0, exitCode: 3})
    expect(summary.problems).toEqual(['jenkins:ci.example.com is down: jenkins:ci.example.com answered 503 (its jobs were handed back to CodePipeline with a continuation token)'])
    expect(cp.commandCalls(PutJobSuccessResultCommand)[0]!.args[0].input).toMatchObject({jobId: 'waits', continuationToken: '{"downSince":1}'})
  })
})

describe('runWorker in a loop', () => {
  it('credentials refused after polls succeeded (a rotated key): backs off and keeps polling, never stops', async () => {
    let calls = 0
    cp.on(PollForJobsCommand).callsFake(() => {
      calls++
      if (calls === 1) return {jobs: []}
      if (calls <= 3) throw Object.assign(new Error('The security token included in the request is expired'), {name: 'ExpiredTokenException'})
      return {jobs: calls === 4 ? [fakeJob({id: 'after-rotation'})] : []}
    })
    const stop = new AbortController()
    const running = runWorker({
      client,
      actions: [action('a', 1, succeed)],
      concurrency: 1,
      pollInterval: {min: 0.01, max: 0.05},
      stopTimeout: 1,
      logger: captureLogger().logger,
      signal: stop.signal,
    })
    await until(() => cp.commandCalls(PutJobSuccessResultCommand).length === 1, 10_000, 'a job after the rotation')
    stop.abort()
    const summary = await running
    expect(summary).toMatchObject({pollErrors: 2, succeeded: 1, exitCode: 0, stoppedBy: 'signal'})
  })
})

describe('JobSlots', () => {
  it('free() is the smaller of the global and the per-action room', async () => {
    const slots = new JobSlots(3, new Map([['a', 2], ['b', 5]]))
    expect(slots.free('a')).toBe(2)
    expect(slots.free('b')).toBe(3)
    const release: Array<() => void> = []
    const job = () => new Promise<void>((resolve) => release.push(resolve))
    const running = [slots.run('a', job), slots.run('a', job)]
    expect(slots.free('a')).toBe(0)
    expect(slots.free('b')).toBe(1)
    await expect(slots.run('a', job)).rejects.toThrow(/no free slot/)
    release.shift()?.()
    await running[0]
    await until(() => slots.free('a') === 1, 1000, 'the slot to free')
    expect(slots.free('a')).toBe(1)
    release.shift()?.()
    await running[1]
  })
})
