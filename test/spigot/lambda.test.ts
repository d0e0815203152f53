import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import {type MappingTemplateEvent, handler, queueUrlFrom, resetLambdaRuntime} from '../../src/spigot/lambda.js'
import {decodeMessage, replayBytes} from '../../src/core/webhook-message.js'
import {type JenkinsStandIn, githubDelivery, githubExample, jenkinsStandIn, signatureVerifies} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-spigot-lambda-')
let n = 0
let jenkins: JenkinsStandIn
let queue: Queue

beforeEach(async () => {
  jenkins = await jenkinsStandIn('accept')
  const url = `sqlite:${join(dir, `lambda-${++n}.db`)}#spigot`
  queue = await openQueue(url, {fifo: true})
  vi.stubEnv('TARGET_URL', jenkins.url.replace(/\/$/, ''))
  vi.stubEnv('TARGET_QUEUE', url)
  vi.stubEnv('FORWARD_TIMEOUT_MS', '500')
  vi.stubEnv('LOG_LEVEL', 'ERROR')
  vi.stubEnv('GITHUB_WEBHOOK_SECRET', '')
  vi.stubEnv('CISTERN_CONFIG', '')
})
afterEach(async () => {
  await resetLambdaRuntime()
  vi.unstubAllEnvs()
  await queue.close()
  await jenkins.close()
})

/** What the original mapping template produced: body parsed, every request header. */
function originalEvent(state: string, event: string, payload: unknown, extra: Partial<MappingTemplateEvent> = {}): MappingTemplateEvent {
  return {
    spigot_state: state,
    from_queue: '',
    body: payload,
    headers: {
      Accept: '*/*',
      'Content-Type': 'application/json',
      Host: 'abc123.execute-api.us-east-1.amazonaws.com',
      'User-Agent': 'GitHub-Hookshot/5a7f3a1',
      'X-GitHub-Delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958',
      'X-GitHub-Event': event,
      'X-Forwarded-For': '192.30.252.1',
    },
    ...extra,
  }
}

async function queued() {
  return (await queue.peek(10)).map((m) => ({raw: m, message: decodeMessage(m.body)}))
}

describe('lambda handler: the original mapping-template event', () => {
  it('ON + Jenkins up: forwards the re-serialised body as JSON, like the original', async () => {
    const payload = githubExample('push')
    const result = await handler(originalEvent('ON', 'push', payload))
    expect(result).toMatchObject({status: 200, ok: true, forwarded: ['default']})
    expect(jenkins.webhooks).toHaveLength(1)
    const got = jenkins.webhooks[0]!
    expect(got.url).toBe('/github-webhook/')
    expect(JSON.parse(got.body.toString())).toEqual(payload)
    expect(got.headers['content-type']).toBe('application/json')
    expect(got.headers['x-github-event']).toBe('push')
    expect(got.headers.host).not.toContain('execute-api')
    expect(await queued()).toEqual([])
  })

  it('OFF: queued in the original shape (+ raw body), answer 202', async () => {
    const payload = githubExample('pull_request', {action: 'opened'})
    const result = await handler(originalEvent('OFF', 'pull_request', payload))
    expect(result).toMatchObject({status: 202, queued: ['default'], state: 'OFF'})
    expect(jenkins.requests).toHaveLength(0)
    const {message, raw} = (await queued())[0]!
    expect(message).toMatchObject({spigot_state: 'OFF', from_queue: '', body: payload, target: 'default'})
    expect(message.headers['X-GitHub-Event']).toBe('pull_request')
    expect(message.headers).not.toHaveProperty('X-Forwarded-For')
    expect(JSON.parse(replayBytes(message).toString())).toEqual(payload)
    expect(raw.groupId).toBe((payload.repository as {full_name: string}).full_name)
    expect(raw.deduplicationId).toBe('72d3162e-cc78-11e3-81ab-4c9367dc0958:default')
  })

  it('ON + Jenkins down → queued; from the original drain (from_queue=True) → error, not queued again', async () => {
    await jenkins.setMode('refuse')
    expect(await handler(originalEvent('ON', 'push', githubExample('push')))).toMatchObject({status: 202})
    expect(await queued()).toHaveLength(1)
    await expect(handler(originalEvent('ON', 'push', githubExample('push', {index: 1}), {from_queue: 'True'}))).rejects.toThrow(/^502: Jenkins did not accept/)
    await expect(handler(originalEvent('OFF', 'push', githubExample('push', {index: 1}), {from_queue: 'True'}))).rejects.toThrow(/^503: the spigot is OFF/)
    expect(await queued()).toHaveLength(1)
    await jenkins.setMode('accept')
    expect(await handler(originalEvent('ON', 'push', githubExample('push', {index: 1}), {from_queue: 'True'}))).toMatchObject({status: 200})
  })

  it('ping → 200; an event without a rule → Jenkins\' github-webhook/ (issue 14), or 202 with unrouted accept; missing event header → "400: …"; bad state → "500: …"', async () => {
    expect(await handler(originalEvent('ON', 'ping', githubExample('ping')))).toMatchObject({status: 200, event: 'ping'})
    expect(await handler(originalEvent('ON', 'star', githubExample('star')))).toMatchObject({status: 200, forwarded: ['default']})
    expect(jenkins.webhooks.map((r) => [r.url, r.headers['x-github-event']])).toEqual([['/github-webhook/', 'star']])
    vi.stubEnv('CISTERN_SPIGOT_UNROUTED', 'accept')
    expect(await handler(originalEvent('ON', 'star', githubExample('star')))).toMatchObject({status: 202})
    const noEvent = originalEvent('ON', 'push', githubExample('push'))
    delete noEvent.headers!['X-GitHub-Event']
    await expect(handler(noEvent)).rejects.toThrow(/^400: missing X-GitHub-Event/)
    await expect(handler(originalEvent('MAYBE', 'push', githubExample('push')))).rejects.toThrow(/^500: API Gateway stage variable spigot_state/)
    expect(jenkins.webhooks).toHaveLength(1)
  })

  it('missing TARGET_URL is reported like the original', async () => {
    vi.stubEnv('TARGET_URL', '')
    await resetLambdaRuntime()
    await expect(handler(originalEvent('ON', 'push', githubExample('push')))).rejects.toThrow(/TARGET_URL was not set/)
    expect(queueUrlFrom('spigot-queue')).toBe('sqs://spigot-queue')
    expect(queueUrlFrom('https://sqs.us-east-1.amazonaws.com/1/q.fifo')).toBe('https://sqs.us-east-1.amazonaws.com/1/q.fifo')
  })
})

describe('lambda handler: cistern mapping template with raw_body', () => {
  it('verifies the signature over the raw bytes and forwards them unchanged', async () => {
    vi.stubEnv('GITHUB_WEBHOOK_SECRET', 'lambda-secret')
    const hook = githubDelivery('issue_comment', githubExample('issue_comment'), {secret: 'lambda-secret', pretty: true})
    const event: MappingTemplateEvent = {spigot_state: 'ON', from_queue: '', body: JSON.parse(hook.body.toString()), headers: hook.headers, raw_body: hook.body.toString('base64')}
    expect(await handler(event)).toMatchObject({status: 200})
    expect(jenkins.webhooks[0]!.body.equals(hook.body)).toBe(true)
    expect(signatureVerifies('lambda-secret', jenkins.webhooks[0]!)).toBe(true)

    const wrong = githubDelivery('push', githubExample('push'), {secret: 'other'})
    await expect(handler({...event, headers: wrong.headers, raw_body: wrong.body.toString('base64')})).rejects.toThrow(/^401: /)
    // The original template (no raw_body) cannot be verified.
    await expect(handler({...event, raw_body: undefined})).rejects.toThrow(/^401: .*raw_body/)
    expect(jenkins.webhooks).toHaveLength(1)
    expect(await queued()).toHaveLength(0)
  })
})

describe('lambda handler: proxy integration / function URL event', () => {
  it('returns {statusCode, body}; state from the stage variable', async () => {
    const hook = githubDelivery('push', githubExample('push'))
    const result = await handler({
      requestContext: {},
      body: hook.body.toString('base64'),
      isBase64Encoded: true,
      headers: Object.fromEntries(Object.entries(hook.headers).map(([k, v]) => [k.toLowerCase(), v])),
      stageVariables: {spigot_state: 'OFF'},
    })
    expect(result).toMatchObject({statusCode: 202})
    const {message} = (await queued())[0]!
    expect(replayBytes(message).equals(hook.body)).toBe(true)
    expect(await handler({requestContext: {}, body: '{', headers: {'x-github-event': 'push'}, stageVariables: {spigot_state: 'ON'}})).toMatchObject({statusCode: 400})
  })
})
