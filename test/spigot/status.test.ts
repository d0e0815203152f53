import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import {closeJenkinsAgents} from '../../src/spigot/jenkins.js'
import {openStateStore} from '../../src/spigot/state.js'
import {renderStatus, spigotStatus} from '../../src/spigot/status.js'
import {closedPort, jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, webhook} from './drain-fixtures.js'

afterAll(() => closeJenkinsAgents())

describe('spigotStatus', () => {
  const dir = tempDir('cistern-status-')

  it('reports state, backlog and each target up / quieting down / down with response time', async () => {
    const dbPath = join(dir, 'status.db')
    const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true, maxReceiveCount: 0})
    const state = await openStateStore({backend: 'local', dbPath})
    const up = await jenkinsStandIn('accept')
    const quiet = await jenkinsStandIn('accept', {quietingDown: true})
    const downPort = await closedPort()
    try {
      await state.set('OFF')
      await enqueue(queue, [webhook('push', {repo: 'a/a'}).message, webhook('push', {repo: 'b/b'}).message, webhook('push', {repo: 'c/c'}).message])
      const [held] = await queue.receive({maxMessages: 1, visibilityTimeout: 30})
      expect(held).toBeDefined()

      const config = {
        targets: [
          {name: 'default', url: up.url},
          {name: 'quiet', url: quiet.url},
          {name: 'gone', url: `http://127.0.0.1:${downPort}/`},
        ],
      }
      const status = await spigotStatus({state, queue, config, healthTimeoutMs: 2000})
      expect(status).toMatchObject({state: 'OFF', backend: 'local', stateAt: dbPath, backlog: 3, healthy: false})
      expect(status.queue).toMatchObject({visible: 2, inFlight: 1, delayed: 0, dead: 0})
      expect(status.jenkins.map((h) => [h.name, h.state])).toEqual([
        ['default', 'up'],
        ['quiet', 'quieting-down'],
        ['gone', 'down'],
      ])
      for (const health of status.jenkins) expect(health.ms).toBeGreaterThanOrEqual(0)
      // Reads only: nothing was POSTed, the state is unchanged.
      expect(up.webhooks).toHaveLength(0)
      expect(await state.get()).toBe('OFF')

      const text = renderStatus(status)
      expect(text).toMatch(/^spigot: {2}OFF {2}\(local: /)
      expect(text).toContain('backlog: 3 waiting — 2 visible, 1 in flight, 0 delayed; 0 dead')
      expect(text).toMatch(/default http:\/\/127\.0\.0\.1:\d+\/ up \(\d+ ms\)/)
      expect(text).toMatch(/quiet http:\/\/127\.0\.0\.1:\d+\/ quieting down \(\d+ ms\)/)
      expect(text).toMatch(/gone http:\/\/127\.0\.0\.1:\d+\/ down \(\d+ ms\) — unreachable/)
    } finally {
      await up.close()
      await quiet.close()
      await queue.close()
      await state.close()
    }
  })

  it('a healthy spigot says so', async () => {
    const dbPath = join(dir, 'ok.db')
    const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true})
    const state = await openStateStore({backend: 'local', dbPath})
    const up = await jenkinsStandIn('accept')
    try {
      const status = await spigotStatus({state, queue, config: {targets: [{name: 'default', url: up.url}]}})
      expect(status).toMatchObject({state: 'ON', backlog: 0, healthy: true})
    } finally {
      await up.close()
      await queue.close()
      await state.close()
    }
  })
})
