import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {parseConfig} from '../../src/core/config.js'
import {cisternFileSchema, facadeUrl, resolveSettings} from '../../src/status-queue/config.js'
import {tempDir} from '../helpers/tmp.js'

const env = {GITHUB_ACCESS_TOKEN: 'ghp_x1234567', CISTERN_DATA_DIR: '/data'}

describe('resolveSettings', () => {
  it('defaults: embedded queue, api.github.com, buildkite/{pipeline}, github.com repos', () => {
    const s = resolveSettings({flags: {}, env})
    expect(s.queueUrl).toBe('sqlite:/data/cistern.db#status-queue')
    expect(s.githubUrl).toBe('https://api.github.com')
    expect(s.hosts).toEqual(['github.com'])
    expect(s.token).toBe('ghp_x1234567')
    expect(s.concurrency).toBe(16)
    expect(s.maxAttempts).toBe(10)
    // github.com counts statuses against the content-creation limit; GHE does not by default
    expect(s.github.writesPerMinute).toBe(80)
    expect(resolveSettings({flags: {}, env: {...env, GITHUB_URL: 'https://ghe.example.com/api/v3/'}})).toMatchObject({
      githubUrl: 'https://ghe.example.com/api/v3',
      hosts: ['ghe.example.com'],
      github: {writesPerMinute: 0},
    })
  })

  it('API_URL + API_KEY select the facade, as the original worker did; --queue wins over them', () => {
    const facade = {...env, API_URL: 'https://abc123.execute-api.us-east-1.amazonaws.com/prod', API_KEY: 'k3y-value'}
    expect(resolveSettings({flags: {}, env: facade})).toMatchObject({
      queueUrl: 'apigw+https://abc123.execute-api.us-east-1.amazonaws.com/prod/',
      apiKey: 'k3y-value',
    })
    expect(resolveSettings({flags: {queue: 'sqlite:/tmp/x.db#q'}, env: facade}).queueUrl).toBe('sqlite:/tmp/x.db#q')
    expect(facadeUrl('apigw+http://127.0.0.1:9/prod/')).toBe('apigw+http://127.0.0.1:9/prod/')
    expect(facadeUrl('  ')).toBeUndefined()
  })

  it('flags > environment > file', () => {
    const file = {
      queue: 'sqlite:/f.db#file',
      concurrency: 3,
      context: 'ci/{pipeline}',
      buildkiteUrl: 'https://bk.example.com',
      repoHosts: ['Git.Example.com'],
      states: {canceled: 'failure' as const},
      github: {url: 'https://file.example.com/api/v3', retries: 5},
    }
    const s = resolveSettings({flags: {concurrency: 7, context: 'flag/{pipeline}'}, env: {...env, GITHUB_URL: 'https://env.example.com/api/v3'}, file})
    expect(s).toMatchObject({
      queueUrl: 'sqlite:/f.db#file',
      concurrency: 7,
      githubUrl: 'https://env.example.com/api/v3',
      hosts: ['env.example.com', 'git.example.com'],
      status: {contextTemplate: 'flag/{pipeline}', buildkiteUrl: 'https://bk.example.com', states: {canceled: 'failure'}},
      github: {retries: 5, concurrency: 7},
    })
    expect(resolveSettings({flags: {'any-host': true}, env}).hosts).toBe('any')
    expect(resolveSettings({flags: {}, env, file: {anyHost: true}}).hosts).toBe('any')
  })

  it('refuses a missing token naming GITHUB_ACCESS_TOKEN (exit 2)', () => {
    expect(() => resolveSettings({flags: {}, env: {}})).toThrow(expect.objectContaining({exitCode: 2, message: 'GITHUB_ACCESS_TOKEN is not set'}))
  })

  it('refuses a --context with a placeholder the templates do not know, as the config file does (issue 14; exit 2)', () => {
    expect(() => resolveSettings({flags: {context: 'ci/{bogus}'}, env})).toThrow(
      expect.objectContaining({exitCode: 2, message: '--context "ci/{bogus}": unknown placeholder {bogus}', fix: expect.stringContaining('{pipeline}')}),
    )
  })

  it('reads the token from --github-token-file', () => {
    const dir = tempDir()
    const file = join(dir, 'token')
    writeFileSync(file, 'ghp_fromfile999\n')
    expect(resolveSettings({flags: {'github-token-file': file}, env: {}}).token).toBe('ghp_fromfile999')
    // Issue 13: the core's one secret-file reader; its message names the file and the flag.
    expect(() => resolveSettings({flags: {'github-token-file': join(dir, 'missing')}, env: {}})).toThrow(
      expect.objectContaining({exitCode: 2, message: expect.stringMatching(/^cannot read the GitHub token file .*missing \(ENOENT: no such file\)$/), fix: 'check --github-token-file'}),
    )
    writeFileSync(file, '\n')
    expect(() => resolveSettings({flags: {'github-token-file': file}, env: {}})).toThrow(/the GitHub token file .* is empty/)
  })

  it('refuses a GITHUB_URL that is not a URL', () => {
    expect(() => resolveSettings({flags: {}, env: {...env, GITHUB_URL: 'ghe.example.com'}})).toThrow(expect.objectContaining({exitCode: 2, message: expect.stringMatching(/GITHUB_URL "ghe.example.com" is not a URL/)}))
  })
})

describe('cisternFileSchema', () => {
  it('accepts the status-queue section and leaves other sections alone', () => {
    const parsed = parseConfig(
      ['spigot:', '  anything: [1, 2]', 'status-queue:', '  context: "buildkite/{org}/{pipeline}"', '  states:', '    canceled: failure', '  github:', '    writesPerMinute: 0', ''].join('\n'),
      cisternFileSchema,
      'cistern.yml',
    )
    expect(parsed['status-queue']).toEqual({context: 'buildkite/{org}/{pipeline}', states: {canceled: 'failure'}, github: {writesPerMinute: 0}})
  })

  it.each([
    ['status-queue:\n  states:\n    canceled: broken\n', /cistern\.yml:3 status-queue\.states\.canceled/],
    ['status-queue:\n  context: "ci/{pipe}"\n', /cistern\.yml:2 status-queue\.context: .*\{pipeline\}/],
    ['status-queue:\n  concurrency: 0\n', /cistern\.yml:2 status-queue\.concurrency/],
    ['status-queue:\n  github:\n    url: ghe\n', /cistern\.yml:3 status-queue\.github\.url: expected an http\(s\) URL/],
    ['status-queue:\n  contxt: x\n', /cistern\.yml:\d+ status-queue/],
  ])('names the line and key of a mistake: %s', (text, message) => {
    expect(() => parseConfig(text, cisternFileSchema, 'cistern.yml')).toThrow(message)
  })
})
