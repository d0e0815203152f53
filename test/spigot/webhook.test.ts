import {describe, expect, it} from 'vitest'

import {describeWebhook, parsePayload, signPayload, verifySignature} from '../../src/spigot/webhook.js'
import {githubDelivery, githubExample} from '../helpers/jenkins.js'

describe('verifySignature', () => {
  const hook = githubDelivery('push', githubExample('push'), {secret: 'It\'s a Secret to Everybody'})

  it('accepts GitHub\'s X-Hub-Signature-256 over the raw bytes', () => {
    expect(verifySignature('It\'s a Secret to Everybody', hook.body, hook.headers['X-Hub-Signature-256'])).toBe(true)
    expect(signPayload('It\'s a Secret to Everybody', hook.body)).toBe(hook.headers['X-Hub-Signature-256'])
  })

  it('GitHub\'s documented test vector', () => {
    // docs.github.com "Validating webhook deliveries": secret and payload below, expected signature.
    expect(signPayload('It\'s a Secret to Everybody', 'Hello, World!')).toBe('sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17')
  })

  it('rejects a wrong secret, a changed byte, a missing or malformed header, the sha1 header', () => {
    expect(verifySignature('wrong', hook.body, hook.headers['X-Hub-Signature-256'])).toBe(false)
    const changed = Buffer.from(hook.body)
    changed[10] = changed[10]! ^ 1
    expect(verifySignature('It\'s a Secret to Everybody', changed, hook.headers['X-Hub-Signature-256'])).toBe(false)
    expect(verifySignature('It\'s a Secret to Everybody', hook.body, undefined)).toBe(false)
    expect(verifySignature('It\'s a Secret to Everybody', hook.body, 'sha256=abc')).toBe(false)
    expect(verifySignature('It\'s a Secret to Everybody', hook.body, 'sha256=' + 'z'.repeat(64))).toBe(false)
    expect(verifySignature('It\'s a Secret to Everybody', hook.body, hook.headers['X-Hub-Signature'])).toBe(false)
  })
})

describe('parsePayload', () => {
  it('JSON and form-encoded payload=…', () => {
    const payload = githubExample('pull_request', {action: 'opened'})
    const json = githubDelivery('pull_request', payload)
    expect(parsePayload(json.body, json.headers['Content-Type'])).toEqual({ok: true, body: payload, form: false, text: json.body.toString('utf8')})
    const form = githubDelivery('pull_request', payload, {form: true})
    expect(parsePayload(form.body, form.headers['Content-Type'])).toEqual({ok: true, body: payload, form: true, text: JSON.stringify(payload)})
    expect(parsePayload(Buffer.from('{"a":1}'), 'application/json; charset=utf-8')).toMatchObject({ok: true})
    expect(parsePayload(Buffer.from('{"a":1}'), undefined)).toMatchObject({ok: true})
  })

  it('malformed input', () => {
    expect(parsePayload(Buffer.from('{"a":'), 'application/json')).toMatchObject({ok: false, reason: expect.stringContaining('malformed JSON')})
    expect(parsePayload(Buffer.alloc(0), 'application/json')).toMatchObject({ok: false, reason: 'empty body'})
    expect(parsePayload(Buffer.from('[1,2]'), 'application/json')).toMatchObject({ok: false, reason: expect.stringContaining('not a JSON object')})
    expect(parsePayload(Buffer.from('null'), 'application/json')).toMatchObject({ok: false})
    expect(parsePayload(Buffer.from('other=1'), 'application/x-www-form-urlencoded')).toMatchObject({ok: false, reason: expect.stringContaining('payload')})
    expect(parsePayload(Buffer.from('payload=%7Bnope'), 'application/x-www-form-urlencoded')).toMatchObject({ok: false, reason: expect.stringContaining('malformed JSON')})
    expect(parsePayload(Buffer.from('<xml/>'), 'text/xml')).toMatchObject({ok: false, reason: expect.stringContaining('unsupported content type')})
  })
})

describe('describeWebhook', () => {
  it('names event, action, repository, number and delivery', () => {
    const payload = githubExample('pull_request', {action: 'opened'})
    const about = describeWebhook('pull_request', payload, 'd-1')
    expect(about).toMatchObject({event: 'pull_request', action: 'opened', delivery: 'd-1'})
    expect(about.repository).toBe((payload.repository as {full_name: string}).full_name)
    expect(about.number).toBe(payload.number)
  })
})
