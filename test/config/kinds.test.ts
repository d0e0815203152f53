import {describe, expect, it} from 'vitest'

import {CONFIG_KINDS, detectKind, validateAs} from '../../src/config/kinds.js'
import {UsageError} from '../../src/core/errors.js'

describe('detectKind', () => {
  it.each([
    [{spigot: {}, jobs: {}}, 'any.yml', 'cistern'],
    [{hook: {}, spigot: {}}, 'any.yml', 'cistern'], // a misspelt section still reads as cistern.yml
    [{deploy: {argv: ['x']}, notify: {command: 'y'}}, 'any.yml', 'jobs'],
    [{deploy: {argv: ['x']}, typo: {argvv: ['y']}}, 'any.yml', 'jobs'],
    [{web: {'bang-stacks': ['a.yml']}, rotate: {argv: ['r']}}, 'any.yml', 'sqs-listen-jobs'],
    [{jobs: 'jobs.yml', actions: []}, 'any.yml', 'codepipeline-worker'],
    [{job_queue_name: 'q', polling_interval: 2}, 'any.yml', 'sqs-listen'],
    [null, '/home/bang/.sqslistener', 'sqs-listen'],
    [{}, 'codepipeline.yml', 'codepipeline-worker'],
    [{}, 'ci-jobs.yaml', 'jobs'],
    [['a list'], 'any.yml', 'cistern'],
    [null, 'cistern.yml', 'cistern'],
  ] as const)('%j in %s is %s', (data, path, kind) => {
    expect(detectKind(data, path)).toBe(kind)
  })
})

describe('validateAs', () => {
  it('knows a validator for every kind', () => {
    for (const kind of CONFIG_KINDS) expect(() => validateAs(kind, '{}', `f-${kind}.yml`), kind).not.toThrow(TypeError)
  })

  it("uses the pieces' schemas: errors name file, line and key", () => {
    expect(() => validateAs('codepipeline-worker', 'actions: []\n', 'cp.yml')).toThrow(/^cp\.yml:1 actions: expected at least 1 item, got a list$/)
    expect(() => validateAs('sqs-listen', 'max_concurrent_jobs: 0\n', 'l.yml')).toThrow(/^l\.yml:1 max_concurrent_jobs: expected a number ≥ 1, got 0$/)
    expect(() => validateAs('sqs-listen', 'job_queue_url: sqlite:a.db#q\nresponse_queue_url: sqlite:a.db#q\n', '/x/l.yml')).toThrow(UsageError)
    expect(validateAs('sqs-listen', 'job_queue_name: q\nextra: 1\n', 'l.yml')).toEqual(['l.yml: extra: unknown key, sqs-listen ignores it'])
  })
})
