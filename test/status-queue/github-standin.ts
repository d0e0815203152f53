import type {ServerResponse} from 'node:http'

import {type RecordedRequest, type StandIn, standIn} from '../helpers/http.js'

export interface PostedStatus {
  owner: string
  repo: string
  sha: string
  /** The exact JSON body GitHub received. */
  body: Record<string, unknown>
  authorization?: string
}

export interface Reply {
  status: number
  headers?: Record<string, string>
  body?: unknown
  /** Hold the answer this long (a slow GitHub). */
  delayMs?: number
}

/** Decide the answer to one status POST; undefined = 201 Created. */
export type Script = (post: PostedStatus, attempt: number) => Reply | undefined

export interface GitHubStandIn {
  server: StandIn
  /** API base as GITHUB_URL would be set for GitHub Enterprise: http://127.0.0.1:<port>/api/v3 */
  apiUrl: string
  /** Statuses answered 2xx, in order. */
  posted: PostedStatus[]
  /** Every status POST, whatever the answer. */
  attempts: PostedStatus[]
  /** Highest number of requests answered at once. */
  maxInFlight: number
  script(next: Script): void
  /** Forget everything recorded (requests still hanging from an earlier test no longer count). */
  reset(): void
  close(): Promise<void>
}

const STATUS_PATH = /^\/api\/v3\/repos\/([^/]+)\/([^/]+)\/statuses\/([^/?]+)$/

/** A loopback stand-in for GitHub's commit-status endpoint, recording what it receives. */
export async function githubStandIn(): Promise<GitHubStandIn> {
  let script: Script = () => undefined
  let inFlight = 0
  let generation = 0
  const attemptsBySha = new Map<string, number>()
  const self: GitHubStandIn = {
    server: undefined as unknown as StandIn,
    apiUrl: '',
    posted: [],
    attempts: [],
    maxInFlight: 0,
    script(next) {
      script = next
    },
    reset() {
      generation++
      inFlight = 0
      attemptsBySha.clear()
      self.posted.length = 0
      self.attempts.length = 0
      self.maxInFlight = 0
      script = () => undefined
    },
    close: () => self.server.close(),
  }
  const handle = async (req: RecordedRequest, res: ServerResponse) => {
    const match = STATUS_PATH.exec(req.url)
    if (req.method !== 'POST' || !match) {
      res.writeHead(404, {'content-type': 'application/json'}).end(JSON.stringify({message: 'Not Found'}))
      return
    }
    const post: PostedStatus = {
      owner: decodeURIComponent(match[1]!),
      repo: decodeURIComponent(match[2]!),
      sha: match[3]!,
      body: JSON.parse(req.body.toString('utf8')) as Record<string, unknown>,
      authorization: req.headers.authorization,
    }
    const key = `${post.owner}/${post.repo}@${post.sha}`
    const attempt = (attemptsBySha.get(key) ?? 0) + 1
    attemptsBySha.set(key, attempt)
    self.attempts.push(post)
    const mine = generation
    inFlight++
    self.maxInFlight = Math.max(self.maxInFlight, inFlight)
    try {
      const reply = script(post, attempt) ?? {status: 201, body: {id: self.attempts.length, state: post.body.state, context: post.body.context}}
      if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs))
      if (mine !== generation) return void res.destroy()
      if (reply.status >= 200 && reply.status < 300) self.posted.push(post)
      res.writeHead(reply.status, {'content-type': 'application/json; charset=utf-8', ...reply.headers}).end(JSON.stringify(reply.body ?? {}))
    } finally {
      if (mine === generation) inFlight--
    }
  }
  self.server = await standIn(handle)
  self.apiUrl = `${self.server.url}/api/v3`
  return self
}

export const replies = {
  serverError: (): Reply => ({status: 500, body: {message: 'Server Error'}}),
  tooMany: (retryAfter: number): Reply => ({status: 429, headers: {'retry-after': String(retryAfter)}, body: {message: 'Too Many Requests'}}),
  notFound: (): Reply => ({status: 404, body: {message: 'Not Found', documentation_url: 'https://docs.github.com/rest'}}),
  unprocessable: (): Reply => ({
    status: 422,
    body: {message: 'Validation Failed', errors: [{resource: 'Status', code: 'custom', message: 'No commit found for SHA'}]},
  }),
  badCredentials: (): Reply => ({status: 401, body: {message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest'}}),
}
