import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import {describe, expect, it} from 'vitest'

import {KILL_GRACE_MS} from '../../src/codepipeline/actions/command.js'
import {loadWorkerConfig} from '../../src/codepipeline/config.js'
import {loadJobs} from '../../src/core/jobs.js'

const examples = (name: string) => fileURLToPath(new URL(`../../examples/codepipeline/${name}`, import.meta.url))

describe('examples/codepipeline', () => {
  it('codepipeline.yml validates and names a custom action type definition per handler', async () => {
    const config = await loadWorkerConfig(examples('codepipeline.yml'))
    expect(config.actions.map((a) => a.handler).sort()).toEqual(['command', 'jenkins', 'travis'])
    expect((await loadJobs(config.jobs!)).has('build')).toBe(true)
    for (const action of config.actions) {
      const definition = JSON.parse(readFileSync(examples(`action-type-${action.handler}.json`), 'utf8'))
      expect({category: definition.category, provider: definition.provider, version: definition.version}).toEqual({
        category: action.category,
        provider: action.provider,
        version: action.version,
      })
      // CodePipeline's rules: at most 10 properties, a queryable one must be required and not secret
      expect(definition.configurationProperties.length).toBeLessThanOrEqual(10)
      for (const p of definition.configurationProperties) if (p.queryable) expect([p.required, p.secret]).toEqual([true, false])
    }
  })

  it('the systemd unit gives cistern longer than its stop deadline and signals only the main process', async () => {
    const unit = readFileSync(examples('cistern-codepipeline-worker.service'), 'utf8')
    const config = await loadWorkerConfig(examples('codepipeline.yml'))
    const timeoutStop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1])
    expect(timeoutStop).toBeGreaterThan(config.stopTimeout + KILL_GRACE_MS / 1000 + 5)
    expect(unit).toMatch(/^KillMode=mixed$/m)
    expect(unit).toMatch(/^Restart=on-failure$/m)
    expect(unit).toMatch(/^EnvironmentFile=/m)
    expect(unit).toMatch(/^User=cistern$/m)
  })
})
