import {connect} from 'node:net'
import {describe, expect, it} from 'vitest'

import {CisternError, ExitCode, FlagValueError, StopSignalError, UsageError, carriesOutcome, describeTransportFailure, transportFailureOf} from '../../src/core/errors.js'

/** The error Node gives for a connection to a closed loopback port. */
async function refusedError(): Promise<Error> {
  return new Promise((resolve) => {
    // Port 9 (discard) is closed on loopback here; the kernel refuses at once.
    const socket = connect({host: '127.0.0.1', port: 9})
    socket.once('error', resolve)
  })
}

describe('transportFailureOf', () => {
  it('classifies a real refused connection, raw and wrapped in causes', async () => {
    const refused = await refusedError()
    expect(transportFailureOf(refused)).toEqual({kind: 'refused', code: 'ECONNREFUSED', where: '127.0.0.1:9'})
    const wrapped = new CisternError('SQS ReceiveMessage failed', {cause: new TypeError('fetch failed', {cause: refused})})
    expect(transportFailureOf(wrapped)).toEqual({kind: 'refused', code: 'ECONNREFUSED', where: '127.0.0.1:9'})
    expect(describeTransportFailure(transportFailureOf(wrapped)!)).toBe('connection refused by 127.0.0.1:9')
  })

  it('looks inside AggregateErrors (happy-eyeballs connect) and reads library codes', () => {
    const both = new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:8080'), {code: 'ECONNREFUSED', address: '::1', port: 8080})], 'connect failed')
    expect(transportFailureOf(both)?.kind).toBe('refused')
    expect(transportFailureOf(Object.assign(new Error('Headers Timeout Error'), {code: 'UND_ERR_HEADERS_TIMEOUT'}))).toEqual({kind: 'timeout', code: 'UND_ERR_HEADERS_TIMEOUT'})
    expect(transportFailureOf(Object.assign(new Error('other side closed'), {code: 'UND_ERR_SOCKET'}))?.kind).toBe('reset')
    expect(transportFailureOf(Object.assign(new Error('getaddrinfo ENOTFOUND ci.invalid'), {code: 'ENOTFOUND', hostname: 'ci.invalid'}))).toEqual({kind: 'dns', code: 'ENOTFOUND', where: 'ci.invalid'})
    expect(transportFailureOf(Object.assign(new Error('timed out'), {name: 'TimeoutError'}))?.kind).toBe('timeout')
    expect(transportFailureOf(Object.assign(new Error('self-signed'), {code: 'DEPTH_ZERO_SELF_SIGNED_CERT'}))?.kind).toBe('tls')
  })

  it('reads the code from the text when a wrapper kept only the message', () => {
    expect(transportFailureOf(new Error('SQS failed: Error: connect ECONNREFUSED 127.0.0.1:4566'))).toEqual({kind: 'refused', code: 'ECONNREFUSED', where: '127.0.0.1:4566'})
    expect(transportFailureOf(new Error('socket hang up ECONNRESET'))?.kind).toBe('reset')
  })

  it('is undefined for anything else, and survives cycles', () => {
    expect(transportFailureOf(new Error('Cannot read properties of undefined'))).toBeUndefined()
    expect(transportFailureOf(Object.assign(new Error('x'), {code: 'ENOENT'}))).toBeUndefined()
    expect(transportFailureOf('a plain string')).toBeUndefined()
    const a: {cause?: unknown} = new Error('a')
    a.cause = a
    expect(transportFailureOf(a)).toBeUndefined()
  })
})

describe('error classes', () => {
  it('all derive from CisternError, with their exit codes', () => {
    const flag = new FlagValueError('rate', 'a positive number', 'abc')
    expect(flag).toBeInstanceOf(UsageError)
    expect(flag.exitCode).toBe(ExitCode.usage)
    // oclif rewrites the message of errors thrown in flag parsers; the operator's line stays.
    flag.message = 'Parsing --rate \n\t--rate: expected …\nSee more help with --help'
    expect(flag.oneLine).toBe('--rate: expected a positive number, got "abc"')
    const stop = new StopSignalError('SIGTERM')
    expect(stop).toBeInstanceOf(CisternError)
    expect(stop.message).toBe('SIGTERM')
    expect(stop.exitCode).toBe(ExitCode.ok)
  })

  it('carriesOutcome tells a result with {exitCode, problems} apart', () => {
    expect(carriesOutcome({delivered: 1, exitCode: 3, problems: ['Jenkins ci is down']})).toBe(true)
    expect(carriesOutcome({exitCode: 0, problems: []})).toBe(true)
    expect(carriesOutcome({exitCode: 7, problems: []})).toBe(false)
    expect(carriesOutcome({exitCode: 1})).toBe(false)
    expect(carriesOutcome({exitCode: 1, problems: [1]})).toBe(false)
    expect(carriesOutcome(undefined)).toBe(false)
  })
})
