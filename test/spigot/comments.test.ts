import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {createLogger} from '../../src/core/log.js'
import {QUEUED_COMMENT, REPLAYED_COMMENT, createCommenter, pullRequestOf} from '../../src/spigot/comments.js'
import type {SpigotMessage} from '../../src/core/webhook-message.js'
import {type StandIn, standIn} from '../helpers/http.js'

function prMessage(action: string, extra: Partial<SpigotMessage> = {}): SpigotMessage {
  return {
    spigot_state: 'OFF',
    from_queue: 'false',
    headers: {'X-GitHub-Event': 'pull_request', 'X-GitHub-Delivery': 'd-1'},
    body: {action, number: 42, repository: {name: 'widgets', full_name: 'acme/widgets', owner: {login: 'acme'}}},
    ...extra,
  }
}

function capture() {
  const lines: Array<Record<string, unknown>> = []
  const stream = {write: (text: string) => (lines.push(JSON.parse(text)), true)} as unknown as NodeJS.WritableStream
  return {lines, log: createLogger({format: 'json', level: 'debug', stream})}
}

describe('pullRequestOf', () => {
  it('picks commentable pull_request events only', () => {
    expect(pullRequestOf(prMessage('opened'))).toEqual({owner: 'acme', repo: 'widgets', number: 42})
    expect(pullRequestOf(prMessage('closed'))).toBeUndefined()
    expect(pullRequestOf({...prMessage('opened'), headers: {'x-github-event': 'push'}})).toBeUndefined()
    expect(pullRequestOf({...prMessage('synchronize'), body: {action: 'synchronize', pull_request: {number: 7}, repository: {full_name: 'o/r'}}})).toEqual({
      owner: 'o',
      repo: 'r',
      number: 7,
    })
    expect(pullRequestOf({...prMessage('opened'), body: 'not json'})).toBeUndefined()
  })
})

describe('createCommenter against a GitHub Enterprise stand-in', () => {
  let github: StandIn
  beforeAll(async () => {
    github = await standIn((_req, res) => {
      res.writeHead(201, {'content-type': 'application/json'}).end('{"id":1}')
    })
  })
  afterAll(() => github.close())

  it('posts the queued and replayed comments to the issue comments API with the token', async () => {
    const {log} = capture()
    const commenter = createCommenter({token: 'ghp_secret_token_1234', baseUrl: `${github.url}/api/v3/`, log})
    github.requests.length = 0
    await commenter.queued(prMessage('opened'))
    await commenter.replayed(prMessage('synchronize'))
    await commenter.replayed(prMessage('closed'))
    expect(github.requests).toHaveLength(2)
    const [queued, replayed] = github.requests
    expect(queued!.method).toBe('POST')
    expect(queued!.url).toBe('/api/v3/repos/acme/widgets/issues/42/comments')
    expect(queued!.headers.authorization).toBe('token ghp_secret_token_1234')
    expect(JSON.parse(queued!.body.toString())).toEqual({body: QUEUED_COMMENT})
    expect(JSON.parse(replayed!.body.toString())).toEqual({body: REPLAYED_COMMENT})
  })

  it('is non-fatal: a GitHub error is logged (token masked) and the call resolves', async () => {
    github.respond((_req, res) => void res.writeHead(403, {'content-type': 'application/json'}).end('{"message":"Resource not accessible by integration"}'))
    const {lines, log} = capture()
    const commenter = createCommenter({token: 'ghp_other_secret_5678', baseUrl: `${github.url}/api/v3`, log})
    await expect(commenter.replayed(prMessage('opened'))).resolves.toBeUndefined()
    const warning = lines.find((line) => line.level === 'warn')
    expect(warning?.msg).toMatch(/could not comment on acme\/widgets#42 \(replayed\): Resource not accessible/)
    expect(warning?.status).toBe(403)
    expect(JSON.stringify(lines)).not.toContain('ghp_other_secret_5678')
  })

  it('a GitHub that hangs is cut off by the timeout', async () => {
    github.respond(() => undefined)
    const {lines, log} = capture()
    const commenter = createCommenter({token: 'ghp_third_secret_9999', baseUrl: `${github.url}/api/v3`, log, timeoutMs: 200})
    await commenter.queued(prMessage('opened'))
    expect(lines.some((line) => line.level === 'warn' && String(line.msg).includes('could not comment'))).toBe(true)
  })
})
