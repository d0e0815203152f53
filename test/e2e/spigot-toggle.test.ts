// The built CLI (dist/) as a user runs it: refresh with `npx tsc -p tsconfig.build.json`.
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {cistern} from '../helpers/cli.js'
import {jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-e2e-toggle-')
const env = {CISTERN_DATA_DIR: dir, CISTERN_LOG_FORMAT: 'json'}
async function run(args: string[], extra: Record<string, string> = {}) {
  const result = await cistern(args, {env: {...env, ...extra}})
  return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '')}
}

describe('cistern spigot toggle / status (local backend)', () => {
  it('a fresh install is ON; toggle prints before → after and status sees it', async () => {
    const jenkins = await jenkinsStandIn('accept')
    try {
      const off = await run(['spigot', 'toggle', '--state', 'OFF'])
      expect(off.exitCode).toBe(0)
      expect(off.stdout).toBe(`spigot: ON → OFF  (local: ${join(dir, 'cistern.db')})`)

      const status = await run(['spigot', 'status', '--json'], {JENKINS_URL: jenkins.url})
      expect(status.exitCode).toBe(0)
      const parsed = JSON.parse(status.stdout)
      expect(parsed).toMatchObject({state: 'OFF', backend: 'local', backlog: 0, healthy: true, queue: {url: `sqlite:${join(dir, 'cistern.db')}#spigot`}})
      expect(parsed.jenkins[0]).toMatchObject({name: 'default', url: jenkins.url, state: 'up'})

      const on = await run(['spigot', 'toggle', '--state', 'on', '--json'])
      expect(JSON.parse(on.stdout)).toEqual({backend: 'local', where: join(dir, 'cistern.db'), before: 'OFF', after: 'ON'})

      const human = await run(['spigot', 'status', '--jenkins-url', jenkins.url])
      expect(human.stdout).toMatch(/^spigot: {2}ON {2}\(local: /)
      expect(human.stdout).toMatch(/jenkins: default http:\/\/127\.0\.0\.1:\d+\/ up \(\d+ ms\)/)
      expect(jenkins.webhooks).toHaveLength(0)
    } finally {
      await jenkins.close()
    }
  })

  it('bad input is a usage error (exit 2) with one line naming the fix', async () => {
    const bad = await run(['spigot', 'toggle', '--state', 'maybe'])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr.trim()).toBe('Error: --state: "maybe" is not a spigot state — use ON or OFF')

    const noApi = await run(['spigot', 'toggle', '--state', 'ON', '--backend', 'apigw'])
    expect(noApi.exitCode).toBe(2)
    expect(noApi.stderr).toMatch(/the apigw state backend needs the REST API — pass --api-id or --api-name/)

    const noJenkins = await run(['spigot', 'drain'])
    expect(noJenkins.exitCode).toBe(2)
    expect(noJenkins.stderr).toMatch(/no Jenkins URL — pass --jenkins-url/)
  })

  it('status works without a Jenkins: state and backlog, Jenkins reported as not configured', async () => {
    const status = await run(['spigot', 'status'])
    expect(status.exitCode).toBe(0)
    expect(status.stdout).toMatch(/^jenkins: not configured \(--jenkins-url or JENKINS_URL\)$/m)
    const json = await run(['spigot', 'status', '--json'])
    expect(JSON.parse(json.stdout)).toMatchObject({state: expect.stringMatching(/^(ON|OFF)$/), backlog: 0, jenkins: [], healthy: false})
  })
})
