import {join} from 'node:path'

import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {CLI, cistern} from '../helpers/cli.js'
import {type StandIn, standIn} from '../helpers/http.js'
import {tempDir} from '../helpers/tmp.js'

/** `cistern hooks serve` and the client commands, run as a user would (the built CLI). */
const dir = tempDir('cistern-e2e-hooks-')
const TOKEN = 'e2e-token-5f2b9c0d7a'
const env = {CISTERN_DATA_DIR: dir, CISTERN_HOOKS_TOKEN: TOKEN, CISTERN_LOG_FORMAT: 'json'}

let serve: ReturnType<typeof execa>
let url: string
let target: StandIn
let stderr = ''

beforeAll(async () => {
  target = await standIn()
  serve = execa('node', [CLI, 'hooks', 'serve', '--port', '0', '--host', '127.0.0.1', '--store', `sqlite:${join(dir, 'hooks.db')}`], {
    env,
    reject: false,
    timeout: 60_000,
  })
  serve.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  url = await new Promise<string>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`hooks serve did not start:\n${out}\n${stderr}`)), 20_000)
    serve.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /listening on (http:\/\/\S+)/.exec(out)
      if (match) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    })
  })
})

afterAll(async () => {
  serve.kill('SIGKILL')
  await target.close()
})

const client = (args: string[], extraEnv: Record<string, string> = {}) => cistern([...args, '--server', url], {env: {...env, ...extraEnv}})

describe('cistern hooks (e2e)', () => {
  let uuid: string

  it('creates a task, takes a webhook and forwards it', async () => {
    const created = await client(['hooks', 'task', 'create', '--name', 'e2e', '--http', `${target.url}/in`, '--header', 'X-Extra: 1', '--json'])
    expect(created.exitCode, String(created.stderr)).toBe(0)
    const task = JSON.parse(String(created.stdout))
    expect(task).toMatchObject({type: 'webhook', name: 'e2e', config: {method: 'POST', action: {type: 'http', url: `${target.url}/in`, headers: {'X-Extra': '1'}}}})
    uuid = task.uuid

    const intake = await fetch(`${url}/webhook/${uuid}`, {method: 'POST', body: '{"hello":1}', headers: {'content-type': 'application/json'}})
    expect(intake.status).toBe(202)
    const deadline = Date.now() + 10_000
    while (target.requests.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(target.requests[0]).toMatchObject({method: 'POST', url: '/in'})
    expect(target.requests[0]!.headers['x-extra']).toBe('1')
    expect(target.requests[0]!.body.toString()).toBe('{"hello":1}')
  })

  it('lists tasks and executions, human and JSON', async () => {
    const list = await client(['hooks', 'task', 'list'])
    expect(list.exitCode).toBe(0)
    expect(String(list.stdout)).toMatch(new RegExp(`${uuid}\\s+webhook\\s+e2e\\s+started`))
    const json = JSON.parse(String((await client(['hooks', 'task', 'list', '--json'])).stdout))
    expect(json.map((t: {uuid: string}) => t.uuid)).toEqual([uuid])

    // wait over HTTP (cheap), then ask the CLI once
    for (let i = 0; i < 100; i++) {
      const list = (await (await fetch(`${url}/task/${uuid}/execution`, {headers: {authorization: `Bearer ${TOKEN}`}})).json()) as Array<{status: string}>
      if (list[0]?.status === 'DONE') break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const executions = JSON.parse(String((await client(['hooks', 'executions', uuid, '--json'])).stdout)) as Array<{status: string; timestamp: number}>
    expect(executions).toHaveLength(1)
    expect(executions[0]).toMatchObject({status: 'DONE', nb_errors: 0, result: {status: 200}})
    const one = await client(['hooks', 'executions', uuid, String(executions[0]!.timestamp), '--json'])
    expect(JSON.parse(String(one.stdout))).toMatchObject({timestamp: executions[0]!.timestamp, request: {method: 'POST'}})
    const stop = await client(['hooks', 'executions', uuid, String(executions[0]!.timestamp), '--stop', '--json'])
    expect(JSON.parse(String(stop.stdout))).toMatchObject({result: 'already-done'})
  })

  it('turns maintenance on and off', async () => {
    const on = await client(['hooks', 'maintenance', 'on', '--json'])
    expect(on.exitCode).toBe(0)
    expect(JSON.parse(String(on.stdout))).toMatchObject({maintenance: true, store: {kind: 'sqlite'}})
    const status = await client(['hooks', 'maintenance'])
    expect(String(status.stdout)).toMatch(/maintenance ON: processing paused — 0 queued/)
    const off = await client(['hooks', 'maintenance', 'off', '--json'])
    expect(JSON.parse(String(off.stdout))).toMatchObject({maintenance: false})
  })

  it('stops, updates and deletes a task', async () => {
    const stopped = await client(['hooks', 'task', 'stop', uuid, '--json'])
    expect(JSON.parse(String(stopped.stdout)).stopped).toBe(true)
    expect((await fetch(`${url}/webhook/${uuid}`, {method: 'POST', body: 'x'})).status).toBe(409)
    const updated = await client(['hooks', 'task', 'update', uuid, '--method', 'PUT', '--json'])
    expect(JSON.parse(String(updated.stdout))).toMatchObject({stopped: true, config: {method: 'PUT', action: {url: `${target.url}/in`}}})
    expect((await client(['hooks', 'task', 'start', uuid])).exitCode).toBe(0)
    const shown = await client(['hooks', 'task', 'show', uuid])
    expect(String(shown.stdout)).toMatch(/trigger: +PUT \/webhook\//)
    expect((await client(['hooks', 'task', 'delete', uuid])).exitCode).toBe(0)
    const missing = await client(['hooks', 'task', 'show', uuid])
    expect(missing.exitCode).toBe(1)
    expect(String(missing.stderr)).toMatch(/no task/)
  })

  it('creates a scheduler task and refuses a bad cron or time zone with exit 2', async () => {
    const ok = await client(['hooks', 'task', 'create', '--cron', '0 9 * * 1-5', '--timezone', 'Europe/Paris', '--http', target.url, '--payload', '{"a":1}', '--json'])
    expect(ok.exitCode, String(ok.stderr)).toBe(0)
    expect(JSON.parse(String(ok.stdout))).toMatchObject({type: 'scheduler', config: {cron: '0 9 * * 1-5', timezone: 'Europe/Paris', payload: {a: 1}}, nb_executions_todo: 1})
    const badCron = await client(['hooks', 'task', 'create', '--cron', '0 9 * *', '--http', target.url])
    expect(badCron.exitCode).toBe(2)
    expect(String(badCron.stderr)).toMatch(/bad cron "0 9 \* \*"/)
    const badZone = await client(['hooks', 'task', 'create', '--cron', '0 9 * * *', '--timezone', 'Paris', '--http', target.url])
    expect(badZone.exitCode).toBe(2)
    expect(String(badZone.stderr)).toMatch(/unknown time zone "Paris"/)
    const noAction = await client(['hooks', 'task', 'create'])
    expect(noAction.exitCode).toBe(2)
    expect(String(noAction.stderr)).toMatch(/no action/)
  })

  it('exits 2 on a wrong token and 3 when the service is unreachable', async () => {
    const wrong = await client(['hooks', 'task', 'list'], {CISTERN_HOOKS_TOKEN: 'not-the-token'})
    expect(wrong.exitCode).toBe(2)
    expect(String(wrong.stderr)).toMatch(/refused the API token/)
    const down = await cistern(['hooks', 'task', 'list', '--server', 'http://127.0.0.1:9'], {env})
    expect(down.exitCode).toBe(3)
    expect(String(down.stderr)).toMatch(/cannot reach the hooks service/)
  })

  it('reads the hooks: section of --config and names a bad key', async () => {
    const {writeFileSync} = await import('node:fs')
    const file = join(dir, 'cistern.yml')
    writeFileSync(file, 'spigot:\n  anything: 1\nhooks:\n  port: "eighty"\n')
    const result = await cistern(['hooks', 'serve', '--config', file], {env})
    expect(result.exitCode).toBe(2)
    expect(String(result.stderr)).toMatch(/cistern\.yml:4.*hooks\.port/)
    // the shared jobs: table is validated too (job actions use it when --jobs is not given)
    writeFileSync(file, 'hooks:\n  port: 0\njobs:\n  build:\n    argv: []\n')
    const badJobs = await cistern(['hooks', 'serve', '--config', file], {env})
    expect(badJobs.exitCode).toBe(2)
    expect(String(badJobs.stderr)).toMatch(/cistern\.yml:5.*jobs\.build\.argv/)
  })

  it('reads and checks --jobs at start: a bad file is exit 2 naming its line, not a surprise at the first execution', async () => {
    const {writeFileSync} = await import('node:fs')
    const jobs = join(dir, 'bad-jobs.yml')
    writeFileSync(jobs, 'deploy:\n  argv: [/bin/true]\nbuild:\n  command: 42\n')
    const bad = await cistern(['hooks', 'serve', '--port', '0', '--jobs', jobs], {env})
    expect(bad.exitCode).toBe(2)
    expect(String(bad.stderr)).toMatch(/bad-jobs\.yml:4 build\.command/)
    const missing = await cistern(['hooks', 'serve', '--port', '0', '--jobs', join(dir, 'nope.yml')], {env})
    expect(missing.exitCode).toBe(2)
    expect(String(missing.stderr)).toMatch(/nope\.yml: cannot read the config file/)
  })

  it('refuses to serve without a token', async () => {
    const result = await cistern(['hooks', 'serve', '--port', '0'], {env: {CISTERN_DATA_DIR: dir, CISTERN_HOOKS_TOKEN: ''}})
    expect(result.exitCode).toBe(2)
    expect(String(result.stderr)).toMatch(/no API token/)
  })

  it('stops on SIGTERM with exit 0 and never logs the token', async () => {
    serve.kill('SIGTERM')
    const result = await serve
    expect(result.exitCode).toBe(0)
    expect(stderr).toMatch(/hooks service stopped/)
    expect(stderr).not.toContain(TOKEN)
  })
})

describe('cistern hooks serve killed mid-processing (e2e)', () => {
  it('loses nothing: a new instance on the same store delivers every accepted execution', async () => {
    const store = `sqlite:${join(dir, 'killed.db')}`
    const slow = await standIn(async (_req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 300))
      res.end('ok')
    })
    afterAll(() => slow.close())
    const start = async () => {
      const proc = execa('node', [CLI, 'hooks', 'serve', '--port', '0', '--host', '127.0.0.1', '--store', store, '--lease', '1', '--concurrency', '2'], {env, reject: false})
      const base = await new Promise<string>((resolve, reject) => {
        let out = ''
        const timer = setTimeout(() => reject(new Error('serve did not start')), 20_000)
        proc.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          const match = /listening on (http:\/\/\S+)/.exec(out)
          if (match) {
            clearTimeout(timer)
            resolve(match[1]!)
          }
        })
      })
      return {proc, base}
    }
    const first = await start()
    const api = (base: string, path: string, init: RequestInit = {}) =>
      fetch(base + path, {...init, headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(init.headers as Record<string, string> | undefined)}})
    const task = (await (await api(first.base, '/task', {method: 'POST', body: JSON.stringify({type: 'webhook', config: {action: {type: 'http', url: slow.url}}})})).json()) as {uuid: string}
    const accepted: string[] = []
    for (let i = 0; i < 12; i++) {
      const r = await fetch(`${first.base}/webhook/${task.uuid}`, {method: 'POST', body: `k${i}`})
      expect(r.status).toBe(202)
      accepted.push(String(((await r.json()) as {execution: number}).execution))
    }
    // Kill it while executions are running (2 at a time, 300 ms each) and others wait.
    const deadline = Date.now() + 10_000
    while (slow.requests.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    first.proc.kill('SIGKILL')
    await first.proc
    const second = await start()
    try {
      const until = Date.now() + 20_000
      const seen = () => new Set(slow.requests.map((r) => String(r.headers['x-cistern-hooks-execution'])))
      while (!accepted.every((id) => seen().has(id)) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100))
      expect(accepted.filter((id) => !seen().has(id))).toEqual([])
      const executions = (await (await api(second.base, `/task/${task.uuid}/execution`)).json()) as Array<{status: string}>
      const deadline2 = Date.now() + 5000
      let todo = executions.filter((e) => e.status !== 'DONE').length
      while (todo > 0 && Date.now() < deadline2) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        todo = ((await (await api(second.base, `/task/${task.uuid}/execution`)).json()) as Array<{status: string}>).filter((e) => e.status !== 'DONE').length
      }
      expect(todo).toBe(0)
    } finally {
      second.proc.kill('SIGTERM')
      await second.proc
    }
  })
})
