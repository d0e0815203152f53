import {describe, expect, it} from 'vitest'

import {silentLogger} from '../../src/core/log.js'
import {encodedSize, type Response} from '../../src/sqs-listener/codec.js'
import {WorkingBatcher} from '../../src/sqs-listener/working.js'

const base = {job_name: 'j', request_id: 'r', result: 'working' as const}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function recorder(delayMs: number) {
  const sent: Response[] = []
  return {
    sent,
    send: async (response: Response) => {
      await sleep(delayMs)
      sent.push(response)
    },
  }
}

describe('WorkingBatcher', () => {
  it('sends a batch per maxLines lines when the queue keeps up, in order', async () => {
    const r = recorder(0)
    const batcher = new WorkingBatcher(base, 'plain', 256 * 1024, 3, 60_000, r.send, silentLogger)
    for (let i = 1; i <= 8; i++) {
      batcher.push(`l${i}`)
      await sleep(5)
    }
    await batcher.close()
    expect(r.sent.map((m) => m.message)).toEqual(['l1\nl2\nl3', 'l4\nl5\nl6', 'l7\nl8'])
  })

  it('sends what accumulated after intervalMs even below maxLines', async () => {
    const r = recorder(0)
    const batcher = new WorkingBatcher(base, 'plain', 256 * 1024, 100, 50, r.send, silentLogger)
    batcher.push('early')
    await sleep(200)
    expect(r.sent.map((m) => m.message)).toEqual(['early'])
    batcher.push('late')
    await batcher.close()
    expect(r.sent.map((m) => m.message)).toEqual(['early', 'late'])
  })

  it('merges a backlog into full-size messages when the queue is slow, losing no line', async () => {
    const r = recorder(20)
    const batcher = new WorkingBatcher(base, 'base64', 2048, 5, 60_000, r.send, silentLogger)
    const lines = Array.from({length: 2000}, (_, i) => `output ${i}`)
    for (const line of lines) batcher.push(line)
    await batcher.close()
    expect(r.sent.flatMap((m) => m.message.split('\n'))).toEqual(lines)
    expect(r.sent.length).toBeLessThan(lines.length / 5 / 2) // far fewer than one message per 5 lines
    for (const m of r.sent) expect(encodedSize(m, 'base64')).toBeLessThanOrEqual(2048)
  })

  it('skips the oldest waiting lines past the backlog limit, and says so', async () => {
    const r = recorder(30)
    const batcher = new WorkingBatcher(base, 'plain', 64 * 1024, 10, 60_000, r.send, silentLogger, 1000)
    const lines = Array.from({length: 3000}, (_, i) => `line-${String(i).padStart(5, '0')}`)
    for (const line of lines) batcher.push(line)
    await batcher.close()
    const got = r.sent.flatMap((m) => m.message.split('\n'))
    const marker = got.find((line) => line.includes('output line(s) skipped'))
    expect(marker).toBeDefined()
    const kept = got.filter((line) => line.startsWith('line-'))
    expect(kept.at(-1)).toBe('line-02999') // the newest lines survive
    expect(kept).toEqual([...kept].sort()) // still in order
    const skipped = Number(/\[… (\d+) output/.exec(marker!)?.[1])
    expect(kept.length + skipped).toBe(lines.length)
  })

  it('goes on after a failed send', async () => {
    const sent: string[] = []
    let calls = 0
    const batcher = new WorkingBatcher(
      base,
      'plain',
      256 * 1024,
      1,
      60_000,
      async (response) => {
        if (++calls === 1) throw new Error('blip')
        sent.push(response.message)
      },
      silentLogger,
    )
    batcher.push('a')
    batcher.push('b')
    await batcher.close()
    expect(sent).toEqual(['b'])
  })
})
