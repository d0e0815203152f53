import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {ConfigError} from '../../src/core/errors.js'
import {DEFAULT_ROUTES, type SpigotConfig, resolveSpigotConfig} from '../../src/spigot/config.js'
import {routeFor, routeForTarget, routeUrl} from '../../src/spigot/routes.js'
import {tempDir} from '../helpers/tmp.js'

const config: SpigotConfig = {
  queue: 'sqlite::memory:#spigot',
  targets: [
    {name: 'default', url: 'https://ci.example.com/jenkins/'},
    {name: 'legacy', url: 'http://old.example.com:8080/'},
  ],
  routes: {...DEFAULT_ROUTES, release: {path: 'generic-webhook-trigger/invoke', targets: ['default', 'legacy']}},
  unrouted: 'accept',
  forwardTimeoutMs: 3000,
}

describe('routeFor', () => {
  it('default routes: push → github-webhook/, pull_request and issue_comment → ghprbhook/', () => {
    expect(routeFor('push', config)?.map(routeUrl)).toEqual(['https://ci.example.com/jenkins/github-webhook/'])
    expect(routeFor('pull_request', config)?.map(routeUrl)).toEqual(['https://ci.example.com/jenkins/ghprbhook/'])
    expect(routeFor('issue_comment', config)?.map(routeUrl)).toEqual(['https://ci.example.com/jenkins/ghprbhook/'])
  })

  it('several targets', () => {
    expect(routeFor('release', config)?.map((r) => [r.target.name, routeUrl(r)])).toEqual([
      ['default', 'https://ci.example.com/jenkins/generic-webhook-trigger/invoke'],
      ['legacy', 'http://old.example.com:8080/generic-webhook-trigger/invoke'],
    ])
    expect(routeForTarget('release', config, 'legacy')?.target.url).toBe('http://old.example.com:8080/')
    expect(routeForTarget('release', config, undefined)?.target.name).toBe('default')
    expect(routeForTarget('release', config, 'gone')).toBeUndefined()
  })

  it('no route: unknown events, ping, prototype names', () => {
    expect(routeFor('star', config)).toBeUndefined()
    expect(routeFor('ping', config)).toBeUndefined()
    expect(routeFor('constructor', config)).toBeUndefined()
    expect(routeFor('__proto__', config)).toBeUndefined()
  })

  // Issue 14: create, delete, release … reached Jenkins while the hook pointed at it; they still do.
  it('unrouted forward: an event without a rule follows the "*" rule, by default github-webhook/ on the default target', () => {
    const forward: SpigotConfig = {...config, unrouted: 'forward'}
    expect(routeFor('create', forward)?.map(routeUrl)).toEqual(['https://ci.example.com/jenkins/github-webhook/'])
    expect(routeFor('push', forward)?.map(routeUrl)).toEqual(['https://ci.example.com/jenkins/github-webhook/'])
    expect(routeFor('release', forward)?.map((r) => r.target.name)).toEqual(['default', 'legacy'])
    const elsewhere: SpigotConfig = {...forward, routes: {...forward.routes, '*': {path: 'generic-webhook-trigger/invoke', targets: ['legacy']}}}
    expect(routeFor('delete', elsewhere)?.map(routeUrl)).toEqual(['http://old.example.com:8080/generic-webhook-trigger/invoke'])
    expect(routeForTarget('delete', elsewhere, 'legacy')?.path).toBe('generic-webhook-trigger/invoke')
    // accept and reject keep such events out (the intake answers 202 or 400).
    expect(routeFor('create', config)).toBeUndefined()
    expect(routeFor('create', {...config, unrouted: 'reject'})).toBeUndefined()
  })

  it('a rule naming an unknown target is a bug in a hand-built config', () => {
    expect(() => routeFor('push', {...config, routes: {push: {path: 'x/', targets: ['nope']}}})).toThrow(/unknown Jenkins target "nope"/)
  })
})

describe('the "*" rule in cistern.yml', () => {
  const dir = tempDir('cistern-routes-')
  const file = (name: string, routes: string) => {
    const path = join(dir, name)
    writeFileSync(path, `spigot:\n  jenkinsUrl: https://ci.example.com/\n  routes:\n${routes}`)
    return path
  }

  it('sets where unrouted events go; null is refused with the setting that does what was meant', async () => {
    const config = await resolveSpigotConfig({config: file('star.yml', "    '*': generic-webhook-trigger/invoke\n")}, {})
    expect(config.unrouted).toBe('forward')
    expect(routeFor('create', config)?.map(routeUrl)).toEqual(['https://ci.example.com/generic-webhook-trigger/invoke'])
    const error = await resolveSpigotConfig({config: file('null.yml', "    '*': null\n")}, {}).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(/spigot\.routes\.\*: null .* set spigot\.unrouted: accept .* or reject/)
  })
})
