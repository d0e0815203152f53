import {describe, expect, it} from 'vitest'

import {handlerContext} from '../../src/core/consume.js'
import {silentLogger} from '../../src/core/log.js'
import type {QueueMessage} from '../../src/core/queue/types.js'
import type {GitHubAnswer} from '../../src/status-queue/answers.js'
import type {StatusPoster, StatusTarget} from '../../src/status-queue/github.js'
import {statusHandler} from '../../src/status-queue/handler.js'
import type {CommitStatus} from '../../src/status-queue/status.js'
import {SHA, body, detail} from './fixtures.js'

let seq = 0
const message = (text: string, groupId?: string): QueueMessage => ({
  id: `m-${++seq}`,
  body: text,
  receiptHandle: `r-${seq}`,
  receiveCount: 1,
  groupId,
  attributes: {},
})
const context = handlerContext({log: silentLogger})
const repo = 'git@github.com:acme/web-app.git'

/** A GitHub client that records calls and answers from a script, optionally after a pause. */
function fakeGitHub(answer: (status: CommitStatus, target: StatusTarget) => GitHubAnswer | Promise<GitHubAnswer> = () => ({kind: 'ok', status: 201})) {
  const calls: Array<{target: StatusTarget; status: CommitStatus}> = []
  const client: StatusPoster = {
    apiUrl: 'https://api.github.com',
    // recorded when GitHub has answered: the order statuses land in
    async post(target, status) {
      const result = await answer(status, target)
      calls.push({target, status})
      return result
    },
  }
  return {client, calls}
}

describe('statusHandler', () => {
  it('posts the events of one commit from a FIFO group in order, other commits alongside', async () => {
    const {client, calls} = fakeGitHub(async (status) => {
      // the first message of the group is the slowest: without ordering it would post last
      if (status.target_url.endsWith('/builds/1')) await new Promise((resolve) => setTimeout(resolve, 60))
      return {kind: 'ok', status: 201}
    })
    const handler = statusHandler({github: client, hosts: ['github.com']})
    const outcomes = await Promise.all([
      handler(message(body(detail({number: 1, state: 'running', repo})), 'g'), context),
      handler(message(body(detail({number: 2, state: 'running', repo})), 'g'), context),
      handler(message(body(detail({number: 3, state: 'passed', repo, commit: SHA.replace('0', 'f')})), 'g'), context),
      handler(message(body(detail({number: 2, state: 'passed', repo})), 'g'), context),
    ])
    expect(outcomes.map((o) => o.kind)).toEqual(['delivered', 'delivered', 'delivered', 'delivered'])
    const inGroup = calls.filter((c) => c.target.sha === SHA).map((c) => c.status.description)
    expect(inGroup).toEqual(['Build #1 is running', 'Build #2 is running', 'Build #2 passed'])
    // the other commit did not wait for the slow first event of this one
    expect(calls.findIndex((c) => c.target.sha !== SHA)).toBeLessThan(calls.findIndex((c) => c.status.description === 'Build #2 is running'))
  })

  // Issue 11: the later event is released (never attempted: no attempt counted), not retried; and
  // GitHub answering 502 is GitHub down, not a retry of the message.
  it('releases the later events of a commit in a FIFO batch when an earlier one is coming back', async () => {
    const {client, calls} = fakeGitHub((status) =>
      status.target_url.endsWith('/builds/1') ? {kind: 'unwell', answer: {status: 502}} : {kind: 'ok', status: 201},
    )
    const handler = statusHandler({github: client, hosts: ['github.com'], retries: 0})
    const outcomes = await Promise.all([
      handler(message(body(detail({number: 1, repo})), 'g'), context),
      handler(message(body(detail({number: 2, repo})), 'g'), context),
    ])
    expect(outcomes).toEqual([
      {kind: 'target-down', target: 'github', reason: 'github answered 502', credentials: false, retryAfterSeconds: undefined},
      {kind: 'released', delaySeconds: undefined, target: undefined, reason: 'an earlier event for this commit is coming back'},
    ])
    expect(calls).toHaveLength(1)
  })

  it('does not let an overtaken event turn a finished status back', async () => {
    const {client, calls} = fakeGitHub()
    const handler = statusHandler({github: client, hosts: ['github.com']})
    const run = (number: number, state: string) => handler(message(body(detail({number, state, repo}))), context)
    await run(5, 'passed')
    await run(5, 'running') // delivered late: skipped
    await run(4, 'failed') // an older build: skipped
    await run(5, 'failed') // a final state of the same build (a retried job): posted
    await run(6, 'scheduled') // a newer build: posted
    expect(calls.map((c) => c.status.description)).toEqual(['Build #5 passed', 'Build #5 failed', 'Build #6 is scheduled'])
  })

  // Issue 11: a rate limit is GitHub's, not the message's: it never counts toward max-attempts (the
  // consumer's maxAttempts, asserted in worker.test.ts, replaced the handler's own check).
  it('a rate limit closes the github gate for its wait and never counts as an attempt', async () => {
    const {client} = fakeGitHub(() => ({kind: 'rate-limited', status: 429, seconds: 3, reason: 'GitHub rate limit (429): slow down'}))
    const handler = statusHandler({github: client, hosts: ['github.com'], inlineWaitMaxSeconds: 0})
    const late = {...message(body(detail({repo}))), receiveCount: 30}
    expect(await handler(late, context)).toEqual({kind: 'target-down', target: 'github', reason: 'GitHub rate limit (429): slow down', credentials: false, retryAfterSeconds: 3})
  })

  // EventBridge's one FIFO group lets nothing else pass while a suspect waits: a refusal right after
  // a success for the same organisation is the status's own, at once; the next one goes to the judge.
  it('dead-letters a 422 that follows a success at once; a second refusal in a row is only a suspect', async () => {
    const {client} = fakeGitHub((status) =>
      status.target_url.endsWith('/builds/1') ? {kind: 'ok', status: 201} : {kind: 'refused', answer: {status: 422, detail: 'Validation Failed'}},
    )
    const handler = statusHandler({github: client, hosts: ['github.com']})
    const run = (number: number) => handler(message(body(detail({number, repo, commit: SHA.replace('0', String(number))}))), context)
    expect(await run(1)).toMatchObject({kind: 'delivered'})
    expect(await run(2)).toEqual({kind: 'dead', reason: 'github:acme answered 422: Validation Failed, while it accepted the status before'})
    expect(await run(3)).toMatchObject({kind: 'retry', reason: expect.stringMatching(/github:acme answered 422: Validation Failed \(retried once/)})
  })

  it('stops naming GITHUB_URL when GitHub answers like something else', async () => {
    const {client} = fakeGitHub(() => ({kind: 'misdirected', reason: 'GitHub answered 404 with a non-JSON page: GITHUB_URL does not look like the GitHub API'}))
    const handler = statusHandler({github: client, hosts: ['github.com']})
    const outcome = await handler(message(body(detail({repo}))), context)
    expect(outcome.kind).toBe('stop')
    if (outcome.kind === 'stop') expect(outcome.error.oneLine).toMatch(/GITHUB_URL https:\/\/api\.github\.com.*set GITHUB_URL to the API base/)
  })
})
