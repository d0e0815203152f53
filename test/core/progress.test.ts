import {describe, expect, it} from 'vitest'

import {createLogger} from '../../src/core/log.js'
import {LiveLine, pace, shortDuration} from '../../src/core/progress.js'

function screen() {
  const writes: string[] = []
  return {writes, stream: {write: (text: string) => (writes.push(text), true)}}
}

describe('LiveLine', () => {
  it('redraws one line in place, at most every minIntervalMs, and clears it', async () => {
    const {writes, stream} = screen()
    const line = new LiveLine(stream, 50)
    line.update('one')
    line.update('two') // within 50 ms: not drawn
    expect(writes).toEqual(['\r\u001B[2Kone'])
    await new Promise((resolve) => setTimeout(resolve, 60))
    line.update('three')
    expect(writes.at(-1)).toBe('\r\u001B[2Kthree')
    line.clear()
    expect(writes.at(-1)).toBe('\r\u001B[2K')
    line.clear() // nothing shown: nothing written
    expect(writes).toHaveLength(3)
  })

  it('a log line written while it is shown clears it first and redraws it after: nothing glued', () => {
    const {writes, stream} = screen()
    const line = new LiveLine(stream, 0)
    const log = line.around(createLogger({stream: stream as unknown as NodeJS.WritableStream, format: 'human', color: false, level: 'info'}))
    line.update('draining 3/10')
    log.warn('dead letter m1')
    log.debug('not shown')
    expect(writes).toEqual(['\r\u001B[2Kdraining 3/10', '\r\u001B[2K', 'warn  dead letter m1\n', '\r\u001B[2Kdraining 3/10'])
    log.child({component: 'x'}).info('a child line')
    expect(writes.slice(-3)).toEqual(['\r\u001B[2K', 'info  a child line component=x\n', '\r\u001B[2Kdraining 3/10'])
  })
})

describe('pace and shortDuration', () => {
  it('rate from what was done, time left from the rest', () => {
    expect(pace(50, 200, 10_000)).toEqual({perSecond: 5, leftMs: 30_000})
    expect(pace(0, 200, 1000)).toEqual({perSecond: 0})
    expect(pace(10, undefined, 2000)).toEqual({perSecond: 5})
    expect(pace(300, 200, 1000).leftMs).toBe(0)
  })

  it('reads as an operator would', () => {
    expect(shortDuration(400)).toBe('0s')
    expect(shortDuration(45_000)).toBe('45s')
    expect(shortDuration(200_000)).toBe('3m 20s')
    expect(shortDuration(3_900_000)).toBe('1h 5m')
  })
})
