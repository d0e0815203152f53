// The built CLI (dist/) as a user runs it: refresh with `npx tsc -p tsconfig.build.json`.
import {execa} from 'execa'
import {join} from 'node:path'
import {afterAll, describe, expect, it, vi} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import {openStateStore} from '../../src/spigot/state.js'
import {CLI, cistern} from '../helpers/cli.js'
import {standIn} from '../helpers/http.js'
import {jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, lambdaMessage, sign, webhook} from '../spigot/drain-fixtures.js'

const base = tempDir('cistern-e2e-drain-')
let n = 0

/** A fresh data dir per test: the CLI's default queue and state live there. */
async function fresh() {
  const dataDir = join(base, `d${++n}`)
  const dbPath = join(dataDir, 'cistern.db')
  const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true})
  const state = await openStateStore({backend: 'local', dbPath})
  const env = {CISTERN_DATA_DIR: dataDir, CISTERN_LOG_FORMAT: 'json'}
  const run = async (args: string[], extra: Record<string, string> = {}) => {
    const result = await cistern(args, {env: {...env, ...extra}})
    return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '')}
  }
  afterAll(async () => {
    await queue.close()
    await state.close()
  })
  return {queue, state, env, run, dbPath}
}

const delivery = (req: {headers: Record<string, string | string[] | undefined>}) => String(req.headers['x-github-delivery'])

describe('cistern spigot drain (built CLI)', () => {
  it('replays what was queued while OFF, byte-identical and signed, and prints a summary', async () => {
    const {queue, run} = await fresh()
    const jenkins = await jenkinsStandIn('accept')
    try {
      const hooks = [webhook('push', {repo: 'acme/a'}), webhook('pull_request', {repo: 'acme/b'})]
      const original = lambdaMessage('push')
      await enqueue(queue, [...hooks.map((h) => h.message), original.message])

      const dry = await run(['spigot', 'drain', '--dry-run', '--json'], {JENKINS_URL: jenkins.url})
      expect(dry.exitCode).toBe(0)
      expect(JSON.parse(dry.stdout).wouldSend).toHaveLength(3)
      expect(jenkins.webhooks).toHaveLength(0)

      const drained = await run(['spigot', 'drain', '--jenkins-url', jenkins.url])
      expect(drained.exitCode).toBe(0)
      expect(drained.stdout).toMatch(/^drain: 3 delivered, 0 retried, 0 dead, 0 remaining/)
      for (const hook of hooks) {
        const got = jenkins.webhooks.find((r) => delivery(r) === hook.delivery)!
        expect(got.body.equals(hook.raw)).toBe(true)
        expect(got.headers['x-hub-signature-256']).toBe(sign(hook.raw))
      }
      const reserialised = jenkins.webhooks.find((r) => delivery(r) === original.delivery)!
      expect(reserialised.body.toString()).toBe(JSON.stringify(original.message.body))
      expect((await queue.stats()).visible).toBe(0)
    } finally {
      await jenkins.close()
    }
  })

  it('Jenkins down: exit 3 without touching messages; --auto-off sets the spigot OFF', async () => {
    const {queue, state, run} = await fresh()
    const jenkins = await jenkinsStandIn('accept', {health: 503})
    try {
      await enqueue(queue, [webhook('push').message])
      const result = await run(['spigot', 'drain', '--jenkins-url', jenkins.url, '--auto-off', '--json'])
      expect(result.exitCode).toBe(3)
      const summary = JSON.parse(result.stdout)
      // The result carries its outcome (issue 13): exit code and problem lines in --json, each line on stderr.
      expect(summary).toMatchObject({stoppedBy: 'unhealthy', delivered: 0, remaining: 1, autoOff: {before: 'ON', after: 'OFF'}, exitCode: 3})
      expect(summary.problems).toEqual([expect.stringMatching(/^Jenkins default http:\/\/127\.0\.0\.1:\d+\/ down .* — queued webhooks are kept/)])
      expect(result.stderr).toMatch(/^Jenkins default http:\/\/127\.0\.0\.1:\d+\/ down .* — queued webhooks are kept/m)
      expect(await state.get()).toBe('OFF')
      expect(jenkins.webhooks).toHaveLength(0)
      expect((await queue.peek(10))[0]!.receiveCount).toBe(0)
    } finally {
      await jenkins.close()
    }
  })

  it('SIGKILL mid-drain loses nothing: a second drain delivers every webhook at least once', async () => {
    const {queue, env} = await fresh()
    // A slow Jenkins (80 ms per webhook) so the kill lands mid-run.
    const jenkins = await standIn(async (req, res) => {
      if (req.method === 'GET') return void res.writeHead(200, {'content-type': 'application/json'}).end('{"quietingDown":false}')
      await new Promise((resolve) => setTimeout(resolve, 80))
      res.writeHead(200).end()
    })
    try {
      const hooks = Array.from({length: 30}, (_, i) => webhook(i % 3 ? 'push' : 'pull_request', {repo: `acme/r${i % 6}`}))
      await enqueue(queue, hooks.map((h) => h.message))
      const args = [CLI, 'spigot', 'drain', '--jenkins-url', jenkins.url + '/', '--concurrency', '3', '--visibility-timeout', '2']
      const child = execa('node', args, {env: {...env, NO_COLOR: '1'}, reject: false})
      await vi.waitFor(() => expect(jenkins.requests.filter((r) => r.method === 'POST').length).toBeGreaterThanOrEqual(6), {timeout: 20_000, interval: 20})
      child.kill('SIGKILL')
      const killed = await child
      expect(killed.signal).toBe('SIGKILL')
      const before = new Set(jenkins.requests.filter((r) => r.method === 'POST').map(delivery))
      expect(before.size).toBeLessThan(30)

      // In-flight messages come back after their 2 s visibility: drain until nothing is waiting (bounded).
      for (let attempt = 0; attempt < 10; attempt++) {
        const again = await execa('node', [CLI, 'spigot', 'drain', '--jenkins-url', jenkins.url + '/', '--json'], {env: {...env, NO_COLOR: '1'}, reject: false})
        expect(again.exitCode).toBe(0)
        if (JSON.parse(again.stdout).remaining === 0) break
        await new Promise((resolve) => setTimeout(resolve, 700))
      }
      const seen = new Set(jenkins.requests.filter((r) => r.method === 'POST').map(delivery))
      for (const hook of hooks) expect(seen.has(hook.delivery)).toBe(true)
      const stats = await queue.stats()
      expect(stats.visible + stats.inFlight + stats.delayed + stats.dead).toBe(0)
    } finally {
      await jenkins.close()
    }
  })
})

describe('cistern spigot drain: bad flags (built CLI)', () => {
  it('--rate abc, 0, -5 and a bad --deadline are usage errors naming the flag (exit 2), before anything is touched', async () => {
    const {run} = await fresh()
    for (const [flag, value, expected] of [
      ['--rate', 'abc', /^Error: --rate: expected a positive number, got "abc"/],
      ['--rate', '0', /^Error: --rate: expected a positive number, got "0"/],
      ['--rate=-5', '', /^Error: --rate: expected a positive number, got "-5"/],
      ['--deadline', 'soon', /^Error: --deadline: expected a duration such as 500ms, 30s, 5m or 1h/],
    ] as const) {
      const result = await run(['spigot', 'drain', '--jenkins-url', 'http://127.0.0.1:9/', flag, ...(value ? [value] : [])])
      expect(result.exitCode, `${flag} ${value}`).toBe(2)
      expect(result.stderr.trim().split('\n'), `${flag} ${value}`).toEqual([expect.stringMatching(expected)])
    }
  })
})

describe('cistern spigot drain --watch (built CLI)', () => {
  it('replays while running and exits 0 on SIGTERM with a summary', async () => {
    const {queue, env} = await fresh()
    const jenkins = await jenkinsStandIn('accept')
    try {
      const child = execa('node', [CLI, 'spigot', 'drain', '--watch', '--jenkins-url', jenkins.url, '--json'], {env: {...env, NO_COLOR: '1'}, reject: false})
      const hook = webhook('push')
      await enqueue(queue, [hook.message])
      await vi.waitFor(() => expect(jenkins.webhooks.map(delivery)).toEqual([hook.delivery]), {timeout: 20_000, interval: 50})
      child.kill('SIGTERM')
      const done = await child
      expect(done.exitCode).toBe(0)
      expect(JSON.parse(done.stdout)).toMatchObject({stoppedBy: 'signal', delivered: 1, remaining: 0})
    } finally {
      await jenkins.close()
    }
  })
})
