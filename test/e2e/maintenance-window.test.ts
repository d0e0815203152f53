// One maintenance window end to end, with the built CLI (dist/: refresh with `npx tsc -p tsconfig.build.json`)
// and loopback stand-ins only. The story:
//   1. `cistern spigot serve` forwards real GitHub payloads (signed) to Jenkins while it is up;
//   2. Jenkins goes down mid-stream: serve queues what it cannot forward;
//   3. a drain's health check fails: `spigot drain --auto-off` exits 3 and sets the spigot OFF;
//   4. the rest of the stream (and one GitHub redelivery) is queued while OFF;
//   5. `spigot maintenance -- CMD` where CMD "brings Jenkins back"; its drain is SIGKILLed mid-run;
//   6. a second `spigot drain` finishes the job.
// Checked: every delivery reached Jenkins byte-identical with a verifying X-Hub-Signature-256, in
// order per repository, and only the deliveries in flight at the kill were delivered twice.
import {createHmac} from 'node:crypto'
import {join} from 'node:path'

import {execa} from 'execa'
import {afterAll, describe, expect, it, vi} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import {openStateStore} from '../../src/spigot/state.js'
import {CLI, cistern} from '../helpers/cli.js'
import {standIn} from '../helpers/http.js'
import {type GitHubDelivery, githubDelivery, githubExample, jenkinsStandIn, signatureVerifies} from '../helpers/jenkins.js'
import {startServe} from '../helpers/spigot-serve.js'
import {tempDir} from '../helpers/tmp.js'

const SECRET = 'maintenance-window-secret'
const REPOSITORIES = ['acme/api', 'acme/web', 'acme/infra', 'Codertocat/Hello-World']
const EVENTS = ['push', 'pull_request', 'issue_comment'] as const
const TOTAL = 60
const LIVE = 20 // sent while Jenkins is up
const WHILE_DOWN = 10 // sent after Jenkins went down, before the drain noticed
// the rest (30) are sent while the spigot is OFF

const dataDir = tempDir('cistern-e2e-window-')
const dbPath = join(dataDir, 'cistern.db')
const baseEnv = {CISTERN_DATA_DIR: dataDir, CISTERN_LOG_FORMAT: 'json', NO_COLOR: '1'}

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const close of cleanup.splice(0).reverse()) await close()
})

interface Sent extends GitHubDelivery {
  repository: string
  seq: number
}

/** The n-th delivery of the stream: real example payloads, spread over the repositories. */
function nthDelivery(n: number): Sent {
  const event = EVENTS[n % EVENTS.length]!
  const repository = REPOSITORIES[n % REPOSITORIES.length]!
  const payload = githubExample(event, {index: Math.floor(n / EVENTS.length) % (event === 'push' ? 7 : 9)})
  const [owner, name] = repository.split('/') as [string, string]
  const repo = payload.repository as {full_name: string; name: string; owner: {login: string}}
  repo.full_name = repository
  repo.name = name
  repo.owner.login = owner
  return {...githubDelivery(event, payload, {secret: SECRET, pretty: n % 2 === 0}), repository, seq: n}
}

const deliveryOf = (req: {headers: Record<string, string | string[] | undefined>}) => String(req.headers['x-github-delivery'])

async function post(url: string, hook: GitHubDelivery): Promise<number> {
  const answer = await fetch(url, {method: 'POST', headers: hook.headers, body: hook.body})
  await answer.arrayBuffer()
  return answer.status
}

describe('a Jenkins maintenance window, end to end (built CLI)', () => {
  it('queues while Jenkins is down or the spigot is OFF and replays everything, signed and in order', {timeout: 60_000}, async () => {
    const jenkins = await jenkinsStandIn('accept')
    cleanup.push(() => jenkins.close())
    // What the maintenance command calls to "restart Jenkins" (the stand-in lives in this process).
    const control = await standIn(async (_req, res) => {
      await jenkins.setMode('accept')
      res.end('jenkins is back')
    })
    cleanup.push(() => control.close())
    const env = {...baseEnv, JENKINS_URL: jenkins.url, GITHUB_WEBHOOK_SECRET: SECRET}
    const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true})
    const state = await openStateStore({backend: 'local', dbPath})
    cleanup.push(() => state.close())
    cleanup.push(() => queue.close())

    const {child: serve, url} = await startServe(env, ['--forward-timeout', '1000', '--json'], cleanup)
    const stream = Array.from({length: TOTAL}, (_, n) => nthDelivery(n))
    expect(new Set(stream.map((hook) => hook.delivery)).size).toBe(TOTAL)

    // 1. Jenkins up, spigot ON: forwarded live, one at a time as GitHub would.
    for (const hook of stream.slice(0, LIVE)) expect(await post(url, hook)).toBe(200)
    expect(jenkins.webhooks).toHaveLength(LIVE)

    // 2. Jenkins goes down (connections refused): serve queues instead, still ON.
    await jenkins.setMode('refuse')
    for (const hook of stream.slice(LIVE, LIVE + WHILE_DOWN)) expect(await post(url, hook)).toBe(202)

    // 3. The scheduled drain finds Jenkins down: exit 3, nothing touched, the spigot OFF.
    const failedDrain = await cistern(['spigot', 'drain', '--auto-off', '--health-timeout', '1000', '--json'], {env})
    expect(failedDrain.exitCode).toBe(3)
    expect(JSON.parse(String(failedDrain.stdout))).toMatchObject({stoppedBy: 'unhealthy', delivered: 0, remaining: WHILE_DOWN, autoOff: {before: 'ON', after: 'OFF'}})
    const status = await cistern(['spigot', 'status', '--json', '--health-timeout', '1000'], {env})
    expect(status.exitCode).toBe(0)
    expect(JSON.parse(String(status.stdout))).toMatchObject({state: 'OFF'})

    // 4. The spigot is OFF: everything else is queued; a manual redelivery of a queued webhook
    //    (same X-GitHub-Delivery, as GitHub's "Redeliver" button does) is not queued twice.
    for (const hook of stream.slice(LIVE + WHILE_DOWN)) expect(await post(url, hook)).toBe(202)
    expect(await post(url, stream[LIVE + 3]!)).toBe(202)
    const queuedStats = await queue.stats()
    expect(queuedStats.visible + queuedStats.inFlight + queuedStats.delayed).toBe(TOTAL - LIVE)
    expect(jenkins.webhooks).toHaveLength(LIVE)

    // 5. Maintenance: OFF → CMD (brings Jenkins back) → healthy → ON → drain, killed mid-drain.
    const cmd = `fetch(${JSON.stringify(control.url + '/restart')}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`
    const maintenance = execa(
      'node',
      [
        CLI,
        'spigot',
        'maintenance',
        '--timeout',
        '20',
        '--poll-interval',
        '100',
        '--concurrency',
        '3',
        '--rate',
        '20',
        '--visibility-timeout',
        '2',
        '--',
        process.execPath,
        '-e',
        cmd,
      ],
      {env, reject: false, timeout: 40_000},
    )
    cleanup.push(() => {
      if (maintenance.exitCode === null) maintenance.kill('SIGKILL')
      return maintenance.catch(() => undefined)
    })
    // Let about ten replays through, then make Jenkins stop answering so deliveries are surely
    // in flight when the maintenance process is killed.
    await vi.waitFor(() => expect(jenkins.webhooks.length).toBeGreaterThanOrEqual(LIVE + 10), {timeout: 20_000, interval: 10})
    await jenkins.setMode('hang')
    const atHang = jenkins.webhooks.length
    await vi.waitFor(() => expect(jenkins.webhooks.length).toBeGreaterThan(atHang), {timeout: 5000, interval: 10})
    await new Promise((resolve) => setTimeout(resolve, 100))
    maintenance.kill('SIGKILL')
    const killed = await maintenance
    expect(killed.signal).toBe('SIGKILL')
    const receivedBeforeKill = jenkins.webhooks.map(deliveryOf)
    const unansweredAtKill = new Set(jenkins.webhooks.slice(atHang).map(deliveryOf))
    const inFlightAtKill = (await queue.stats()).inFlight
    expect(await state.get()).toBe('ON') // maintenance turned it ON before its drain
    await jenkins.setMode('accept')

    // 6. A second drain (repeated while the killed drain's leases run out, bounded).
    let secondDrains = 0
    for (; secondDrains < 12; secondDrains++) {
      const again = await cistern(['spigot', 'drain', '--json'], {env})
      expect(again.exitCode).toBe(0)
      if (JSON.parse(String(again.stdout)).remaining === 0) break
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    const finalStats = await queue.stats()
    expect(finalStats).toMatchObject({visible: 0, inFlight: 0, delayed: 0, dead: 0})

    serve.kill('SIGTERM')
    const served = await serve
    expect(served.exitCode).toBe(0)
    const answered = JSON.parse(served.stdout).answered as {forwarded: number; queued: number; rejected: number}

    // Nothing lost: every delivery reached Jenkins, byte for byte, its signature verifying.
    const received = jenkins.webhooks
    const sentBy = new Map(stream.map((hook) => [hook.delivery, hook]))
    for (const request of received) {
      const hook = sentBy.get(deliveryOf(request))
      expect(hook, `unknown delivery ${deliveryOf(request)}`).toBeDefined()
      expect(request.body.equals(hook!.body)).toBe(true)
      expect(signatureVerifies(SECRET, request)).toBe(true)
      expect(request.headers['x-hub-signature-256']).toBe('sha256=' + createHmac('sha256', SECRET).update(hook!.body).digest('hex'))
      expect(request.headers['x-github-event']).toBe(hook!.event)
      expect(request.url).toBe(hook!.event === 'push' ? '/github-webhook/' : '/ghprbhook/')
    }
    const counts = new Map<string, number>()
    for (const request of received) counts.set(deliveryOf(request), (counts.get(deliveryOf(request)) ?? 0) + 1)
    expect(new Set(counts.keys())).toEqual(new Set(sentBy.keys()))

    // Nothing twice, except what was in flight when the drain was killed (each at most twice).
    const duplicates = [...counts].filter(([, count]) => count > 1).map(([delivery]) => delivery)
    for (const delivery of duplicates) {
      expect(counts.get(delivery)).toBe(2)
      expect(receivedBeforeKill).toContain(delivery)
    }
    for (const delivery of unansweredAtKill) expect(duplicates).toContain(delivery)
    expect(duplicates.length).toBeLessThanOrEqual(Math.max(inFlightAtKill, unansweredAtKill.size))
    expect(duplicates.length).toBeLessThanOrEqual(3) // --concurrency 3

    // In order per repository: what Jenkins saw (a replayed duplicate right after its first copy) is the send order.
    for (const repository of REPOSITORIES) {
      const seen = received
        .map(deliveryOf)
        .filter((delivery) => sentBy.get(delivery)!.repository === repository)
        .filter((delivery, i, all) => i === 0 || all[i - 1] !== delivery)
      expect(seen, repository).toEqual(stream.filter((hook) => hook.repository === repository).map((hook) => hook.delivery))
    }

    // The intake's own account: 20 forwarded, the rest (and the redelivery) queued, none rejected.
    expect(answered.forwarded).toBe(LIVE)
    expect(answered.rejected).toBe(0)
    expect(answered.queued).toBe(TOTAL - LIVE + 1)

    const summary = {
      sent: TOTAL,
      redelivered: 1,
      forwardedLive: LIVE,
      queued: TOTAL - LIVE,
      queuedWhileJenkinsDown: WHILE_DOWN,
      queuedWhileOff: TOTAL - LIVE - WHILE_DOWN,
      replayed: received.length - LIVE,
      replayedBeforeKill: receivedBeforeKill.length - LIVE,
      duplicates: duplicates.length,
      inFlightAtKill,
      secondDrainRuns: secondDrains + 1,
      repositories: REPOSITORIES.length,
    }
    console.log(`maintenance window: ${JSON.stringify(summary)}`)
    expect(summary.replayed - summary.duplicates).toBe(TOTAL - LIVE)
  })
})
