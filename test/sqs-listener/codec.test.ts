import {describe, expect, it} from 'vitest'
import {parse} from 'yaml'

import {
  decodeBody,
  decodeResponse,
  encodeResponse,
  encodedSize,
  fitMessage,
  packLines,
  parseRequest,
  responseYaml,
  type Response,
} from '../../src/sqs-listener/codec.js'

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64')
const REQUEST = 'test_job_1:\n  request_id: 7f23b8ae-3e06-405c-9131-f133aaa12c96\n  parameters:\n  - param1\n  - param2\n'

describe('decodeBody', () => {
  it('reads plain YAML as plain', () => {
    expect(decodeBody(REQUEST)).toEqual({text: REQUEST, encoding: 'plain'})
  })

  it('detects base64 (as boto2 wrote it), with or without line breaks', () => {
    expect(decodeBody(b64(REQUEST))).toEqual({text: REQUEST, encoding: 'base64'})
    const wrapped = b64(REQUEST).replace(/(.{76})/g, '$1\n')
    expect(decodeBody(wrapped)).toEqual({text: REQUEST, encoding: 'base64'})
  })

  it('keeps text that only looks like base64 but is not UTF-8 or not padded as plain', () => {
    expect(decodeBody('abc').encoding).toBe('plain') // length not a multiple of 4
    expect(decodeBody('/////w==').encoding).toBe('plain') // decodes to invalid UTF-8
    expect(decodeBody('').encoding).toBe('plain')
  })
})

describe('parseRequest', () => {
  it('reads the documented request, plain and base64', () => {
    for (const body of [REQUEST, b64(REQUEST)]) {
      const parsed = parseRequest(body)
      expect(parsed).toMatchObject({ok: true, request: {jobName: 'test_job_1', requestId: '7f23b8ae-3e06-405c-9131-f133aaa12c96', parameters: ['param1', 'param2']}})
    }
    expect(parseRequest(b64(REQUEST)).encoding).toBe('base64')
  })

  it('keeps every scalar literally: numbers, booleans and nulls inside the list stay as written', () => {
    const parsed = parseRequest("j:\n  request_id: 0012\n  parameters: [1.0, yes, 'null', \"a b\", 0x1F, '', ~]\n")
    expect(parsed).toMatchObject({ok: true, request: {requestId: '0012', parameters: ['1.0', 'yes', 'null', 'a b', '0x1F', '', '']}})
  })

  it('accepts missing or null parameters as none, and a single scalar as one parameter', () => {
    expect(parseRequest('j:\n  request_id: r\n')).toMatchObject({ok: true, request: {parameters: []}})
    expect(parseRequest('j:\n  request_id: r\n  parameters: ~\n')).toMatchObject({ok: true, request: {parameters: []}})
    expect(parseRequest('j:\n  request_id: r\n  parameters: only\n')).toMatchObject({ok: true, request: {parameters: ['only']}})
  })

  it.each([
    ['not-yaml', 'j: [unclosed', 'unknown', 'unknown'],
    ['not-yaml', 'a: 1\na: 2\n', 'unknown', 'unknown'], // duplicate keys
    ['not-a-mapping', '- a\n- b\n', 'unknown', 'unknown'],
    ['not-a-mapping', 'hello', 'unknown', 'unknown'],
    ['not-a-mapping', '', 'unknown', 'unknown'],
    ['not-a-mapping', '{}', 'unknown', 'unknown'],
    ['several-jobs', 'a:\n  request_id: 1\nb:\n  request_id: 2\n', 'unknown', 'unknown'],
    ['bad-job-body', 'j: just-a-string', 'j', 'unknown'],
    ['bad-job-body', 'j: [1, 2]', 'j', 'unknown'],
    ['no-request-id', 'j:\n  parameters: [a]\n', 'j', 'unknown'],
    ['no-request-id', 'j:\n  request_id: ~\n', 'j', 'unknown'],
    ['no-request-id', 'j:\n  request_id: [1]\n', 'j', 'unknown'],
    ['bad-parameters', 'j:\n  request_id: r1\n  parameters: {a: b}\n', 'j', 'r1'],
    ['bad-parameters', 'j:\n  request_id: r1\n  parameters: [[nested]]\n', 'j', 'r1'],
    ['bad-parameters', 'j:\n  request_id: r1\n  parameters: ["a\\0b"]\n', 'j', 'r1'],
    ['no-request-id', 'j:\n  request_id: "r\\0"\n', 'j', 'unknown'],
  ])('%s: %j', (kind, body, jobName, requestId) => {
    const parsed = parseRequest(body)
    expect(parsed.ok).toBe(false)
    expect(parsed).toMatchObject({kind, jobName, requestId})
    if (!parsed.ok) expect(parsed.reason.length).toBeGreaterThan(10)
  })

  it('does not resolve aliases (billion laughs) and treats them as unreadable', () => {
    const parsed = parseRequest('j:\n  request_id: &a r1\n  parameters: [*a]\n')
    expect(parsed).toMatchObject({ok: false, kind: 'bad-parameters'})
  })
})

describe('responses', () => {
  const response: Response = {job_name: 'test_job_1', request_id: '0012', result: 'success', message: 'Everything was A-OK\nsecond line: with colon\n  indented'}

  it('is YAML with the original keys in order, readable back exactly', () => {
    const yaml = responseYaml(response)
    expect(Object.keys(parse(yaml))).toEqual(['job_name', 'request_id', 'result', 'message'])
    expect(parse(yaml)).toEqual(response) // request_id stays the string "0012"
  })

  it('encodes plain or base64 as configured; decodeResponse reads both', () => {
    expect(encodeResponse(response, 'plain')).toBe(responseYaml(response))
    expect(Buffer.from(encodeResponse(response, 'base64'), 'base64').toString('utf8')).toBe(responseYaml(response))
    expect(decodeResponse(encodeResponse(response, 'base64'))).toEqual(response)
    expect(decodeResponse(encodeResponse(response, 'plain'))).toEqual(response)
  })

  it('packs working lines in order into messages that each fit the size limit', () => {
    const base = {job_name: 'j', request_id: 'r', result: 'working' as const}
    const lines = Array.from({length: 200}, (_, i) => `output line number ${i} ${'x'.repeat(i % 37)}`)
    for (const encoding of ['plain', 'base64'] as const) {
      const messages = packLines(base, lines, encoding, 1024)
      expect(messages.length).toBeGreaterThan(5)
      for (const message of messages) expect(encodedSize({...base, message}, encoding)).toBeLessThanOrEqual(1024)
      expect(messages.flatMap((m) => m.split('\n'))).toEqual(lines)
    }
  })

  it('still fits when YAML must quote and escape the lines (control characters)', () => {
    const base = {job_name: 'j', request_id: 'r', result: 'working' as const}
    const lines = Array.from({length: 60}, (_, i) => `\x1b[32mcolour ${i}\x1b[0m\t${'\x01'.repeat(20)}`)
    const messages = packLines(base, lines, 'plain', 800)
    for (const message of messages) expect(encodedSize({...base, message}, 'plain')).toBeLessThanOrEqual(800)
    expect(messages.flatMap((m) => m.split('\n'))).toEqual(lines)
    expect(decodeResponse(encodeResponse({...base, message: messages[0] ?? ''}, 'plain')).message).toBe(messages[0])
  })

  it('cuts a single line too long for one message, saying so', () => {
    const base = {job_name: 'j', request_id: 'r', result: 'working' as const}
    const messages = packLines(base, ['short', 'y'.repeat(5000), 'after'], 'base64', 1000)
    for (const message of messages) expect(encodedSize({...base, message}, 'base64')).toBeLessThanOrEqual(1000)
    const all = messages.join('\n')
    expect(all).toContain('line cut to fit')
    expect(all.startsWith('short')).toBe(true)
    expect(all.endsWith('after')).toBe(true)
  })

  it('fits a final message by keeping the head and the latest lines', () => {
    const base = {job_name: 'j', request_id: 'r', result: 'failure' as const}
    const tail = Array.from({length: 100}, (_, i) => `tail ${i}`)
    const message = fitMessage(base, 'Job j failed with exit code 3.', tail, 'plain', 400)
    expect(encodedSize({...base, message}, 'plain')).toBeLessThanOrEqual(400)
    expect(message.startsWith('Job j failed with exit code 3.')).toBe(true)
    expect(message.endsWith('tail 99')).toBe(true)
    expect(message).not.toContain('tail 0\n')
  })
})
