// The built CLI (dist/) as a user runs it: refresh with `npx tsc -p tsconfig.build.json`.
import {existsSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import {openStateStore} from '../../src/spigot/state.js'
import {cistern} from '../helpers/cli.js'
import {jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, webhook} from '../spigot/drain-fixtures.js'

const dir = tempDir('cistern-e2e-maint-')
const env = {CISTERN_DATA_DIR: dir, CISTERN_LOG_FORMAT: 'json'}
const dbPath = join(dir, 'cistern.db')

describe('cistern spigot maintenance (built CLI)', async () => {
  const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true})
  const state = await openStateStore({backend: 'local', dbPath})
  afterAll(async () => {
    await queue.close()
    await state.close()
  })

  it('OFF → CMD (touches a file) → healthy → ON → drain', async () => {
    const jenkins = await jenkinsStandIn('accept')
    try {
      const hooks = [webhook('push', {repo: 'a/a'}), webhook('issue_comment', {repo: 'b/b'})]
      await enqueue(queue, hooks.map((h) => h.message))
      const marker = join(dir, 'upgraded')
      // CMD checks the spigot is OFF while it runs (via the CLI itself) and "upgrades" by touching a file.
      const script = `const {execFileSync} = require('node:child_process'); const out = execFileSync(process.execPath, [${JSON.stringify(
        join(process.cwd(), 'bin/run.js'),
      )}, 'spigot', 'status', '--json']).toString(); if (JSON.parse(out).state !== 'OFF') process.exit(42); require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'done')`
      const result = await cistern(['spigot', 'maintenance', '--timeout', '10', '--json', '--', process.execPath, '-e', script], {env: {...env, JENKINS_URL: jenkins.url}})
      expect(result.exitCode).toBe(0)
      expect(existsSync(marker)).toBe(true)
      const out = JSON.parse(String(result.stdout))
      expect(out).toMatchObject({outcome: 'ok', before: 'ON', state: 'ON', command: {exitCode: 0}, drain: {delivered: 2, remaining: 0}})
      expect(jenkins.webhooks.map((r) => r.headers['x-github-delivery']).sort()).toEqual(hooks.map((h) => h.delivery).sort())
      expect(await state.get()).toBe('ON')
    } finally {
      await jenkins.close()
    }
  })

  it('CMD fails: exit with its code, spigot stays OFF, queue untouched', async () => {
    const jenkins = await jenkinsStandIn('accept')
    try {
      await enqueue(queue, [webhook('push').message])
      const result = await cistern(['spigot', 'maintenance', '--jenkins-url', jenkins.url, '--', process.execPath, '-e', 'process.exit(5)'], {env})
      expect(result.exitCode).toBe(5)
      expect(String(result.stderr)).toMatch(/Error: maintenance command failed \(exit 5\).* — the spigot stays OFF/)
      expect(await state.get()).toBe('OFF')
      expect(jenkins.requests).toHaveLength(0)
      expect((await queue.stats()).visible).toBe(1)

      const restored = await cistern(['spigot', 'maintenance', '--jenkins-url', jenkins.url, '--restore-on-failure', '--', process.execPath, '-e', 'process.exit(4)'], {env})
      expect(restored.exitCode).toBe(4)
      // It was OFF before this run: restoring keeps it OFF.
      expect(await state.get()).toBe('OFF')
    } finally {
      await jenkins.close()
    }
  })
})
