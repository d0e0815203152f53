import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import {describe, expect, it} from 'vitest'
import {parse} from 'yaml'

import {loadListenerConfig} from '../../src/sqs-listener/config.js'
import {loadListenerJobs} from '../../src/sqs-listener/jobs.js'
import {buildPythonLogging} from '../../src/sqs-listener/logging.js'

const example = (name: string) => fileURLToPath(new URL(`../../examples/sqs-listener/${name}`, import.meta.url))

describe('examples/sqs-listener', () => {
  it('.sqslistener is a valid config, with no unknown key', async () => {
    const config = await loadListenerConfig(example('.sqslistener'))
    expect(config.unknownKeys).toEqual([])
    expect(config.requestQueueUrl).toBe('sqs://bang-queue')
  })

  it('jobs.yml loads in both forms', async () => {
    const jobs = await loadListenerJobs(example('jobs.yml'), ['/opt/bang/venv/bin/bang'])
    expect(jobs.get('test_job_1')?.argv).toEqual(['/opt/bang/venv/bin/bang', '/etc/bang/stacks/test.yml'])
    expect(jobs.get('rotate_logs')?.argv).toEqual(['/usr/local/bin/rotate-logs', '--compress'])
    expect(jobs.get('deploy_web')?.inheritEnv).toEqual(['AWS_PROFILE', 'AWS_REGION'])
  })

  it('logging-conf.yml uses only what cistern honours (no warnings)', () => {
    const doc = parse(readFileSync(example('logging-conf.yml'), 'utf8'))
    // do not open /var/log here: swap the file handler for the same handler on a stream
    doc.handlers.file = {...doc.handlers.file, class: 'logging.StreamHandler', filename: undefined}
    delete doc.handlers.file.filename
    const logging = buildPythonLogging(doc, 'logging-conf.yml')
    expect(logging.warnings).toEqual([])
  })

  it('the systemd unit waits longer than the stop deadline and signals only the listener', async () => {
    const unit = readFileSync(example('cistern-sqs-listen.service'), 'utf8')
    const config = await loadListenerConfig(example('.sqslistener'))
    const stopSec = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1])
    expect(stopSec).toBeGreaterThan(config.stopTimeoutSeconds + 5)
    expect(unit).toMatch(/^KillMode=mixed$/m)
    expect(unit).toMatch(/^Restart=on-failure$/m)
    expect(unit).toMatch(/^Environment=CONFIG_PATH=\S+$/m)
    expect(unit).toMatch(/^User=(?!root)\S+$/m)
  })
})
