/**
 * Repository URL → owner/name. Buildkite pipelines carry the clone URL the operator typed, so all
 * the usual forms appear: scp-like `git@host:o/n.git`, `https://host/o/n(.git)` and
 * `ssh://git@host[:port]/o/n(.git)`. Names may contain dots (`o/my.repo.name`): only a trailing
 * `.git` is removed — the original worker cut at the first dot.
 */
export interface RepositoryRef {
  /** Lower-cased host name, without port or credentials. */
  host: string
  owner: string
  name: string
}

export type RepositoryParse = {ok: true; repo: RepositoryRef} | {ok: false; reason: string}

// GitHub owner and repository names: letters, digits, '-', '_' and '.'.
const SEGMENT = /^[A-Za-z0-9_.-]+$/

export function parseRepositoryUrl(input: string): RepositoryParse {
  const url = input.trim()
  if (!url) return {ok: false, reason: 'repository URL is empty'}

  let host: string
  let path: string
  const scp = /^(?:[^@/\s]+@)?([^:/\s]+):(?!\/\/)(.*)$/.exec(url)
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      return {ok: false, reason: `repository URL "${url}" is not a valid URL`}
    }
    if (!['https:', 'http:', 'ssh:', 'git:', 'git+ssh:', 'ssh+git:'].includes(parsed.protocol)) {
      return {ok: false, reason: `repository URL "${url}" has an unsupported scheme ${parsed.protocol}`}
    }
    host = parsed.hostname
    path = decodeURIComponent(parsed.pathname)
  } else if (scp) {
    host = scp.at(1) ?? ''
    path = scp.at(2) ?? ''
  } else {
    return {ok: false, reason: `repository URL "${url}" is neither host:owner/name nor a URL`}
  }

  const segments = path
    .replace(/\/+$/, '')
    .replace(/\.git$/i, '')
    .split('/')
    .filter((segment) => segment !== '')
  if (segments.length < 2) {
    return {ok: false, reason: `repository URL "${url}" has no owner (expected <host>/<owner>/<name>)`}
  }
  if (segments.length > 2) {
    return {ok: false, reason: `repository URL "${url}" has a path deeper than <owner>/<name>`}
  }
  const [owner, name] = segments as [string, string]
  if (!SEGMENT.test(owner) || !SEGMENT.test(name) || name === '.' || name === '..') {
    return {ok: false, reason: `repository URL "${url}" has an owner or name GitHub does not allow`}
  }
  return {ok: true, repo: {host: host.toLowerCase().replace(/^\[|\]$/g, ''), owner, name}}
}

/**
 * The web/git host that belongs to a GitHub API base URL: api.github.com ↔ github.com, a GitHub
 * Enterprise `https://ghe.example.com/api/v3` ↔ ghe.example.com (and GHE.com `api.<sub>.ghe.com`
 * ↔ `<sub>.ghe.com`).
 */
export function gitHostForApi(apiUrl: string): string {
  const host = new URL(apiUrl).hostname.toLowerCase()
  if (host === 'api.github.com') return 'github.com'
  if (/^api\.[^.]+\.ghe\.com$/.test(host)) return host.slice('api.'.length)
  return host
}

/** Whether a repository host belongs to the GitHub we post to (ssh.github.com is github.com too). */
export function hostMatches(repoHost: string, allowed: readonly string[]): boolean {
  const host = repoHost.toLowerCase()
  return allowed.some((candidate) => {
    const want = candidate.toLowerCase()
    return host === want || (want === 'github.com' && host === 'ssh.github.com')
  })
}

/**
 * Repository URL → owner/name on this GitHub, or why not, remembered: a worker sees the same few
 * repositories again and again, hundreds of times a second. `hosts` are the GitHub's hosts, or
 * 'any' (--any-host); `apiUrl` is named in the refusal.
 */
export class RepositoryResolver {
  private readonly known = new Map<string, RepositoryParse>()

  constructor(
    private readonly hosts: readonly string[] | 'any',
    private readonly apiUrl: string,
    private readonly max = 1000,
  ) {}

  resolve(url: string): RepositoryParse {
    let parsed = this.known.get(url)
    if (parsed) return parsed
    parsed = this.check(parseRepositoryUrl(url))
    if (this.known.size >= this.max) this.known.clear()
    this.known.set(url, parsed)
    return parsed
  }

  private check(parsed: RepositoryParse): RepositoryParse {
    if (!parsed.ok || this.hosts === 'any' || hostMatches(parsed.repo.host, this.hosts)) return parsed
    return {
      ok: false,
      reason: `repository host ${parsed.repo.host} is not the GitHub host ${this.hosts.join(', ')} (GITHUB_URL ${this.apiUrl}); pass --any-host or add it to status-queue.repoHosts`,
    }
  }
}
