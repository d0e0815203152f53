import {describe, expect, it} from 'vitest'

import {encodeMessage} from '../../src/core/webhook-message.js'
import {readQueuedWebhook, topLevelMembers} from '../../src/spigot/queued-webhook.js'
import {lambdaMessage, seeded, webhook} from './drain-fixtures.js'

/** Random JSON values with the awkward parts: escapes, unicode, nesting, numbers, empty containers. */
function randomValue(random: () => number, depth = 0): unknown {
  const pick = Math.floor(random() * (depth > 3 ? 5 : 8))
  const strings = ['', 'plain', 'quote " inside', 'back\\slash\\', 'brace } and ] and , and :', 'Zoë Ünïcode ✓', 'new\nline\ttab', '\\"', 'emoji 😀']
  switch (pick) {
    case 0:
      return strings[Math.floor(random() * strings.length)]
    case 1:
      return Math.round((random() - 0.5) * 1e6) / 100
    case 2:
      return random() < 0.5
    case 3:
      return null
    case 4:
      return -0.5e-7
    case 5:
      return Array.from({length: Math.floor(random() * 4)}, () => randomValue(random, depth + 1))
    default:
      return Object.fromEntries(Array.from({length: Math.floor(random() * 4)}, (_, i) => [`${strings[i % strings.length]}${i}`, randomValue(random, depth + 1)]))
  }
}

describe('topLevelMembers', () => {
  it('gives each member as its JSON text, as JSON.parse reads it (random documents, compact and pretty)', () => {
    const random = seeded(5)
    for (let n = 0; n < 300; n++) {
      const document = Object.fromEntries(Array.from({length: 1 + Math.floor(random() * 5)}, (_, i) => [`k${i}${i % 2 ? ' "q"' : ''}`, randomValue(random)]))
      for (const text of [JSON.stringify(document), JSON.stringify(document, null, 1 + (n % 3)) + '\n']) {
        const members = topLevelMembers(text)
        expect(members, text).toBeDefined()
        expect(Object.fromEntries([...members!].map(([key, value]) => [key, JSON.parse(value) as unknown]))).toEqual(JSON.parse(text))
      }
    }
  })

  it('is undefined for what is not one JSON object', () => {
    for (const text of ['', '[]', '"x"', '{', '{"a":1', '{"a":"x}', '{"a":1}}', '{"a" 1}', '{a:1}', '{"a":1,}x', '{"a":1} {"b":2}']) expect(topLevelMembers(text), text).toBeUndefined()
    expect(topLevelMembers(' { } ')).toEqual(new Map())
  })
})

describe('readQueuedWebhook: the bytes a replay sends, without parsing the payload', () => {
  it("cistern's message: the body's text as written (it is JSON.stringify(body)); raw_body when there is one", () => {
    const hook = webhook('push')
    const {raw_body: _raw, ...compact} = hook.message
    const read = readQueuedWebhook(encodeMessage(compact))
    expect(read.message.headers['X-GitHub-Delivery']).toBe(hook.delivery)
    expect(read.message).not.toHaveProperty('body')
    expect(read.bytes().toString()).toBe(JSON.stringify(hook.message.body))
    expect(read.body()).toEqual(hook.message.body)
    expect(readQueuedWebhook(encodeMessage(hook.message)).bytes().equals(hook.raw)).toBe(true)
  })

  it("the original Lambda's message (no received_at, written by Python): re-serialised, as before", () => {
    const original = lambdaMessage('pull_request')
    const python = JSON.stringify(original.message, null, 1).replaceAll('\n', ' ')
    expect(readQueuedWebhook(python).bytes().toString()).toBe(JSON.stringify(original.message.body))
  })

  it('what is not a spigot message throws with the reason, as decodeMessage does', () => {
    expect(() => readQueuedWebhook('not json')).toThrow(/JSON/)
    expect(() => readQueuedWebhook('{"body":{}}')).toThrow(/not a spigot message/)
    expect(() => readQueuedWebhook('{"headers":{"X-GitHub-Event":"push"}}')).toThrow(/not a spigot message/)
  })
})

describe('readQueuedWebhook: cistern\'s layout, read by two string searches', () => {
  it('a payload that holds "headers" and "body" keys of its own does not confuse it', () => {
    const hook = webhook('push')
    const body = {...(hook.message.body as object), client_payload: {headers: {a: 'b'}, body: {c: [1, 2, {headers: {}}]}}, note: ',"headers":{ and ,"body": in a string'}
    const {raw_body: _raw, ...compact} = {...hook.message, body}
    for (const text of [encodeMessage(compact), encodeMessage({...compact, target: 'default', large_payload: {bucket: 'b', key: 'k', bytes: 1}})]) {
      const read = readQueuedWebhook(text)
      expect(read.bytes().toString()).toBe(JSON.stringify(body))
      expect(read.message.headers).toEqual(hook.message.headers)
      expect(read.body()).toEqual(body)
    }
  })

  it('a message that only starts like cistern\'s falls back to the scan and reads the same', () => {
    const text = '{"spigot_state":"OFF","headers":{"X-GitHub-Event":"push"},"from_queue":"false","body":{"headers":{"x":1}},"received_at":"2026-01-01T00:00:00Z"}'
    const read = readQueuedWebhook(text)
    expect(read.message.headers).toEqual({'X-GitHub-Event': 'push'})
    expect(read.bytes().toString()).toBe('{"headers":{"x":1}}')
  })
})

it('headers before a body that holds a "headers" key (not how cistern writes, but readable): read by the scan', () => {
  const text = '{"spigot_state":"OFF","headers":{"X-GitHub-Event":"push"},"from_queue":"false","body":{"a":1,"headers":{"x":1}},"received_at":"2026-01-01T00:00:00Z"}'
  const read = readQueuedWebhook(text)
  expect(read.message.headers).toEqual({'X-GitHub-Event': 'push'})
  expect(read.bytes().toString()).toBe('{"a":1,"headers":{"x":1}}')
})
