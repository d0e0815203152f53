import {describe, expect, it} from 'vitest'

import {gitHostForApi, hostMatches, parseRepositoryUrl} from '../../src/status-queue/repo.js'

describe('parseRepositoryUrl', () => {
  it.each([
    ['git@github.com:acme/web-app.git', 'github.com', 'acme', 'web-app'],
    ['git@github.com:acme/web-app', 'github.com', 'acme', 'web-app'],
    ['https://github.com/acme/web-app.git', 'github.com', 'acme', 'web-app'],
    ['https://github.com/acme/web-app', 'github.com', 'acme', 'web-app'],
    ['https://github.com/acme/web-app/', 'github.com', 'acme', 'web-app'],
    ['http://ghe.example.com/acme/web-app.git', 'ghe.example.com', 'acme', 'web-app'],
    ['https://user@GHE.example.com/acme/web-app.git', 'ghe.example.com', 'acme', 'web-app'],
    ['ssh://git@ghe.example.com:7999/acme/web-app.git', 'ghe.example.com', 'acme', 'web-app'],
    ['ssh://git@ghe.example.com/acme/web-app', 'ghe.example.com', 'acme', 'web-app'],
    ['git+ssh://git@github.com/acme/web-app.git', 'github.com', 'acme', 'web-app'],
    // dotted names stay whole (the original cut at the first dot)
    ['git@github.com:acme/my.repo.name.git', 'github.com', 'acme', 'my.repo.name'],
    ['https://github.com/acme/my.repo.name', 'github.com', 'acme', 'my.repo.name'],
    ['ssh://git@ghe.example.com:7999/my.org/my.repo.name.git', 'ghe.example.com', 'my.org', 'my.repo.name'],
    ['https://github.com/acme/site.github.io', 'github.com', 'acme', 'site.github.io'],
    ['  git@github.com:acme/web-app.git\n', 'github.com', 'acme', 'web-app'],
  ])('%s → %s %s/%s', (url, host, owner, name) => {
    expect(parseRepositoryUrl(url)).toEqual({ok: true, repo: {host, owner, name}})
  })

  it.each([
    ['git@github.com:web-app.git', /no owner/],
    ['https://github.com/web-app', /no owner/],
    ['ssh://git@ghe.example.com:7999/web-app.git', /no owner/],
    ['https://github.com/', /no owner/],
    ['https://github.com/acme/web-app/tree/main', /deeper/],
    ['', /empty/],
    ['web-app', /neither/],
    ['ftp://github.com/acme/web-app.git', /unsupported scheme/],
    ['https://github.com/acme/web app', /does not allow/],
  ])('%s is refused', (url, reason) => {
    const result = parseRepositoryUrl(url)
    expect(result.ok).toBe(false)
    if (!result.ok) expect(result.reason).toMatch(reason)
  })
})

describe('gitHostForApi / hostMatches', () => {
  it.each([
    ['https://api.github.com', 'github.com'],
    ['https://api.github.com/', 'github.com'],
    ['https://ghe.example.com/api/v3', 'ghe.example.com'],
    ['https://api.acme.ghe.com', 'acme.ghe.com'],
    ['http://127.0.0.1:8080/api/v3', '127.0.0.1'],
  ])('%s → %s', (api, host) => expect(gitHostForApi(api)).toBe(host))

  it('matches the host case-insensitively, and ssh.github.com as github.com', () => {
    expect(hostMatches('GitHub.com', ['github.com'])).toBe(true)
    expect(hostMatches('ssh.github.com', ['github.com'])).toBe(true)
    expect(hostMatches('gitlab.com', ['github.com'])).toBe(false)
    expect(hostMatches('ghe.example.com', ['github.com'])).toBe(false)
    expect(hostMatches('git.example.com', ['ghe.example.com', 'git.example.com'])).toBe(true)
  })
})
