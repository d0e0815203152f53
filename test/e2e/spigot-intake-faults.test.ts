/**
 * Faults at the spigot's intake, over the built CLI (`npm run build` first): a SIGTERM while many
 * keep-alive clients send (issue 11.10), kill -9 under load, again and again. The rule under test
 * (docs/spigot.md): a 2xx is given only once the queue holds the webhook, and a request the server
 * took is answered — a client sees an answer or a refused connection, never a reset.
 */
import {Pool} from 'undici'
import {afterEach, describe, expect, it} from 'vitest'

import {defaultQueueUrl} from '../../src/core/paths.js'
import {openQueue} from '../../src/core/queue/index.js'
import {decodeMessage} from '../../src/core/webhook-message.js'
import {cistern} from '../helpers/cli.js'
import {githubDelivery, githubExample} from '../helpers/jenkins.js'
import {startServe} from '../helpers/spigot-serve.js'
import {tempDir} from '../helpers/tmp.js'

const cleanup: Array<() => unknown> = []
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close()
})

/** What one client saw for each request it sent. */
interface Tally {
  /** X-GitHub-Delivery of each webhook answered 2xx. */
  acknowledged: string[]
  /** Answered with another status (e.g. 503 while closing). */
  other: number
  /** Connection refused: the server no longer accepted connections (never taken). */
  refused: number
  /** Anything else: a request the server took and never answered (a reset, "other side closed"). */
  broken: string[]
}

/**
 * `clients` keep-alive clients (one connection each) sending webhooks one after another until
 * `stop()` or their connection is refused; each request is classified.
 */
function keepAliveLoad(url: string, clients: number, prefix: string) {
  const tally: Tally = {acknowledged: [], other: 0, refused: 0, broken: []}
  let stopped = false
  let sent = 0
  const pools = Array.from({length: clients}, () => new Pool(url, {connections: 1, pipelining: 1, keepAliveTimeout: 60_000}))
  const client = async (pool: Pool) => {
    for (let i = 0; i < 5000 && !stopped; i++) {
      const hook = githubDelivery('push', githubExample('push', {index: sent % 5}), {delivery: `${prefix}-${sent++}`})
      try {
        const response = await pool.request({path: '/', method: 'POST', headers: hook.headers, body: hook.body})
        await response.body.text()
        if (response.statusCode >= 200 && response.statusCode < 300) tally.acknowledged.push(hook.delivery)
        else tally.other++
      } catch (error) {
        const code = (error as {code?: string}).code
        if (code === 'ECONNREFUSED') {
          tally.refused++
          return
        }
        tally.broken.push(`${code ?? ''} ${(error as Error).message}`)
        return
      }
    }
  }
  const running = Promise.all(pools.map(client))
  return {
    tally,
    get answered() {
      return tally.acknowledged.length + tally.other
    },
    async stop() {
      stopped = true
      await running
      await Promise.all(pools.map((pool) => pool.destroy()))
    },
    done: running,
  }
}

/** The X-GitHub-Delivery of every message in the embedded spigot queue of `dataDir`. */
async function queuedDeliveries(dataDir: string): Promise<Set<string>> {
  const queue = await openQueue(defaultQueueUrl('spigot', {CISTERN_DATA_DIR: dataDir}), {mustExist: true})
  try {
    // peek, not receive: a receive hands out one message per repository (group) at a time.
    return new Set((await queue.peek(100_000)).map((message) => decodeMessage(message.body).headers['X-GitHub-Delivery']!))
  } finally {
    await queue.close()
  }
}

async function until(condition: () => boolean, ms: number): Promise<void> {
  for (let waited = 0; !condition() && waited < ms; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10))
}

describe('spigot serve: SIGTERM while keep-alive clients send', () => {
  it('answers every request it took, closes idle keep-alive connections, resets none, exits 0', async () => {
    const dataDir = tempDir('cistern-e2e-serve-term-')
    expect((await cistern(['spigot', 'toggle', '--state', 'OFF'], {env: {CISTERN_DATA_DIR: dataDir}})).exitCode).toBe(0)
    const {child, url} = await startServe({CISTERN_DATA_DIR: dataDir, JENKINS_URL: 'http://127.0.0.1:9/'}, ['--json'], cleanup)

    // A client that sent once and then sits on its idle keep-alive connection.
    const idle = new Pool(url, {connections: 1, keepAliveTimeout: 60_000})
    cleanup.push(() => idle.destroy())
    const first = await idle.request({path: '/healthz', method: 'GET'})
    await first.body.text()

    const load = keepAliveLoad(url, 64, 'term')
    await until(() => load.answered >= 300, 20_000)
    expect(load.answered).toBeGreaterThanOrEqual(300)
    child.kill('SIGTERM')
    const exit = await child
    await load.stop()

    expect(load.tally.broken).toEqual([])
    expect(exit.exitCode).toBe(0)
    // Every client went on until the server stopped taking connections: the shutdown happened under load.
    expect(load.tally.refused).toBe(64)
    const stored = await queuedDeliveries(dataDir)
    expect(load.tally.acknowledged.filter((delivery) => !stored.has(delivery))).toEqual([])
    expect(JSON.parse(exit.stdout)).toMatchObject({answered: {queued: load.tally.acknowledged.length}})
  })
})

describe('spigot serve: kill -9 under load, restarted, three times', () => {
  it('every webhook answered 2xx is in the queue after each restart', async () => {
    const dataDir = tempDir('cistern-e2e-serve-kill3-')
    expect((await cistern(['spigot', 'toggle', '--state', 'OFF'], {env: {CISTERN_DATA_DIR: dataDir}})).exitCode).toBe(0)
    const acknowledged: string[] = []
    for (let round = 0; round < 3; round++) {
      const {child, url} = await startServe({CISTERN_DATA_DIR: dataDir, JENKINS_URL: 'http://127.0.0.1:9/'}, [], cleanup)
      const load = keepAliveLoad(url, 16, `kill${round}`)
      await until(() => load.answered >= 100 + round * 37, 20_000)
      child.kill('SIGKILL')
      await child.catch(() => undefined)
      await load.stop()
      // A killed server resets what it held: those were never acknowledged, and may or may not be stored.
      expect(load.tally.acknowledged.length).toBeGreaterThanOrEqual(100)
      acknowledged.push(...load.tally.acknowledged)
    }
    const stored = await queuedDeliveries(dataDir)
    expect(acknowledged.filter((delivery) => !stored.has(delivery))).toEqual([])
  })
})
