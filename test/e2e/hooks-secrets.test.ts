// The built CLI (dist/): refresh with `npm run build`. Issue 12 through `hooks serve`: a job that
// prints its environment and every secret cistern knows, a webhook sent with credentials, and an
// http action whose Authorization comes from the service's environment leave no secret in the
// execution records (SQLite and Redis), `hooks executions --json`, `hooks task … --json` or the logs.
import {readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {execa} from 'execa'
import {Redis} from 'ioredis'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'

import {CLI, cistern} from '../helpers/cli.js'
import {standIn} from '../helpers/http.js'
import {type RedisServer, startRedis} from '../helpers/redis.js'
import {leakyJob, secretForms} from '../helpers/leaky-job.js'
import {tempDir} from '../helpers/tmp.js'

const SECRETS = {
  CISTERN_HOOKS_TOKEN: 'hooks-e2eleak-token-0001',
  JENKINS_TOKEN: '11e2eleakjenkins0002',
  TRAVIS_TOKEN: 'travis-e2eleak-0003',
  AWS_ACCESS_KEY_ID: 'AKIAE2EHOOKSLEAK0004',
  AWS_SECRET_ACCESS_KEY: 'e2e/hooks+leak=secret0005',
  GITHUB_TOKEN: 'ghp_e2ehooksleak_0006',
}
/** The Authorization an http action sends, from hooks serve's environment (its name says nothing secret). */
const JENKINS_AUTH = 'Basic amVua2luczpqZW5raW5zLWF1dGgtMDAwNw=='
/** What a webhook sender puts in its headers. */
const SENDER = {authorization: 'Bearer sender-e2e-0008', 'x-hub-signature-256': 'sha256=e2ehookssignature0009', cookie: 'session=e2e-cookie-0010'}

/** Prints its environment, then every secret it can find, in several encodings. */
const LEAKY = leakyJob("console.log('JENKINS_TOKEN is ' + (process.env.JENKINS_TOKEN ?? 'absent'))")

/** What cistern knows (and a job could print): its own secrets, and the action's header value. */
const CISTERN_KNOWS = [...Object.values(SECRETS), JENKINS_AUTH]
/** What a sender sent: never stored, so no job can even print it. */
const SENDER_SENT = Object.values(SENDER).map((value) => value.split(/[ =]/).at(-1) ?? value)

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis.stop()
})

/** The SQLite store's files (the db, its WAL), as latin1 text: SQLite pages keep strings as they are. */
function sqliteFiles(dir: string): string {
  return readdirSync(dir)
    .filter((name) => name.startsWith('hooks.db'))
    .map((name) => readFileSync(join(dir, name), 'latin1'))
    .join('\n')
}

async function redisValues(prefix: string): Promise<string> {
  const client = new Redis(redis.url)
  try {
    const keys = await client.keys(`${prefix}:*`)
    const values = await Promise.all(keys.map(async (key) => ((await client.type(key)) === 'string' ? ((await client.get(key)) ?? '') : '')))
    return values.join('\n')
  } finally {
    client.disconnect()
  }
}

describe.each(['sqlite', 'redis'] as const)('hooks serve keeps secrets in (%s, built CLI)', (kind) => {
  it('job output, captured requests, task JSON, executions --json and logs hold none of them', {timeout: 90_000}, async () => {
    const dir = tempDir('cistern-e2e-hooks-secrets-')
    const list = join(dir, 'secrets.json')
    writeFileSync(list, JSON.stringify(CISTERN_KNOWS))
    const script = join(dir, 'leaky.cjs')
    writeFileSync(script, LEAKY)
    const jobsFile = join(dir, 'jobs.yml')
    writeFileSync(jobsFile, stringify({built: {argv: [process.execPath, script, list]}, inherited: {argv: [process.execPath, script, list], inheritEnv: 'all'}}))
    const target = await standIn()
    afterAll(() => target.close())
    // Redis: this file's own redis-server, so the layout's default prefix "hooks" holds only this test's keys.
    const store = kind === 'sqlite' ? `sqlite:${join(dir, 'hooks.db')}` : redis.url
    const env = {...SECRETS, JENKINS_AUTH, CISTERN_DATA_DIR: dir, NO_COLOR: '1', CISTERN_LOG_FORMAT: 'json'}
    const serve = execa('node', [CLI, 'hooks', 'serve', '--port', '0', '--host', '127.0.0.1', '--store', store, '--jobs', jobsFile, '--log-level', 'debug'], {env, reject: false, timeout: 80_000})
    let stderr = ''
    serve.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const url = await new Promise<string>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`hooks serve did not start: ${out} ${stderr}`)), 20_000)
      serve.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        const match = /listening on (http:\/\/\S+)/.exec(out)
        if (match?.[1]) {
          clearTimeout(timer)
          resolve(match[1])
        }
      })
    })
    const client = (args: string[]) => cistern([...args, '--server', url], {env})
    try {
      const outputs: string[] = []
      const created: Array<{uuid: string}> = []
      for (const job of ['built', 'inherited']) {
        const made = await client(['hooks', 'task', 'create', '--job', job, '--json'])
        expect(made.exitCode, String(made.stderr)).toBe(0)
        created.push(JSON.parse(String(made.stdout)) as {uuid: string})
      }
      const http = await client(['hooks', 'task', 'create', '--http', `${target.url}/jenkins`, '--header-from-env', 'Authorization=JENKINS_AUTH', '--json'])
      expect(http.exitCode, String(http.stderr)).toBe(0)
      outputs.push(String(http.stdout))
      const httpTask = JSON.parse(String(http.stdout)) as {uuid: string; config: {action: Record<string, unknown>}}
      expect(httpTask.config.action.header_from_env).toEqual({Authorization: 'JENKINS_AUTH'})
      created.push(httpTask)
      // A secret header on the command line is refused: ps would show it, the store would keep it.
      const refused = await client(['hooks', 'task', 'create', '--http', target.url, '--header', `Authorization: ${JENKINS_AUTH}`])
      expect(refused.exitCode).toBe(2)
      expect(String(refused.stderr)).toMatch(/--header-from-env "Authorization=VARIABLE"/)

      for (const task of created) {
        const sent = await fetch(`${url}/webhook/${task.uuid}`, {method: 'POST', body: '{"push":1}', headers: SENDER})
        expect(sent.status).toBe(202)
      }
      const headers = {authorization: `Bearer ${SECRETS.CISTERN_HOOKS_TOKEN}`}
      for (const task of created) {
        for (let i = 0; i < 300; i++) {
          const list = (await (await fetch(`${url}/task/${task.uuid}/execution`, {headers})).json()) as Array<{status: string}>
          if (list[0]?.status === 'DONE') break
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        const executions = await client(['hooks', 'executions', task.uuid, '--json'])
        expect(executions.exitCode).toBe(0)
        outputs.push(String(executions.stdout))
      }
      outputs.push(String((await client(['hooks', 'task', 'list', '--json'])).stdout))
      const printed = outputs.slice(1, 3).map((text) => JSON.parse(text) as Array<{status: string; result: {output: string}; request: {headers: Record<string, string>}}>)
      const built = printed.at(0)
      const inherited = printed.at(1)
      expect(built?.at(0)).toMatchObject({status: 'DONE', request: {headers: {authorization: '[redacted]'}}})
      expect(built?.at(0)?.result.output).toContain('JENKINS_TOKEN is absent')
      expect(inherited?.at(0)?.result.output).toContain('JENKINS_TOKEN is [redacted]')
      expect(target.requests[0]?.headers.authorization).toBe(JENKINS_AUTH)
      expect(target.requests[0]?.headers['x-hub-signature-256']).toBeUndefined()
    } finally {
      serve.kill('SIGTERM')
      await serve
    }
    const seen = [stderr, (await serve).stdout, kind === 'sqlite' ? sqliteFiles(dir) : await redisValues('hooks')].join('\n')
    expect(stderr).toMatch(/hooks service stopped/)
    for (const secret of [...CISTERN_KNOWS, ...SENDER_SENT]) for (const form of secretForms(secret)) expect(seen, `${secret} as ${form}`).not.toContain(form)
  })
})
