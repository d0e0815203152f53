import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import {JenkinsClient} from '../../src/spigot/jenkins.js'
import {openStateStore} from '../../src/spigot/state.js'
import {renderStatus, spigotStatus, statusSamples, watchStatus} from '../../src/spigot/status.js'
import {closedPort, jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, webhook} from './drain-fixtures.js'

const jenkins = new JenkinsClient()
afterAll(() => jenkins.close())

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
      const status = await spigotStatus({state, queue, config, jenkins, healthTimeoutMs: 2000})
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
      expect(text).toMatch(/0 dead, oldest \d+s {2}\(sqlite:/)
      expect(status.queue.oldestAgeSeconds).toBeGreaterThanOrEqual(0)

      // What examples/monitoring reads, for the intake's /metrics.
      const samples = statusSamples(status)
      expect(samples).toContainEqual({name: 'cistern_queue_messages', labels: {queue: queue.url, state: 'visible'}, value: 2})
      expect(samples).toContainEqual({name: 'cistern_queue_messages', labels: {queue: queue.url, state: 'in_flight'}, value: 1})
      expect(samples).toContainEqual({name: 'cistern_queue_messages', labels: {queue: queue.url, state: 'dead'}, value: 0})
      expect(samples).toContainEqual({name: 'cistern_queue_oldest_message_age_seconds', labels: {queue: queue.url}, value: status.queue.oldestAgeSeconds})
      expect(samples.filter((sample) => sample.name === 'cistern_target_up').map((sample) => [sample.labels.target, sample.value])).toEqual([
        ['jenkins:default', 1],
        ['jenkins:quiet', 0],
        ['jenkins:gone', 0],
      ])
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
      const status = await spigotStatus({state, queue, jenkins, config: {targets: [{name: 'default', url: up.url}]}})
      expect(status).toMatchObject({state: 'ON', backlog: 0, healthy: true})
    } finally {
      await up.close()
      await queue.close()
      await state.close()
    }
  })

  it('--watch: one JSON line per look off a terminal (with the backlog\'s rate), redrawn in place on one', async () => {
    const dbPath = join(dir, 'watch.db')
    const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true})
    const state = await openStateStore({backend: 'local', dbPath})
    const up = await jenkinsStandIn('accept')
    try {
      await enqueue(queue, [webhook('push', {repo: 'a/a'}).message, webhook('push', {repo: 'b/b'}).message])
      const options = {state, queue, jenkins, config: {targets: [{name: 'default', url: up.url}]}, intervalMs: 200, looks: 3}
      const lines: string[] = []
      let drained = false
      const last = await watchStatus({
        ...options,
        out: {
          write: (text: string) => {
            lines.push(text)
            // Between the first and the second look, a drain takes both.
            if (!drained) {
              drained = true
              void queue.receive({maxMessages: 10}).then((got) => queue.deleteBatch(got.map((m) => m.receiptHandle)))
            }
            return true
          },
        },
      })
      expect(lines).toHaveLength(3)
      const looks = lines.map((line) => JSON.parse(line))
      expect(looks[0]).toMatchObject({backlog: 2, healthy: true})
      expect(looks[0].backlogPerSecond).toBeUndefined()
      expect(looks[1]).toMatchObject({backlog: 0})
      expect(looks[1].backlogPerSecond).toBeLessThan(0)
      expect(last.backlog).toBe(0)

      const screen: string[] = []
      await watchStatus({...options, looks: 2, out: {isTTY: true, write: (text: string) => (screen.push(text), true)}})
      expect(screen[0]!.startsWith('\r\u001B[Jspigot:  ON')).toBe(true)
      // The second look goes back up over the first block (3 lines) and clears it.
      expect(screen[1]!.startsWith('\u001B[3A\r\u001B[Jspigot:  ON')).toBe(true)
      expect(screen[1]).toContain('backlog: 0 waiting (steady)')
    } finally {
      await up.close()
      await queue.close()
      await state.close()
    }
  })
})
