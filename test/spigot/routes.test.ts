import {describe, expect, it} from 'vitest'

import {DEFAULT_ROUTES, type SpigotConfig} from '../../src/spigot/config.js'
import {routeFor, routeForTarget, routeUrl} from '../../src/spigot/routes.js'

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

  it('a rule naming an unknown target is a bug in a hand-built config', () => {
    expect(() => routeFor('push', {...config, routes: {push: {path: 'x/', targets: ['nope']}}})).toThrow(/unknown Jenkins target "nope"/)
  })
})
