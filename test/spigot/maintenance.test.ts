import {existsSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'

import {TargetUnhealthyError} from '../../src/core/errors.js'
import {openQueue} from '../../src/core/queue/index.js'
import {DEFAULT_ROUTES, type SpigotConfig} from '../../src/spigot/config.js'
import {MaintenanceCommandFailed, runMaintenance} from '../../src/spigot/maintenance.js'
import {openStateStore} from '../../src/spigot/state.js'
import {type JenkinsStandIn, jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, webhook} from './drain-fixtures.js'

const dir = tempDir('cistern-maint-')
let n = 0
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function setup(jenkins: JenkinsStandIn) {
  const dbPath = join(dir, `m${++n}.db`)
  const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true, maxReceiveCount: 0})
  const state = await openStateStore({backend: 'local', dbPath})
  cleanups.push(async () => {
    await queue.close()
    await state.close()
    await jenkins.close()
  })
  const routes = Object.fromEntries(Object.entries(DEFAULT_ROUTES).map(([e, r]) => [e, {path: r.path, targets: [...r.targets]}]))
  const config: SpigotConfig = {queue: 'unused', targets: [{name: 'default', url: jenkins.url}], routes, unrouted: 'accept', forwardTimeoutMs: 1000}
  return {queue, state, config, dbPath}
}

const node = (script: string) => [process.execPath, '-e', script]

describe('runMaintenance', () => {
  it('OFF → CMD → wait until healthy → ON → drain', async () => {
    const jenkins = await jenkinsStandIn('accept', {health: 503})
    const {queue, state, config} = await setup(jenkins)
    const hooks = [webhook('push', {repo: 'a/a'}), webhook('pull_request', {repo: 'b/b'})]
    await enqueue(queue, hooks.map((h) => h.message))
    const marker = join(dir, `upgraded-${n}`)
    // CMD "upgrades" Jenkins; Jenkins only reports healthy a little after.
    let stateDuringCmd: string | undefined
    setTimeout(() => {
      void state.get().then((value) => (stateDuringCmd = value))
    }, 150)
    const started = runMaintenance({
      state,
      command: node(`require('fs').writeFileSync(${JSON.stringify(marker)}, 'x'); setTimeout(() => {}, 400)`),
      timeoutMs: 10_000,
      pollMs: 100,
      drain: {queue, config},
    })
    setTimeout(() => jenkins.setHealth({health: 200}), 700)
    const result = await started
    expect(existsSync(marker)).toBe(true)
    expect(stateDuringCmd).toBe('OFF')
    expect(result).toMatchObject({outcome: 'ok', before: 'ON', state: 'ON', command: {exitCode: 0}, exitCode: 0, problems: []})
    expect(result.waitedMs).toBeGreaterThan(0)
    expect(result.drain).toMatchObject({delivered: 2, remaining: 0, stoppedBy: 'empty'})
    expect(jenkins.webhooks.map((r) => r.headers['x-github-delivery'])).toEqual(expect.arrayContaining(hooks.map((h) => h.delivery)))
    expect(await state.get()).toBe('ON')
  })

  it('CMD failure leaves the spigot OFF, touches no message and carries CMD\'s exit code', async () => {
    const jenkins = await jenkinsStandIn('accept')
    const {queue, state, config} = await setup(jenkins)
    await enqueue(queue, [webhook('push').message])
    const error = (await runMaintenance({state, command: node('process.exit(7)'), timeoutMs: 1000, drain: {queue, config}}).catch((e: unknown) => e)) as MaintenanceCommandFailed
    expect(error).toBeInstanceOf(MaintenanceCommandFailed)
    expect(error.result).toMatchObject({outcome: 'command-failed', state: 'OFF', command: {exitCode: 7}})
    expect(error.oneLine).toMatch(/exit 7.*the spigot stays OFF/)
    expect(await state.get()).toBe('OFF')
    expect(jenkins.requests).toHaveLength(0)
    expect((await queue.stats()).visible).toBe(1)
  })

  it('--restore-on-failure puts the state back', async () => {
    const jenkins = await jenkinsStandIn('accept')
    const {queue, state, config} = await setup(jenkins)
    const error = (await runMaintenance({state, command: node('process.exit(3)'), timeoutMs: 1000, restoreOnFailure: true, drain: {queue, config}}).catch((e: unknown) => e)) as MaintenanceCommandFailed
    expect(error).toBeInstanceOf(MaintenanceCommandFailed)
    expect(error.result).toMatchObject({restored: true, state: 'ON', command: {exitCode: 3}})
    expect(await state.get()).toBe('ON')
  })

  it('a CMD that cannot start is a failure (127), spigot OFF', async () => {
    const jenkins = await jenkinsStandIn('accept')
    const {queue, state, config} = await setup(jenkins)
    const error = (await runMaintenance({state, command: [join(dir, 'no-such-script')], timeoutMs: 1000, drain: {queue, config}}).catch((e: unknown) => e)) as MaintenanceCommandFailed
    expect(error).toBeInstanceOf(MaintenanceCommandFailed)
    expect(error.result.command.exitCode).toBe(127)
    expect(await state.get()).toBe('OFF')
  })

  it('Jenkins not healthy within the timeout: exit-3 error, spigot stays OFF, nothing replayed', async () => {
    const jenkins = await jenkinsStandIn('accept', {quietingDown: true})
    const {queue, state, config} = await setup(jenkins)
    await enqueue(queue, [webhook('push').message])
    const error = (await runMaintenance({state, command: node(''), timeoutMs: 400, pollMs: 100, drain: {queue, config}}).catch((e: unknown) => e)) as MaintenanceCommandFailed
    expect(error).toBeInstanceOf(TargetUnhealthyError)
    expect(error.exitCode).toBe(3)
    expect(error.message).toMatch(/not healthy within 0 s: default .* quieting down/)
    expect(await state.get()).toBe('OFF')
    expect(jenkins.webhooks).toHaveLength(0)
    expect(jenkins.healthChecks.length).toBeGreaterThan(1)
  })

  it('`-- true` with 30 queued drains them all in one go', async () => {
    const jenkins = await jenkinsStandIn({kind: 'flap', every: 4, status: 503})
    const {queue, state, config} = await setup(jenkins)
    const hooks = Array.from({length: 30}, (_, i) => webhook('push', {repo: `acme/m${i % 5}`}))
    await enqueue(queue, hooks.map((h) => h.message))
    const result = await runMaintenance({state, command: node(''), timeoutMs: 5000, pollMs: 100, drain: {queue, config, targetBackoff: {baseMs: 50, maxMs: 200}}})
    expect(result).toMatchObject({outcome: 'ok', exitCode: 0, drain: {delivered: 30, dead: 0, remaining: 0}})
    expect(new Set(jenkins.webhooks.map((r) => r.headers['x-github-delivery']))).toEqual(new Set(hooks.map((h) => h.delivery)))
  })

  it('never "ok" with work left: what remains, and why, decides the outcome and the exit code', async () => {
    const jenkins = await jenkinsStandIn('accept')
    const {queue, state, config} = await setup(jenkins)
    await enqueue(queue, [webhook('push', {repo: 'a/held'}).message, webhook('push', {repo: 'b/free'}).message])
    // Another consumer holds one (its lease outlives the drain's deadline).
    const [held] = await queue.receive({maxMessages: 1, visibilityTimeout: 60})
    expect(held).toBeDefined()
    const result = await runMaintenance({state, command: node(''), timeoutMs: 5000, pollMs: 100, drain: {queue, config, deadlineMs: 1000}})
    expect(result).toMatchObject({outcome: 'incomplete', exitCode: 1, drain: {delivered: 1, remaining: 1}})
    expect(result.problems).toEqual([expect.stringMatching(/^1 remaining \(held by another consumer until \d\d:\d\d:\d\d\)$/)])
  })
})
