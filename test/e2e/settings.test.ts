// The built CLI (dist/): refresh with `npm run build`. Settings resolve flag > env > config file >
// default, and an exported-but-empty variable is unset (src/core/settings.ts) — what CI templates
// and systemd units produce.
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import {cistern} from '../helpers/cli.js'
import {jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, webhook} from '../spigot/drain-fixtures.js'

const dir = tempDir('cistern-e2e-settings-')
let n = 0

describe('an exported-but-empty variable is unset (built CLI)', () => {
  it('JENKINS_URL= spigot drain --config sp.yml replays to the config file’s Jenkins', async () => {
    const jenkins = await jenkinsStandIn('accept')
    const dataDir = join(dir, `d${++n}`)
    const queue = await openQueue(`sqlite:${join(dataDir, 'cistern.db')}#spigot`, {fifo: true})
    afterAll(async () => {
      await queue.close()
      await jenkins.close()
    })
    const hook = webhook('push', {repo: 'acme/settings'})
    await enqueue(queue, [hook.message])
    const config = join(dataDir, 'sp.yml')
    writeFileSync(config, `spigot:\n  jenkinsUrl: ${JSON.stringify(jenkins.url)}\n`)

    const env = {CISTERN_DATA_DIR: dataDir, JENKINS_URL: '', JENKINS_USER: '', JENKINS_TOKEN: '', CISTERN_QUEUE: ''}
    const status = await cistern(['spigot', 'status', '--config', config, '--json'], {env})
    expect(status.exitCode).toBe(0)
    expect(JSON.parse(String(status.stdout)).jenkins).toEqual([expect.objectContaining({url: jenkins.url, state: 'up'})])

    const drained = await cistern(['spigot', 'drain', '--config', config], {env})
    expect(drained.stderr).not.toMatch(/no Jenkins URL/)
    expect(drained.exitCode).toBe(0)
    expect(drained.stdout).toMatch(/^drain: 1 delivered/)
    expect(jenkins.webhooks.map((request) => request.body.equals(hook.raw))).toEqual([true])
  })

  it('GITHUB_URL= status-queue work --once uses the default GitHub API instead of refusing ""', async () => {
    const dataDir = join(dir, `d${++n}`)
    const result = await cistern(['status-queue', 'work', '--once', '--json'], {
      env: {CISTERN_DATA_DIR: dataDir, GITHUB_URL: '', GITHUB_ACCESS_TOKEN: 'ghp_settings_test_token'},
    })
    expect(result.stderr).not.toMatch(/is not a URL/)
    expect(result.exitCode).toBe(0)
    expect(JSON.parse(String(result.stdout))).toMatchObject({github: 'https://api.github.com', received: 0})
  })
})
