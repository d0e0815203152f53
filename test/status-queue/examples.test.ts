import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {parseDocument} from 'yaml'

import {loadConfig} from '../../src/core/config.js'
import {cisternFileSchema} from '../../src/status-queue/config.js'

const example = (name: string) => new URL(`../../examples/status-queue/${name}`, import.meta.url)

describe('examples/status-queue', () => {
  it('cistern.yml validates against the status-queue schema', async () => {
    const config = await loadConfig(example('cistern.yml').pathname, cisternFileSchema)
    expect(config['status-queue']).toMatchObject({context: 'buildkite/{pipeline}', drainSeconds: 30})
  })

  // Issue 11: exit 2 is a usage or config error only (a token refused for one organisation no
  // longer exits at all, one refused for everything exits 3), so the unit prevents restarts on 2 again.
  it('the systemd unit gives the drain deadline time before SIGKILL and restarts on failure, not on a config error', async () => {
    const unit = readFileSync(example('cistern-status-queue.service'), 'utf8')
    const config = await loadConfig(example('cistern.yml').pathname, cisternFileSchema)
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1])
    expect(stop).toBeGreaterThan(config['status-queue']!.drainSeconds!)
    expect(unit).toMatch(/^EnvironmentFile=\/etc\/cistern\/status-queue\.env$/m)
    expect(unit).toMatch(/^Restart=on-failure$/m)
    expect(unit).toMatch(/^RestartPreventExitStatus=2$/m)
    expect(unit).toMatch(/^User=cistern$/m)
    expect(unit).not.toMatch(/GITHUB_ACCESS_TOKEN=|API_KEY=/)
  })

  it('the service template has a FIFO queue with long polling, a redrive policy and a keyed facade', () => {
    // CloudFormation short tags (!Ref, !Sub, !GetAtt) are kept as plain values here.
    const doc = parseDocument(readFileSync(example('template.yaml'), 'utf8'), {customTags: ['!Ref', '!Sub', '!GetAtt'].map((tag) => ({tag, resolve: (value: string) => `${tag} ${value}`}))})
    const resources = (doc.toJS() as {Resources: Record<string, {Type: string; Properties: Record<string, unknown>}>}).Resources
    const queue = resources.StatusQueue!.Properties
    expect(queue).toMatchObject({FifoQueue: true, ContentBasedDeduplication: true, ReceiveMessageWaitTimeSeconds: 20})
    expect(queue.RedrivePolicy).toMatchObject({deadLetterTargetArn: '!GetAtt DeadLetterQueue.Arn'})
    expect(resources.DeadLetterQueue!.Properties).toMatchObject({FifoQueue: true})
    const rule = resources.BuildEventsRule!.Properties as {EventPattern: Record<string, string[]>; Targets: Array<Record<string, unknown>>}
    expect(rule.EventPattern['detail-type']).toEqual(['Build Created', 'Build Started', 'Build Failing', 'Build Blocked', 'Build Finished'])
    expect(rule.Targets[0]).toMatchObject({InputPath: '$.detail'})
    for (const method of ['ReceiveMethod', 'DeleteMethod']) expect(resources[method]!.Properties).toMatchObject({ApiKeyRequired: true})
  })
})
