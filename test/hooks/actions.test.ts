import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'

import {afterAll, describe, expect, it} from 'vitest'

import {TargetGates, TargetJudge} from '../../src/core/delivery.js'
import {openQueue} from '../../src/core/queue/index.js'
import {ActionRunner} from '../../src/hooks/actions.js'
import type {Execution, Task} from '../../src/hooks/model.js'
import {standIn} from '../helpers/http.js'
import {decodeMessage, replayBytes} from '../../src/core/webhook-message.js'
import {tempDir} from '../helpers/tmp.js'
import {startService, until} from './helpers.js'

const dir = tempDir('cistern-hooks-actions-')

describe('queue action', () => {
  it('puts the execution, the raw body or a spigot message on a queue', async () => {
    const queueUrl = (name: string) => `sqlite:${join(dir, 'queues.db')}#${name}`
    const service = await startService(dir)
    const body = '{"repository":{"full_name":"o/r"},"ref":"refs/heads/main"}'
    const headers = {'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': 'd-1', 'user-agent': 'GitHub-Hookshot/1', 'x-other': 'dropped'}
    const tasks: Record<string, string> = {}
    for (const format of ['execution', 'body', 'spigot']) {
      const created = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'queue', url: queueUrl(format), format}}})
      expect(created.status).toBe(201)
      tasks[format] = created.body.uuid
      expect((await fetch(`${service.url}/webhook/${created.body.uuid}?x=1`, {method: 'POST', headers, body})).status).toBe(202)
    }
    const receiveOne = async (format: string) => {
      const queue = await openQueue(queueUrl(format))
      afterAll(() => queue.close())
      return until(async () => (await queue.receive({maxMessages: 1}))[0], 5000, `a message on ${format}`)
    }

    const execution = JSON.parse((await receiveOne('execution')).body)
    expect(execution).toMatchObject({task_uuid: tasks.execution, type: 'webhook', request: {method: 'POST', query: {x: '1'}}})
    expect(Buffer.from(execution.request.raw_body, 'base64').toString()).toBe(body)
    expect(execution.request.headers['x-github-event']).toBe('push')

    expect((await receiveOne('body')).body).toBe(body)

    const spigot = decodeMessage((await receiveOne('spigot')).body)
    expect(spigot.body).toEqual(JSON.parse(body))
    expect(spigot.headers).toEqual({'X-GitHub-Event': 'push', 'X-GitHub-Delivery': 'd-1', 'Content-Type': 'application/json', 'User-Agent': 'GitHub-Hookshot/1'})
    expect(replayBytes(spigot).toString()).toBe(body)

    const done = await until(async () => {
      const [e] = (await service.api('GET', `/task/${tasks.execution}/execution`)).body
      return e?.status === 'DONE' ? e : undefined
    })
    expect(done.result.message_id).toEqual(expect.any(String))
  })

  it('retries when the queue cannot be opened, then gives up with the reason', async () => {
    const service = await startService(dir, {retryMax: 2})
    const created = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'queue', url: 'nats://nowhere/q'}}})
    await fetch(`${service.url}/webhook/${created.body.uuid}`, {method: 'POST', body: 'x'})
    const done = await until(async () => {
      const [e] = (await service.api('GET', `/task/${created.body.uuid}/execution`)).body
      return e?.status === 'DONE' ? e : undefined
    })
    expect(done).toMatchObject({nb_errors: 2})
    expect(done.last_error).toMatch(/unknown queue URL/)
  })
})

describe('job action', () => {
  it('runs a job of jobs.yml with the body, and retries a failing one', async () => {
    const out = join(dir, 'job-out.json')
    const script = `
      const fs = require('node:fs')
      const [out, mode] = process.argv.slice(-2)
      fs.writeFileSync(out, JSON.stringify({
        task: process.env.CISTERN_HOOKS_TASK, execution: process.env.CISTERN_HOOKS_EXECUTION,
        method: process.env.CISTERN_HOOKS_METHOD, body: fs.readFileSync(process.env.CISTERN_HOOKS_BODY_FILE, 'utf8'),
      }))
      console.log('job ran')
      process.exit(mode === 'fail' ? 3 : 0)`
    const jobsFile = join(dir, 'jobs.yml')
    writeFileSync(jobsFile, `deploy:\n  argv: [${JSON.stringify(process.execPath)}, "-e", ${JSON.stringify(script)}]\n  timeout: 20\n`)
    const service = await startService(dir, {jobsFile, retryMax: 2})
    const ok = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'job', name: 'deploy', parameters: [out, 'ok']}}})
    expect(ok.status).toBe(201)
    const intake = (await (await fetch(`${service.url}/webhook/${ok.body.uuid}`, {method: 'POST', body: 'deploy main'})).json()) as {execution: number}
    const done = await until(async () => {
      const e = (await service.api('GET', `/task/${ok.body.uuid}/execution/${intake.execution}`)).body
      return e.status === 'DONE' ? e : undefined
    }, 15_000)
    expect(done).toMatchObject({nb_errors: 0, result: {exit_code: 0, output: 'job ran'}})
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({task: ok.body.uuid, execution: String(intake.execution), method: 'POST', body: 'deploy main'})

    const failing = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'job', name: 'deploy', parameters: [out, 'fail']}}})
    await fetch(`${service.url}/webhook/${failing.body.uuid}`, {method: 'POST', body: 'x'})
    const failed = await until(async () => {
      const [e] = (await service.api('GET', `/task/${failing.body.uuid}/execution`)).body
      return e?.status === 'DONE' ? e : undefined
    }, 15_000)
    expect(failed).toMatchObject({nb_errors: 2, result: {exit_code: 3}})
    expect(failed.last_error).toMatch(/job "deploy" exited with 3/)

    const unknown = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'job', name: 'nope'}}})
    await fetch(`${service.url}/webhook/${unknown.body.uuid}`, {method: 'POST', body: 'x'})
    const missing = await until(async () => {
      const [e] = (await service.api('GET', `/task/${unknown.body.uuid}/execution`)).body
      return e?.status === 'DONE' ? e : undefined
    }, 15_000)
    expect(missing.last_error).toMatch(/job "nope" is not in the jobs file \(have: deploy\)/)
  })
})

describe('job action with the jobs: table of cistern.yml', () => {
  it('uses the jobs given to the service when there is no jobs file', async () => {
    const service = await startService(dir, {jobs: new Map([['hello', {name: 'hello', argv: [process.execPath, '-e', 'console.log("hello from cistern.yml")']}]])})
    const task = await service.api('POST', '/task', {type: 'webhook', config: {action: {type: 'job', name: 'hello'}}})
    await fetch(`${service.url}/webhook/${task.body.uuid}`, {method: 'POST', body: 'x'})
    const done = await until(async () => {
      const [e] = (await service.api('GET', `/task/${task.body.uuid}/execution`)).body
      return e?.status === 'DONE' ? e : undefined
    }, 15_000)
    expect(done).toMatchObject({nb_errors: 0, result: {exit_code: 0, output: 'hello from cistern.yml'}})
  })
})

describe('http action timeout', () => {
  it('fires whatever the garbage collector does (a held timer, not a collectable AbortSignal.any)', {timeout: 30_000}, async () => {
    // node --expose-gc, from inside the test: the flag, then the gc function from a fresh context.
    setFlagsFromString('--expose_gc')
    const gc = runInNewContext('gc') as () => void
    // Answers 200 after 15 s: only a timeout that fires ends the attempt before.
    const hanging = await standIn(async (_req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 15_000))
      res.end('too late')
    })
    afterAll(() => hanging.close())
    const task: Task = {
      uuid: '0b6c2d56-5d7e-4b3e-9d55-2a1f6bd7a7a4',
      type: 'webhook',
      stopped: false,
      created_at: 0,
      updated_at: 0,
      config: {method: 'POST', action: {type: 'http', url: hanging.url, timeout_seconds: 0.5}},
    }
    const execution: Execution = {task_uuid: task.uuid, type: 'webhook', timestamp: 1, status: 'DOING', nb_errors: 0, created_at: 0, payload: {x: 1}}
    const runner = new ActionRunner()
    const collecting = setInterval(gc, 5)
    try {
      const attempt = await runner.run(task, execution, {signal: new AbortController().signal, judge: new TargetJudge(new TargetGates())})
      expect(attempt.outcome).toMatchObject({kind: 'target-down', reason: expect.stringMatching(/no answer within 0.5 s/)})
      expect(attempt.result?.status).toBeUndefined()
    } finally {
      clearInterval(collecting)
      await runner.close()
    }
  })
})
