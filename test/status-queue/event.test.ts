import {describe, expect, it} from 'vitest'

import {commitSha, parseBuildEvent} from '../../src/status-queue/event.js'
import {SHA, body, detail, envelope} from './fixtures.js'

describe('parseBuildEvent', () => {
  const expected = {
    organization: 'acme',
    pipeline: 'web-app',
    number: 42,
    commit: SHA,
    state: 'passed',
    branch: 'main',
    message: 'Fix the flaky test\n\nLonger body',
    repository: 'git@github.com:acme/web-app.git',
  }

  it('reads the EventBridge detail', () => {
    expect(parseBuildEvent(body(detail()))).toEqual({kind: 'build', build: {eventType: undefined, ...expected}})
  })

  it('reads the whole envelope too', () => {
    expect(parseBuildEvent(body(envelope()))).toEqual({kind: 'build', build: {eventType: 'Build Finished', ...expected}})
    const started = parseBuildEvent(body(envelope({state: 'running'}, 'Build Started')))
    expect(started.kind === 'build' && started.build.state).toBe('running')
  })

  it('ignores events that are not about a build', () => {
    expect(parseBuildEvent(body(envelope({}, 'Job Finished'))).kind).toBe('ignore')
    expect(parseBuildEvent(body({job: {id: 'x'}, pipeline: {}, organization: {}})).kind).toBe('ignore')
  })

  it('accepts a number given as a string and normalises the state case', () => {
    const d = detail({state: 'PASSED'}) as unknown as {build: {number: unknown}}
    d.build.number = '7'
    const result = parseBuildEvent(body(d))
    expect(result).toMatchObject({kind: 'build', build: {number: 7, state: 'passed'}})
  })

  it.each([
    ['{"build": ', /not JSON/],
    ['', /not JSON/],
    ['[1,2]', /array/],
    ['"text"', /string/],
    ['null', /object/],
    [body({hello: 'world'}), /unknown event shape/],
    [body({detail: 'x', 'detail-type': 'Build Finished'}), /no "detail" object/],
    [body({...detail(), pipeline: undefined}), /pipeline/],
    [body({...detail(), organization: undefined}), /organization/],
    [body({...detail(), build: {...detail().build, number: 'x'}}), /build.number/],
    [body({...detail(), build: {...detail().build, state: ''}}), /build.state/],
    [body({...detail(), build: {...detail().build, commit: undefined}}), /build.commit/],
    [body({...detail(), pipeline: {slug: 'web-app'}}), /pipeline.repo/],
  ])('refuses %s', (text, reason) => {
    const result = parseBuildEvent(text)
    expect(result.kind).toBe('invalid')
    if (result.kind === 'invalid') expect(result.reason).toMatch(reason)
  })
})

describe('commitSha', () => {
  it('accepts only a full 40-hex SHA', () => {
    expect(commitSha(SHA)).toBe(SHA)
    expect(commitSha(SHA.toUpperCase())).toBe(SHA)
    expect(commitSha('HEAD')).toBeUndefined()
    expect(commitSha(SHA.slice(0, 7))).toBeUndefined()
    expect(commitSha('main')).toBeUndefined()
    expect(commitSha(SHA + '0')).toBeUndefined()
    expect(commitSha('g'.repeat(40))).toBeUndefined()
  })
})
