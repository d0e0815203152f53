import {createServer} from 'node:net'
import type {AddressInfo} from 'node:net'

import {execa} from 'execa'
import {afterEach, describe, expect, it} from 'vitest'

import {defaultQueueUrl} from '../../src/core/paths.js'
import {openQueue} from '../../src/core/queue/index.js'
import {decodeMessage, replayBytes} from '../../src/core/webhook-message.js'
import {cistern} from '../helpers/cli.js'
import {githubDelivery, githubExample, jenkinsStandIn, signatureVerifies} from '../helpers/jenkins.js'
import {startServe} from '../helpers/spigot-serve.js'
import {tempDir} from '../helpers/tmp.js'

const SECRET = 'e2e-webhook-secret'
const cleanup: Array<() => unknown> = []
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close()
})

describe('cistern spigot serve (built CLI)', () => {
  it('forwards to Jenkins while ON, queues while OFF (toggle), and stops cleanly on SIGTERM', async () => {
    const dataDir = tempDir('cistern-e2e-serve-')
    const jenkins = await jenkinsStandIn('accept')
    cleanup.push(() => jenkins.close())
    const env = {CISTERN_DATA_DIR: dataDir, JENKINS_URL: jenkins.url, GITHUB_WEBHOOK_SECRET: SECRET}
    const {child, url} = await startServe(env, ['--json'], cleanup)

    const push = githubDelivery('push', githubExample('push'), {secret: SECRET, pretty: true})
    const forwarded = await fetch(url + '/github-webhook/', {method: 'POST', headers: push.headers, body: push.body})
    expect(forwarded.status).toBe(200)
    expect(jenkins.webhooks).toHaveLength(1)
    expect(jenkins.webhooks[0]!.body.equals(push.body)).toBe(true)
    expect(signatureVerifies(SECRET, jenkins.webhooks[0]!)).toBe(true)

    const unsigned = githubDelivery('push', githubExample('push'))
    expect((await fetch(url, {method: 'POST', headers: unsigned.headers, body: unsigned.body})).status).toBe(401)

    const toggled = await cistern(['spigot', 'toggle', '--state', 'OFF'], {env: {CISTERN_DATA_DIR: dataDir}})
    expect(toggled.exitCode).toBe(0)
    const pr = githubDelivery('pull_request', githubExample('pull_request', {action: 'opened'}), {secret: SECRET})
    const queuedAnswer = await fetch(url, {method: 'POST', headers: pr.headers, body: pr.body})
    expect(queuedAnswer.status).toBe(202)
    expect(jenkins.webhooks).toHaveLength(1)

    const health = (await (await fetch(url + '/healthz')).json()) as Record<string, unknown>
    expect(health).toMatchObject({ok: true, state: 'OFF', backlog: 1})
    const metrics = await (await fetch(url + '/metrics')).text()
    expect(metrics).toContain('cistern_spigot_webhooks_total{outcome="forwarded",reason="jenkins-accepted"} 1')
    expect(metrics).toContain('cistern_spigot_webhooks_total{outcome="queued",reason="spigot-off"} 1')

    child.kill('SIGTERM')
    const result = await child
    expect(result.exitCode).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({answered: {forwarded: 1, queued: 1, rejected: 1, accepted: 0}, stateBackend: 'local'})

    // The queued webhook is in the embedded default queue, raw bytes intact.
    const queue = await openQueue(defaultQueueUrl('spigot', {CISTERN_DATA_DIR: dataDir}), {mustExist: true})
    try {
      const [message] = await queue.peek(10)
      const decoded = decodeMessage(message!.body)
      expect(replayBytes(decoded).equals(pr.body)).toBe(true)
      expect(decoded.headers['X-Hub-Signature-256']).toBe(pr.headers['X-Hub-Signature-256'])
    } finally {
      await queue.close()
    }
  })

  it('Jenkins down while ON: the webhook is queued and answered 202 within the forward timeout', async () => {
    const dataDir = tempDir('cistern-e2e-serve-')
    const jenkins = await jenkinsStandIn('hang')
    cleanup.push(() => jenkins.close())
    const {url} = await startServe({CISTERN_DATA_DIR: dataDir, JENKINS_URL: jenkins.url}, ['--forward-timeout', '300'], cleanup)
    const hook = githubDelivery('issue_comment', githubExample('issue_comment'))
    const answer = await fetch(url, {method: 'POST', headers: hook.headers, body: hook.body})
    expect(answer.status).toBe(202)
    expect(await answer.json()).toMatchObject({queued: ['default'], state: 'ON'})
  })

  it('operator errors: no Jenkins URL → exit 2 naming the flag; port in use → exit 2', async () => {
    const dataDir = tempDir('cistern-e2e-serve-')
    const missing = await cistern(['spigot', 'serve', '--port', '0'], {env: {CISTERN_DATA_DIR: dataDir, JENKINS_URL: ''}})
    expect(missing.exitCode).toBe(2)
    expect(missing.stderr).toMatch(/--jenkins-url/)
    expect(missing.stderr).not.toMatch(/\n\s+at /)

    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    cleanup.push(() => new Promise((resolve) => blocker.close(resolve)))
    const port = (blocker.address() as AddressInfo).port
    const busy = await cistern(['spigot', 'serve', '--port', String(port), '--host', '127.0.0.1'], {
      env: {CISTERN_DATA_DIR: dataDir, JENKINS_URL: 'http://127.0.0.1:9/'},
    })
    expect(busy.exitCode).toBe(2)
    expect(busy.stderr).toMatch(/already in use.*--port/)
  })
})

describe('cistern spigot serve killed with SIGKILL under load', () => {
  it('every webhook answered 2xx is in the queue', async () => {
    const dataDir = tempDir('cistern-e2e-serve-kill-')
    expect((await cistern(['spigot', 'toggle', '--state', 'OFF'], {env: {CISTERN_DATA_DIR: dataDir}})).exitCode).toBe(0)
    const {child, url} = await startServe({CISTERN_DATA_DIR: dataDir, JENKINS_URL: 'http://127.0.0.1:9/'}, [], cleanup)
    const acknowledged: string[] = []
    let sent = 0
    const worker = async () => {
      while (sent < 400) {
        const hook = githubDelivery('push', githubExample('push', {index: sent % 5}), {delivery: `kill-${sent++}`})
        try {
          const response = await fetch(url, {method: 'POST', headers: hook.headers, body: hook.body})
          if (response.status >= 200 && response.status < 300) acknowledged.push(hook.delivery)
          await response.arrayBuffer()
        } catch {
          return // the server is gone
        }
      }
    }
    const load = Promise.all(Array.from({length: 16}, worker))
    for (let i = 0; i < 500 && acknowledged.length < 60; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    child.kill('SIGKILL')
    await load
    await child.catch(() => undefined)
    expect(acknowledged.length).toBeGreaterThanOrEqual(60)

    const queue = await openQueue(defaultQueueUrl('spigot', {CISTERN_DATA_DIR: dataDir}), {mustExist: true})
    try {
      const stored = new Set<string>()
      for (let i = 0; i < 1000; i++) {
        const batch = await queue.receive({maxMessages: 10, visibilityTimeout: 60})
        if (batch.length === 0) break
        for (const message of batch) stored.add(decodeMessage(message.body).headers['X-GitHub-Delivery']!)
        await queue.deleteBatch(batch.map((m) => m.receiptHandle))
      }
      const missing = acknowledged.filter((delivery) => !stored.has(delivery))
      expect(missing).toEqual([])
    } finally {
      await queue.close()
    }
  })
})

describe('the built Lambda module (package export "cistern/lambda")', () => {
  it('handles an original mapping-template event: OFF → queued in the embedded queue', async () => {
    const dataDir = tempDir('cistern-e2e-lambda-')
    const queueUrl = defaultQueueUrl('spigot', {CISTERN_DATA_DIR: dataDir})
    const payload = githubExample('push')
    const event = {spigot_state: 'OFF', from_queue: '', body: payload, headers: {'X-GitHub-Event': 'push', 'X-GitHub-Delivery': 'e2e-lambda-1', 'Content-Type': 'application/json'}}
    const script = `import {handler} from 'cistern/lambda'
const result = await handler(JSON.parse(process.env.EVENT))
process.stdout.write(JSON.stringify(result))`
    const run = await execa('node', ['--input-type=module', '-e', script], {
      cwd: new URL('../..', import.meta.url),
      env: {EVENT: JSON.stringify(event), TARGET_URL: 'http://127.0.0.1:9', TARGET_QUEUE: `${queueUrl}?fifo=true`, CISTERN_DATA_DIR: dataDir, LOG_LEVEL: 'error'},
      reject: false,
      timeout: 30_000,
    })
    expect(run.stderr).toBe('')
    expect(run.exitCode).toBe(0)
    expect(JSON.parse(run.stdout)).toMatchObject({status: 202, queued: ['default'], state: 'OFF'})
    const queue = await openQueue(queueUrl, {mustExist: true})
    try {
      const [message] = await queue.peek(1)
      expect(decodeMessage(message!.body)).toMatchObject({spigot_state: 'OFF', body: payload})
    } finally {
      await queue.close()
    }
  })
})
