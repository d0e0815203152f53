import {describe, expect, it} from 'vitest'

import type {LogFields, LogLevel, Logger} from '../../src/core/log.js'
import {sampledLogger} from '../../src/core/log-sample.js'

function recording(level: LogLevel) {
  const lines: Array<{level: string; message: string; fields?: LogFields}> = []
  const make = (base: LogFields): Logger => ({
    level,
    debug: (message, fields) => void lines.push({level: 'debug', message, fields: {...base, ...fields}}),
    info: (message, fields) => void lines.push({level: 'info', message, fields: {...base, ...fields}}),
    warn: (message, fields) => void lines.push({level: 'warn', message, fields: {...base, ...fields}}),
    error: (message, fields) => void lines.push({level: 'error', message, fields: {...base, ...fields}}),
    child: (fields) => make({...base, ...fields}),
  })
  return {lines, log: make({})}
}

describe('sampledLogger', () => {
  it('lets perSecond info and warn lines through each second, counts the rest and summarises them', () => {
    let now = 1_000_000
    const {lines, log} = recording('info')
    const sampled = sampledLogger(log, {perSecond: 3, summaryMs: 60_000, now: () => now})
    for (let i = 0; i < 10; i++) sampled.info('webhook queued', {n: i})
    for (let i = 0; i < 4; i++) sampled.warn('webhook rejected: bad signature')
    sampled.error('the queue failed')
    expect(lines.map((l) => `${l.level} ${l.message}`)).toEqual([
      'info webhook queued',
      'info webhook queued',
      'info webhook queued',
      'warn webhook rejected: bad signature',
      'warn webhook rejected: bad signature',
      'warn webhook rejected: bad signature',
      'error the queue failed',
    ])
    now += 1000 // the next second has a fresh budget
    sampled.child({component: 'x'}).info('webhook queued', {n: 10})
    expect(lines.at(-1)).toMatchObject({message: 'webhook queued', fields: {component: 'x', n: 10}})
    now += 4000
    sampled.flush()
    expect(lines.slice(-2)).toEqual([
      {level: 'info', message: '7 more "webhook queued" lines in the last 5 s (sampled; --log-level debug shows each)', fields: {sampled: 7}},
      {level: 'warn', message: '1 more "webhook rejected: bad signature" lines in the last 5 s (sampled; --log-level debug shows each)', fields: {sampled: 1}},
    ])
    sampled.flush()
    expect(lines).toHaveLength(10)
  })

  it('at debug every line passes; above info, info lines spend no budget', () => {
    const debug = recording('debug')
    const all = sampledLogger(debug.log, {perSecond: 1})
    for (let i = 0; i < 5; i++) all.info('webhook queued')
    expect(debug.lines).toHaveLength(5)

    const warnOnly = recording('warn')
    const sampled = sampledLogger(warnOnly.log, {perSecond: 1})
    for (let i = 0; i < 5; i++) sampled.info('dropped by the logger anyway')
    sampled.warn('shown')
    sampled.flush()
    expect(warnOnly.lines.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual(['shown'])
  })
})
