import {readFileSync, readdirSync} from 'node:fs'

import {describe, expect, it} from 'vitest'
import {parse} from 'yaml'

import {jobsSchema} from '../../src/core/jobs.js'
import {cisternFileSchema} from '../../src/hooks/config.js'
import {buildTask} from '../../src/hooks/tasks.js'

/** The shipped examples stay valid: every task document builds, the config section parses. */
const dir = new URL('../../examples/hooks/', import.meta.url)
const read = (name: string) => parse(readFileSync(new URL(name, dir), 'utf8'))

describe('examples/hooks', () => {
  const tasks = readdirSync(dir).filter((f) => /\.(json|ya?ml)$/.test(f) && !['cistern.yml', 'jobs.yml'].includes(f))
  it.each(tasks)('%s is a valid task', (name) => {
    expect(tasks.length).toBeGreaterThanOrEqual(4)
    const task = buildTask(read(name), 0)
    expect(task.uuid).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('cistern.yml has a valid hooks: section, jobs.yml valid jobs', () => {
    const config = cisternFileSchema.parse(read('cistern.yml'))
    expect(config.hooks).toMatchObject({store: 'redis://127.0.0.1:6379/0', port: 8091, retryMax: 3})
    expect(cisternFileSchema.safeParse({hooks: {port: 'x'}}).success).toBe(false)
    expect([...jobsSchema.parse(read('jobs.yml')).keys()]).toEqual(['nightly'])
  })

  it('the unit runs unprivileged with an EnvironmentFile, signals only cistern, and a stop timeout above --stop-timeout', () => {
    const unit = readFileSync(new URL('cistern-hooks.service', dir), 'utf8')
    expect(unit).toMatch(/^User=cistern$/m)
    expect(unit).toMatch(/^EnvironmentFile=/m)
    expect(unit).toMatch(/^Restart=on-failure$/m)
    // SIGTERM to cistern only: it stops the jobs itself after --stop-timeout and requeues their executions
    expect(unit).toMatch(/^KillMode=mixed$/m)
    expect(Number(/^TimeoutStopSec=(\d+)/m.exec(unit)?.[1])).toBeGreaterThan(30)
  })
})
