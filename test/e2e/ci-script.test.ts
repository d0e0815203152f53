// examples/ci/jenkins-upgrade.sh run for real: bash, the built CLI on PATH as `cistern` (a shim in a
// temp dir), a loopback Jenkins stand-in and a fake upgrade command. Refresh dist/ with
// `npx tsc -p tsconfig.build.json`.
import {chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {execa} from 'execa'
import {parse as parseYaml} from 'yaml'
import {afterAll, describe, expect, it} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import {openStateStore, type StateStore} from '../../src/spigot/state.js'
import {CLI} from '../helpers/cli.js'
import {standIn} from '../helpers/http.js'
import {jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, sign, webhook} from '../spigot/drain-fixtures.js'

const SCRIPT = join(process.cwd(), 'examples/ci/jenkins-upgrade.sh')
const base = tempDir('cistern-e2e-ci-')

// `cistern` on PATH, as after `npm install -g`: a shim running the built CLI.
const binDir = join(base, 'bin')
const closers: Array<() => Promise<unknown>> = []
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

let n = 0
async function setup() {
  mkdirSync(binDir, {recursive: true})
  const shim = join(binDir, 'cistern')
  if (!existsSync(shim)) {
    writeFileSync(shim, `#!/bin/sh\nexec node ${JSON.stringify(CLI)} "$@"\n`)
    chmodSync(shim, 0o755)
  }
  const dataDir = join(base, `d${++n}`)
  mkdirSync(dataDir, {recursive: true})
  const dbPath = join(dataDir, 'cistern.db')
  const queue: Queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true})
  const state: StateStore = await openStateStore({backend: 'local', dbPath})
  closers.push(() => queue.close(), () => state.close())
  const jenkins = await jenkinsStandIn('accept')
  closers.push(() => jenkins.close())
  const env = {
    PATH: `${binDir}:${process.env.PATH}`,
    CISTERN_DATA_DIR: dataDir,
    JENKINS_URL: jenkins.url,
    HEALTH_INTERVAL: '0.2',
    HEALTH_TIMEOUT: '15',
    NO_COLOR: '1',
  }
  const run = (args: string[], extra: Record<string, string> = {}) =>
    execa('bash', [SCRIPT, ...args], {env: {...env, ...extra}, extendEnv: false, reject: false, timeout: 45_000})
  return {dataDir, queue, state, jenkins, run}
}

describe('examples/ci/jenkins-upgrade.sh', () => {
  it('OFF → upgrade (Jenkins restarts) → wait until healthy → ON → drain: queued webhooks replayed, queue empty', {timeout: 45_000}, async () => {
    const {dataDir, queue, state, jenkins, run} = await setup()
    // Webhooks that were queued before the window (e.g. during an earlier outage).
    const before = [webhook('push', {repo: 'acme/api'}), webhook('pull_request', {repo: 'acme/web'}), webhook('issue_comment', {repo: 'acme/api'})]
    await enqueue(queue, before.map((h) => h.message))

    // The fake upgrade: Jenkins goes down (503 on health) and comes back ~1.5 s after the command exits,
    // so the script has to wait; the command also records the spigot state it saw.
    const control = await standIn((req, res) => {
      jenkins.setHealth({health: 503})
      setTimeout(() => jenkins.setHealth({health: 200}), 1500)
      res.end('restarting')
    })
    closers.push(() => control.close())
    const seen = join(dataDir, 'state-during-upgrade')
    const upgrade = join(dataDir, 'upgrade-jenkins.sh')
    writeFileSync(
      upgrade,
      `#!/usr/bin/env bash\nset -euo pipefail\necho "upgrading Jenkins to $1"\ncistern spigot status --json | node -e 'let t="";process.stdin.on("data",d=>t+=d).on("end",()=>process.stdout.write(JSON.parse(t).state))' > ${JSON.stringify(seen)}\ncurl -fsS ${JSON.stringify(control.url + '/restart')} >/dev/null\n`,
    )
    chmodSync(upgrade, 0o755)

    const result = await run([upgrade, '2.462.3'])
    const output = `${result.stdout}\n${result.stderr}`
    expect(result.exitCode, output).toBe(0)
    expect(result.stdout).toContain('upgrading Jenkins to 2.462.3')
    expect(readFileSync(seen, 'utf8')).toBe('OFF')
    expect(result.stderr).toMatch(/3\/5 waiting up to 15s/)
    expect(result.stderr).toMatch(/Jenkins not healthy yet/) // it really waited
    expect(result.stderr).toMatch(/done: Jenkins upgraded, spigot ON, queue drained/)
    expect(result.stdout).toMatch(/drain: 3 delivered, 0 retried, 0 dead, 0 remaining/)

    expect(await state.get()).toBe('ON')
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, delayed: 0, dead: 0})
    expect(jenkins.webhooks).toHaveLength(before.length)
    for (const hook of before) {
      const got = jenkins.webhooks.find((r) => r.headers['x-github-delivery'] === hook.delivery)
      expect(got, hook.delivery).toBeDefined()
      expect(got!.body.equals(hook.raw)).toBe(true)
      expect(got!.headers['x-hub-signature-256']).toBe(sign(hook.raw))
    }
  })

  it('the upgrade command fails: the script exits with its code and leaves the spigot OFF, queue untouched', {timeout: 30_000}, async () => {
    const {queue, state, jenkins, run} = await setup()
    await enqueue(queue, [webhook('push', {repo: 'acme/api'}).message])
    const result = await run(['--', 'bash', '-c', 'echo "apt-get: unable to fetch jenkins_2.462.3_all.deb" >&2; exit 7'])
    expect(result.exitCode).toBe(7)
    expect(result.stderr).toMatch(/ERROR: upgrade command failed \(exit 7\): the spigot stays OFF/)
    expect(result.stderr).not.toMatch(/3\/5|4\/5|5\/5/)
    expect(await state.get()).toBe('OFF')
    expect(jenkins.webhooks).toHaveLength(0)
    expect((await queue.stats()).visible).toBe(1)
  })

  it('Jenkins never comes back: exit 3 after HEALTH_TIMEOUT, spigot OFF; usage errors exit 2', {timeout: 30_000}, async () => {
    const {queue, state, jenkins, run} = await setup()
    await enqueue(queue, [webhook('push').message])
    jenkins.setHealth({health: 503, api: 503})
    const result = await run(['true'], {HEALTH_TIMEOUT: '1'})
    expect(result.exitCode).toBe(3)
    expect(result.stderr).toMatch(/ERROR: Jenkins is not healthy after 1s: the spigot stays OFF/)
    expect(await state.get()).toBe('OFF')
    expect(jenkins.webhooks).toHaveLength(0)
    expect((await queue.stats()).visible).toBe(1)

    const noCommand = await run([])
    expect(noCommand.exitCode).toBe(2)
    expect(noCommand.stderr).toMatch(/usage: .* UPGRADE_COMMAND/)
    const noUrl = await run(['true'], {JENKINS_URL: ''})
    expect(noUrl.exitCode).toBe(2)
    expect(noUrl.stderr).toMatch(/JENKINS_URL is not set/)
  })

  it('the maintenance line of the GitHub Actions workflow and of the Jenkinsfile, run as written', {timeout: 45_000}, async () => {
    const workflow = parseYaml(readFileSync(join(process.cwd(), 'examples/ci/github-actions-jenkins-upgrade.yml'), 'utf8')) as {
      on: {workflow_dispatch: {inputs: Record<string, {default: string}>}}
      jobs: {upgrade: {steps: Array<{run?: string}>}}
    }
    const fromWorkflow = workflow.jobs.upgrade.steps.find((step) => step.run?.includes('spigot maintenance'))!.run!
    const jenkinsfile = readFileSync(join(process.cwd(), 'examples/ci/Jenkinsfile'), 'utf8')
    const fromJenkinsfile = /sh '(cistern spigot maintenance[^']*)'/.exec(jenkinsfile)![1]!
    const inputs = workflow.on.workflow_dispatch.inputs
    expect(fromWorkflow).toContain('--timeout "$HEALTH_TIMEOUT" -- ./upgrade-jenkins.sh "$JENKINS_VERSION"')

    // GitHub runs `bash -e {0}` with the job's env (inputs passed as JENKINS_VERSION/HEALTH_TIMEOUT);
    // Jenkins runs `sh -xe` with the build parameters in the environment.
    for (const [shell, line] of [
      [['bash', '-e', '-c'], fromWorkflow],
      [['sh', '-xe', '-c'], fromJenkinsfile],
    ] as const) {
      const {dataDir, queue, state, jenkins} = await setup()
      const hook = webhook('pull_request', {repo: 'acme/web'})
      await enqueue(queue, [hook.message])
      writeFileSync(join(dataDir, 'upgrade-jenkins.sh'), `#!/bin/sh\necho "$1" > upgraded-to\n`)
      chmodSync(join(dataDir, 'upgrade-jenkins.sh'), 0o755)
      const result = await execa(shell[0], [...shell.slice(1), line], {
        cwd: dataDir,
        env: {
          PATH: `${binDir}:${process.env.PATH}`,
          CISTERN_DATA_DIR: dataDir,
          CISTERN_LOG_FORMAT: 'json',
          JENKINS_URL: jenkins.url,
          JENKINS_VERSION: inputs.jenkins_version!.default,
          HEALTH_TIMEOUT: inputs.health_timeout!.default,
        },
        extendEnv: false,
        reject: false,
        timeout: 30_000,
      })
      expect(result.exitCode, `${shell[0]}: ${result.stderr}`).toBe(0)
      expect(readFileSync(join(dataDir, 'upgraded-to'), 'utf8')).toBe('2.462.3\n')
      expect(await state.get()).toBe('ON')
      expect(jenkins.webhooks.map((r) => r.headers['x-github-delivery'])).toEqual([hook.delivery])
      expect((await queue.stats()).visible).toBe(0)
    }
  })
})
