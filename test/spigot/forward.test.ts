import {afterEach, describe, expect, it} from 'vitest'

import {JenkinsForwarder} from '../../src/spigot/forward.js'
import {targetKey} from '../../src/spigot/jenkins.js'
import type {Webhook} from '../../src/spigot/webhook.js'
import {jenkinsStandIn} from '../helpers/jenkins.js'

const open: Array<{close(): Promise<void>}> = []
afterEach(async () => {
  for (const each of open.splice(0)) await each.close()
})

const webhook: Webhook = {event: 'push', raw: Buffer.from('{}'), text: '{}', form: false, body: {}, facts: {}, headers: {'X-GitHub-Event': 'push'}}

async function setUp(mode: Parameters<typeof jenkinsStandIn>[0]) {
  const jenkins = await jenkinsStandIn(mode)
  open.push(jenkins)
  let now = 1_000_000
  const forwarder = new JenkinsForwarder({timeoutMs: 500, now: () => now})
  open.unshift(forwarder)
  const target = {name: 'default', url: jenkins.url}
  return {jenkins, forwarder, target, route: {target, path: 'github-webhook/'}, advance: (ms: number) => (now += ms)}
}

describe('JenkinsForwarder', () => {
  it('a failure closes the target\'s gate for a back-off; after it the next forward tries, and a success opens it', async () => {
    const {jenkins, forwarder, target, route, advance} = await setUp({kind: 'server-error', status: 503})
    expect(await forwarder.forward(route, webhook, 'w-1')).toMatchObject({kind: 'server-error', status: 503})
    expect(forwarder.isOpen(target)).toBe(false)
    expect(forwarder.gates.isDown(targetKey(target.name))).toBe(true)
    advance(forwarder.gates.retryInMs(targetKey(target.name)))
    expect(forwarder.isOpen(target)).toBe(true)
    await jenkins.setMode('accept')
    expect(await forwarder.forward(route, webhook, 'w-2')).toMatchObject({kind: 'accepted'})
    expect(forwarder.gates.isDown(targetKey(target.name))).toBe(false)
  })

  it('the same 4xx for three different webhooks in a row is the target\'s fault (a missing plugin), one is not', async () => {
    const {forwarder, target, route} = await setUp({kind: 'status', status: 404})
    await forwarder.forward(route, webhook, 'w-1')
    expect(forwarder.isOpen(target)).toBe(true)
    await forwarder.forward(route, webhook, 'w-2')
    await forwarder.forward(route, webhook, 'w-3')
    expect(forwarder.isOpen(target)).toBe(false)
  })

  it('isUp: what the forwards said; a minute after the last, a health check', async () => {
    const {jenkins, forwarder, target, route, advance} = await setUp('accept')
    // Never heard of: checked.
    expect(await forwarder.isUp(target)).toBe(true)
    const checks = jenkins.healthChecks.length
    expect(checks).toBeGreaterThan(0)
    await jenkins.setMode('refuse')
    await forwarder.forward(route, webhook, 'w-1')
    expect(await forwarder.isUp(target)).toBe(false)
    await jenkins.setMode('accept')
    expect(jenkins.healthChecks).toHaveLength(checks)
    advance(61_000)
    expect(await forwarder.isUp(target)).toBe(true)
    expect(jenkins.healthChecks.length).toBeGreaterThan(checks)
    expect(forwarder.isOpen(target)).toBe(true)
  })
})
