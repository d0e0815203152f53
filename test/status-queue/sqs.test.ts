import {ChangeMessageVisibilityCommand, DeleteMessageBatchCommand, ReceiveMessageCommand} from '@aws-sdk/client-sqs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {resolveSettings} from '../../src/status-queue/config.js'
import {runStatusQueue} from '../../src/status-queue/worker.js'
import {SqsSimulator} from '../core/queue/sqs-sim.js'
import {body, detail} from './fixtures.js'
import {type GitHubStandIn, githubStandIn, replies} from './github-standin.js'

const sim = new SqsSimulator('us-east-1')
let github: GitHubStandIn
beforeAll(async () => {
  github = await githubStandIn()
})
afterAll(async () => {
  sim.stop()
  await github.close()
})

const commit = (c: string) => c.repeat(40)
const repo = 'git@127.0.0.1:acme/web-app.git'

describe('an SQS FIFO queue filled by EventBridge (one static MessageGroupId)', () => {
  // Issue 11: a 429 closes the github gate for its Retry-After (the message is released with that
  // visibility, not retried), and a one-shot run waits for it and posts it (it used to leave it queued).
  it('posts a batch concurrently but each commit in order, and turns 429 Retry-After into the message visibility', async () => {
    const queue = sim.createQueue('buildkite-status.fifo', {deadLetterName: 'buildkite-status-dead.fifo', maxReceiveCount: 5})
    const put = (text: string, dedup: string) => sim.put(queue, {MessageBody: text, MessageGroupId: 'buildkite-builds', MessageDeduplicationId: dedup})
    put(body(detail({commit: commit('a'), number: 7, state: 'running', repo})), 'a-running')
    put(body(detail({commit: commit('a'), number: 7, state: 'passed', repo})), 'a-passed')
    put(body(detail({commit: commit('b'), number: 8, state: 'failed', repo})), 'b-failed')
    put(body(detail({commit: commit('c'), number: 9, state: 'passed', repo})), 'c-passed')
    github.script((post, attempt) => {
      // c's 429 comes last: after it, GitHub's Retry-After closes the github gate for 2 s
      if (post.sha === commit('c') && attempt === 1) return {...replies.tooMany(2), delayMs: 1000}
      // the first event of commit a is the slowest: it must still land before the second
      if (post.sha === commit('a') && post.body.state === 'pending') return {status: 201, delayMs: 80, body: {}}
      return undefined
    })

    const settings = resolveSettings({
      flags: {queue: queue.url},
      env: {GITHUB_URL: github.apiUrl, GITHUB_ACCESS_TOKEN: 'ghp_sqs_test_token'},
      file: {github: {retries: 0, inlineWaitMaxSeconds: 0}},
    })
    const summary = await runStatusQueue(settings, {once: true})
    expect(summary).toMatchObject({received: 5, delivered: 4, retried: 0, released: 1, dead: 0, exitCode: 0})

    const landed = github.posted.map((p) => `${p.sha.charAt(0)}:${String(p.body.state)}`)
    expect(landed.filter((s) => s.startsWith('a:'))).toEqual(['a:pending', 'a:success'])
    expect(landed).toContain('b:failure')
    // b did not wait for a's slow first event: one batch, posted side by side
    expect(landed.indexOf('b:failure')).toBeLessThan(landed.indexOf('a:pending'))

    const receives = sim.mock.commandCalls(ReceiveMessageCommand)
    expect(receives[0]!.args[0].input).toMatchObject({QueueUrl: queue.url, MaxNumberOfMessages: 10})
    const visibility = sim.mock.commandCalls(ChangeMessageVisibilityCommand).map((call) => call.args[0].input)
    expect(visibility).toEqual([expect.objectContaining({QueueUrl: queue.url, VisibilityTimeout: 2})])
    const deleted = sim.mock.commandCalls(DeleteMessageBatchCommand).flatMap((call) => call.args[0].input.Entries ?? [])
    expect(deleted).toHaveLength(4)
    // c waited in the queue for its Retry-After, holding no worker slot, and was received once more: nothing in between
    expect(landed.at(-1)).toBe('c:success')
    const received = await Promise.all(receives.map(async (call) => ((await call.returnValue) as {Messages?: unknown[]}).Messages?.length ?? 0))
    expect(received.reduce((a, b) => a + b, 0)).toBe(5)
    expect(queue.messages).toEqual([])
  })
})
