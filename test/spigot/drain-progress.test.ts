import {describe, expect, it} from 'vitest'

import {createLogger} from '../../src/core/log.js'
import {DrainProgressReport, describeProgress} from '../../src/spigot/drain-progress.js'

const counters = {received: 0, delivered: 0, retried: 0, dead: 0, released: 0, errors: 0, inFlight: 0, receiveErrors: 0}

describe('drain progress (issue 14)', () => {
  it('done/total, rate, time left, then what is not going well', () => {
    expect(describeProgress({...counters, delivered: 1200, retried: 2, inFlight: 4, total: 4000, elapsedMs: 4000})).toBe(
      'draining 1200/4000 (30%) · 300/s · 9s left · 2 retried · 0 dead · 4 in flight',
    )
    // A watch has no total; webhooks that arrived during the run never make the total read below what is done.
    expect(describeProgress({...counters, delivered: 5, dead: 1, released: 3, inFlight: 1, elapsedMs: 2000})).toBe(
      'draining 6 · 3.0/s · 0 retried · 1 dead · 3 waiting for Jenkins · 1 in flight',
    )
    expect(describeProgress({...counters, delivered: 12, inFlight: 2, total: 10, elapsedMs: 1000})).toMatch(/^draining 12\/14 \(85%\)/)
  })

  it('on a terminal: one live line, and log lines clear it first', () => {
    const writes: string[] = []
    const stream = {write: (text: string) => (writes.push(text), true)}
    const report = new DrainProgressReport('tty', {total: 10, log: createLogger(), stream})
    const log = report.logger(createLogger({stream: stream as unknown as NodeJS.WritableStream, format: 'json', level: 'warn'}))
    report.update({...counters, delivered: 3, inFlight: 2})
    log.warn('dead letter m7')
    report.end()
    expect(writes[0]!.startsWith('\r\u001B[2Kdraining 3/10 (30%)')).toBe(true)
    expect(writes[1]).toBe('\r\u001B[2K')
    expect(JSON.parse(writes[2]!)).toMatchObject({level: 'warn', msg: 'dead letter m7'})
    expect(writes[3]!.startsWith('\r\u001B[2Kdraining 3/10')).toBe(true)
    expect(writes.at(-1)).toBe('\r\u001B[2K')
    expect(report.last).toMatchObject({delivered: 3, total: 10})
  })

  it('off a terminal: nothing per update (a line every 30 s), onProgress still told', () => {
    const lines: string[] = []
    const told: number[] = []
    const log = createLogger({stream: {write: (text: string) => (lines.push(text), true)} as unknown as NodeJS.WritableStream, format: 'json'})
    const report = new DrainProgressReport('log', {total: 100, log, onProgress: (p) => told.push(p.delivered)})
    for (let i = 1; i <= 50; i++) report.update({...counters, delivered: i})
    report.end()
    expect(lines).toEqual([])
    expect(told).toHaveLength(50)
  })
})
