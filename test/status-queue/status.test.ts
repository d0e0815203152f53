import {describe, expect, it} from 'vitest'

import type {BuildInfo} from '../../src/status-queue/event.js'
import {commitStatusFor, githubStateFor, truncate, unknownPlaceholders} from '../../src/status-queue/status.js'
import {SHA} from './fixtures.js'

const build = (over: Partial<BuildInfo> = {}): BuildInfo => ({
  organization: 'acme',
  pipeline: 'web-app',
  number: 42,
  commit: SHA,
  state: 'passed',
  branch: 'main',
  message: 'Fix the flaky test',
  repository: 'git@github.com:acme/web-app.git',
  ...over,
})

describe('state map', () => {
  it.each([
    ['passed', 'success', 'Build #42 passed'],
    ['failed', 'failure', 'Build #42 failed'],
    ['canceled', 'error', 'Build #42 was canceled'],
    ['canceling', 'error', 'Build #42 is being canceled'],
    ['not_run', 'error', 'Build #42 was not run'],
    ['skipped', 'error', 'Build #42 was skipped'],
    ['blocked', 'pending', 'Build #42 is blocked'],
    ['scheduled', 'pending', 'Build #42 is scheduled'],
    ['started', 'pending', 'Build #42 has started'],
    ['running', 'pending', 'Build #42 is running'],
    ['failing', 'pending', 'Build #42 is failing'],
  ])('%s → %s', (state, github, description) => {
    expect(commitStatusFor(build({state}))).toEqual({
      state: github,
      target_url: 'https://buildkite.com/acme/web-app/builds/42',
      description,
      context: 'buildkite/web-app',
    })
  })

  it('takes overrides and refuses unknown states', () => {
    expect(githubStateFor('canceled', {canceled: 'failure'})).toBe('failure')
    expect(githubStateFor('passed', {canceled: 'failure'})).toBe('success')
    expect(commitStatusFor(build({state: 'exploded'}))).toBeUndefined()
  })
})

describe('commitStatusFor', () => {
  it('uses the configured Buildkite base, context and description templates', () => {
    const status = commitStatusFor(build({state: 'failed'}), {
      buildkiteUrl: 'https://buildkite.internal.example.com/',
      contextTemplate: 'ci/{org}/{pipeline}',
      descriptionTemplate: '#{number} {state} on {branch} at {short_sha}: {message}',
    })
    expect(status).toEqual({
      state: 'failure',
      target_url: 'https://buildkite.internal.example.com/acme/web-app/builds/42',
      description: '#42 failed on main at 0123456: Fix the flaky test',
      context: 'ci/acme/web-app',
    })
  })

  it('keeps the description within 140 characters', () => {
    const status = commitStatusFor(build({message: 'x'.repeat(500)}), {descriptionTemplate: '{status}: {message}'})!
    expect(Array.from(status.description)).toHaveLength(140)
    expect(status.description.endsWith('…')).toBe(true)
    expect(truncate('🚀'.repeat(200))).toBe('🚀'.repeat(139) + '…')
    expect(truncate('short')).toBe('short')
  })

  it('uses only the first line of the commit message', () => {
    const status = commitStatusFor(build({message: 'Title\nbody'}), {descriptionTemplate: '{message}'})!
    expect(status.description).toBe('Title')
  })

  it('lists unknown placeholders', () => {
    expect(unknownPlaceholders('buildkite/{pipeline}')).toEqual([])
    expect(unknownPlaceholders('buildkite/{pipe}/{number}')).toEqual(['pipe'])
  })
})
