import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {ConfigError, UsageError} from '../../src/core/errors.js'
import {defaultQueueUrl} from '../../src/core/paths.js'
import {DEFAULT_FORWARD_TIMEOUT_MS, normaliseJenkinsUrl, resolveSpigotConfig} from '../../src/spigot/config.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-spigot-config-')
const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({CISTERN_DATA_DIR: dir, ...extra})

function configFile(name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

describe('resolveSpigotConfig', () => {
  it('defaults: embedded queue, default routes, short timeout, unrouted events forwarded', async () => {
    const config = await resolveSpigotConfig({}, env({JENKINS_URL: 'http://jenkins.internal:8080'}))
    expect(config.queue).toBe(defaultQueueUrl('spigot', env()))
    expect(config.targets).toEqual([{name: 'default', url: 'http://jenkins.internal:8080/', user: undefined, token: undefined}])
    expect(config.routes).toEqual({
      push: {path: 'github-webhook/', targets: ['default']},
      pull_request: {path: 'ghprbhook/', targets: ['default']},
      issue_comment: {path: 'ghprbhook/', targets: ['default']},
    })
    // Issue 14: events without a rule go where Jenkins got them directly (routes.ts UNROUTED_RULE), not dropped.
    expect(config.unrouted).toBe('forward')
    expect(config.forwardTimeoutMs).toBe(DEFAULT_FORWARD_TIMEOUT_MS)
    expect(config.webhookSecret).toBeUndefined()
  })

  it('a missing Jenkins URL is a usage error naming --jenkins-url and JENKINS_URL', async () => {
    const error = await resolveSpigotConfig({}, env()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UsageError)
    expect((error as UsageError).oneLine).toMatch(/--jenkins-url/)
    expect((error as UsageError).oneLine).toMatch(/JENKINS_URL/)
  })

  it('rejects URLs that are not http(s) or carry credentials', async () => {
    await expect(resolveSpigotConfig({'jenkins-url': 'jenkins'}, env())).rejects.toThrow(/not a URL/)
    await expect(resolveSpigotConfig({'jenkins-url': 'ftp://x/'}, env())).rejects.toThrow(/http/)
    const withCredentials = (await resolveSpigotConfig({'jenkins-url': 'https://u:p@x/'}, env()).catch((e: unknown) => e)) as UsageError
    expect(withCredentials.oneLine).toMatch(/credentials in the URL.*JENKINS_TOKEN/)
    expect(normaliseJenkinsUrl('https://ci.example.com/jenkins?x=1')).toBe('https://ci.example.com/jenkins/')
  })

  it('flags > env > config file', async () => {
    const file = configFile(
      'precedence.yml',
      `spigot:\n  queue: sqlite:/tmp/from-file.db#spigot\n  jenkinsUrl: https://file.example.com/\n  forwardTimeoutMs: 1500\n  unrouted: reject\n  largePayloadBucket: file-bucket\nhooks:\n  anything: goes\n`,
    )
    const fromFile = await resolveSpigotConfig({config: file}, env())
    expect(fromFile.queue).toBe('sqlite:/tmp/from-file.db#spigot')
    expect(fromFile.targets[0]!.url).toBe('https://file.example.com/')
    expect(fromFile.forwardTimeoutMs).toBe(1500)
    expect(fromFile.unrouted).toBe('reject')
    expect(fromFile.largePayloadBucket).toBe('file-bucket')

    const fromEnv = await resolveSpigotConfig({}, env({CISTERN_CONFIG: file, JENKINS_URL: 'https://env.example.com', CISTERN_QUEUE: 'sqs://env-queue.fifo'}))
    expect(fromEnv.targets[0]!.url).toBe('https://env.example.com/')
    expect(fromEnv.queue).toBe('sqs://env-queue.fifo')

    const fromFlags = await resolveSpigotConfig(
      {config: file, 'jenkins-url': 'https://flag.example.com/', queue: 'sqs://flag.fifo', 'forward-timeout': 900, unrouted: 'accept', 'large-payload-bucket': 'flag-bucket'},
      env({JENKINS_URL: 'https://env.example.com'}),
    )
    expect(fromFlags).toMatchObject({queue: 'sqs://flag.fifo', forwardTimeoutMs: 900, unrouted: 'accept', largePayloadBucket: 'flag-bucket'})
    expect(fromFlags.targets[0]!.url).toBe('https://flag.example.com/')
  })

  it('credentials and the webhook secret come from env or a file, and are masked', async () => {
    const secretFile = configFile('secret', 'from-a-file\n')
    const config = await resolveSpigotConfig(
      {'jenkins-url': 'https://j/', 'webhook-secret-file': secretFile},
      env({JENKINS_USER: 'bot', JENKINS_TOKEN: 'jenkins-api-token', GITHUB_WEBHOOK_SECRET: 'from-env'}),
    )
    expect(config.targets[0]).toMatchObject({user: 'bot', token: 'jenkins-api-token'})
    expect(config.webhookSecret).toBe('from-a-file')
    const fromEnv = await resolveSpigotConfig({'jenkins-url': 'https://j/'}, env({GITHUB_WEBHOOK_SECRET: 'from-env'}))
    expect(fromEnv.webhookSecret).toBe('from-env')
    const {redact} = await import('../../src/core/secrets.js')
    expect(redact('token jenkins-api-token and secret from-a-file')).toBe('token [redacted] and secret [redacted]')
    const unreadable = (await resolveSpigotConfig({'jenkins-url': 'https://j/', 'webhook-secret-file': join(dir, 'nope')}, env()).catch((e: unknown) => e)) as UsageError
    expect(unreadable).toBeInstanceOf(UsageError)
    expect(unreadable.oneLine).toMatch(/cannot read the webhook secret file .*ENOENT.*--webhook-secret-file/)
  })

  it('route table: shorthand, several targets, removing a default', async () => {
    const file = configFile(
      'routes.yml',
      [
        'spigot:',
        '  jenkinsUrl: https://main.example.com/',
        '  targets:',
        '    - {name: legacy, url: "https://old.example.com/ci", user: robot, tokenEnv: LEGACY_TOKEN}',
        '  routes:',
        '    push: generic-webhook-trigger/invoke',
        '    pull_request: {path: /ghprbhook/, targets: [default, legacy]}',
        '    issue_comment: null',
        '    release: {path: release-hook/, targets: [legacy]}',
        '',
      ].join('\n'),
    )
    const config = await resolveSpigotConfig({config: file}, env({LEGACY_TOKEN: 'legacy-token'}))
    expect(config.targets.map((t) => [t.name, t.url, t.user, t.token])).toEqual([
      ['default', 'https://main.example.com/', undefined, undefined],
      ['legacy', 'https://old.example.com/ci/', 'robot', 'legacy-token'],
    ])
    expect(config.routes).toEqual({
      push: {path: 'generic-webhook-trigger/invoke', targets: ['default']},
      pull_request: {path: 'ghprbhook/', targets: ['default', 'legacy']},
      release: {path: 'release-hook/', targets: ['legacy']},
    })
  })

  it('config errors name the file, line and key', async () => {
    const bad = configFile('bad.yml', 'spigot:\n  jenkinsUrl: https://j/\n  forwardTimeoutMs: fast\n')
    const error = await resolveSpigotConfig({config: bad}, env()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(/bad\.yml:3/)
    expect((error as Error).message).toMatch(/spigot\.forwardTimeoutMs/)

    const unknownTarget = configFile('unknown.yml', 'spigot:\n  jenkinsUrl: https://j/\n  routes:\n    push: {path: x/, targets: [nope]}\n')
    await expect(resolveSpigotConfig({config: unknownTarget}, env())).rejects.toThrow(/unknown target "nope"/)

    const typo = configFile('typo.yml', 'spigot:\n  jenkinsURL: https://j/\n')
    await expect(resolveSpigotConfig({config: typo}, env())).rejects.toThrow(ConfigError)

    const missingEnv = configFile('missing-env.yml', 'spigot:\n  jenkinsUrl: https://j/\n  targets: [{name: b, url: "https://b/", tokenEnv: NOT_SET_ANYWHERE}]\n')
    await expect(resolveSpigotConfig({config: missingEnv}, env())).rejects.toThrow(/NOT_SET_ANYWHERE/)
  })
})
