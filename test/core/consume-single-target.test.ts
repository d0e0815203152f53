import {describe, expect, it} from 'vitest'

import {consume} from '../../src/core/consume.js'
import {TargetGates, delivered, stop, targetDown} from '../../src/core/delivery.js'
import {TargetUnhealthyError} from '../../src/core/errors.js'
import {sleep} from '../../src/core/loop.js'
import {MemoryQueue} from '../helpers/memory-queue.js'

/** A memory queue that counts every receive toward the redrive policy, as SQS and the facade do. */
function sqsLike(): MemoryQueue {
  return Object.defineProperty(new MemoryQueue(), 'kind', {value: 'sqs'})
}

async function fill(queue: MemoryQueue, n: number) {
  await queue.sendBatch(Array.from({length: n}, (_, i) => ({body: `m${i}`})))
}

const receives = (queue: MemoryQueue) => queue.calls.filter((call) => call.op === 'receive').length
/** A one-shot run's gates with a short back-off (20–100 ms). */
const quickGates = () => new TargetGates({once: true, backoff: {baseMs: 20, maxMs: 100}, giveUpAfterMs: 60_000})

describe('consume with a probe (a single-target consumer checks its target before receiving)', () => {
  it('on SQS, asks the probe before the first receive and receives nothing until the target is well', async () => {
    const queue = sqsLike()
    await fill(queue, 3)
    const answers = [targetDown('github', 'github answered 503'), targetDown('github', 'github answered 503'), delivered()]
    const receivesAtProbe: number[] = []
    const receiveCounts: number[] = []
    const handler = async (message: {receiveCount: number}) => {
      receiveCounts.push(message.receiveCount)
      return delivered()
    }
    const result = await consume(queue, handler, {
      once: true,
      target: 'github',
      gates: quickGates(),
      probe: async () => {
        receivesAtProbe.push(receives(queue))
        return answers.shift() ?? delivered()
      },
    })
    expect(receivesAtProbe).toEqual([0, 0, 0])
    expect(result).toMatchObject({stoppedBy: 'empty', delivered: 3, released: 0, exitCode: 0})
    // Each message was received once: the probes spent no receive.
    expect(receiveCounts).toEqual([1, 1, 1])
    expect(await queue.stats()).toMatchObject({visible: 0, inFlight: 0, dead: 0})
  })

  it('on SQS, a one-shot run whose probe keeps failing receives nothing, gives the target up and exits 3', async () => {
    const queue = sqsLike()
    await fill(queue, 4)
    let probes = 0
    const result = await consume(queue, async () => delivered(), {
      once: true,
      target: 'github',
      giveUpAfterMs: 300,
      probe: async () => {
        probes++
        return targetDown('github', 'github: connection refused')
      },
    })
    expect(receives(queue)).toBe(0)
    expect(probes).toBeGreaterThanOrEqual(1)
    expect(result).toMatchObject({stoppedBy: 'target-down', received: 0, remaining: 4, exitCode: 3})
    expect(result.problems).toEqual(['4 remaining (github is down: github: connection refused)'])
  })

  it('a probe that throws counts as the target down, and a stop outcome stops the run with its code', async () => {
    const thrown = sqsLike()
    await fill(thrown, 1)
    const down = await consume(thrown, async () => delivered(), {
      once: true,
      target: 'github',
      giveUpAfterMs: 100,
      probe: () => Promise.reject(new Error('socket hang up')),
    })
    expect(down).toMatchObject({stoppedBy: 'target-down', received: 0, exitCode: 3})
    expect(down.targetsDown).toEqual([expect.objectContaining({target: 'github', reason: 'socket hang up'})])

    const stopped = sqsLike()
    await fill(stopped, 2)
    const result = await consume(stopped, async () => delivered(), {
      once: true,
      target: 'github',
      probe: async () => stop(new TargetUnhealthyError('GitHub rejected the token (401 Bad credentials)', 'set GITHUB_ACCESS_TOKEN')),
    })
    expect(receives(stopped)).toBe(0)
    expect(result).toMatchObject({stoppedBy: 'stop', received: 0, exitCode: 3})
    expect(result.problems[0]).toBe('GitHub rejected the token (401 Bad credentials) — set GITHUB_ACCESS_TOKEN')
  })

  it('on the embedded queue (a release costs nothing) the first receive comes first: an empty queue needs no target', async () => {
    const empty = new MemoryQueue()
    let probes = 0
    const probe = async () => {
      probes++
      return targetDown('github', 'github: connection refused')
    }
    expect(await consume(empty, async () => delivered(), {once: true, target: 'github', probe})).toMatchObject({stoppedBy: 'empty', exitCode: 0})
    expect(probes).toBe(0)
    // on SQS, nothing remaining: the target's health did not matter
    const sqs = sqsLike()
    const result = await consume(sqs, async () => delivered(), {once: true, target: 'github', probe, giveUpAfterMs: 100})
    expect(probes).toBeGreaterThan(0)
    expect(result).toMatchObject({stoppedBy: 'target-down', remaining: 0, exitCode: 0, problems: []})
  })

  it('when a handler finds the target down, the probe (not a message) tests it before the next receive', async () => {
    const queue = sqsLike()
    await fill(queue, 1)
    const receiveCounts: number[] = []
    let probes = 0
    const result = await consume(
      queue,
      async (message) => {
        receiveCounts.push(message.receiveCount)
        return receiveCounts.length === 1 ? targetDown('github', 'github answered 502') : delivered()
      },
      {
        once: true,
        target: 'github',
        gates: quickGates(),
        // well at the start, down for the next two probes, then well
        probe: async () => (++probes === 1 || probes >= 4 ? delivered() : targetDown('github', 'github answered 502')),
      },
    )
    expect(result).toMatchObject({stoppedBy: 'empty', delivered: 1, released: 1, exitCode: 0})
    expect(probes).toBe(4)
    // Received twice (the failed attempt and the delivery): the probes in between spent no receive.
    expect(receiveCounts).toEqual([1, 2])
  })
})

describe('a probe that passes while the real requests fail (a health endpoint up, the API not)', () => {
  it('lets one message at a time test the target, and a one-shot run still gives it up', async () => {
    const queue = sqsLike()
    await fill(queue, 5)
    let probes = 0
    let attempts = 0
    const result = await consume(
      queue,
      async () => {
        attempts++
        return targetDown('github', 'github: timed out')
      },
      {
        once: true,
        target: 'github',
        concurrency: 4,
        gates: new TargetGates({once: true, backoff: {baseMs: 20, maxMs: 100}, giveUpAfterMs: 400}),
        probe: async () => {
          probes++
          return delivered()
        },
      },
    )
    expect(result).toMatchObject({stoppedBy: 'target-down', delivered: 0, dead: 0, exitCode: 3})
    expect(result.problems).toEqual(['5 remaining (github is down: github: timed out)'])
    // the first batch, then one message per gate opening, each after a passing probe
    expect(attempts).toBeLessThanOrEqual(5 + probes)
    expect(probes).toBeGreaterThanOrEqual(2)
  })
})

describe('a single-target consumer whose messages also wait for targets of their own', () => {
  it('names the target they wait for, not its one target, when a one-shot run ends on them', async () => {
    const queue = new MemoryQueue()
    await queue.sendBatch([{body: 'locked:1'}, {body: 'locked:2'}, {body: 'acme:3'}])
    const result = await consume(
      queue,
      async (message, {gates}) => {
        const org = `github:${message.body.split(':')[0] ?? ''}`
        if (!gates.isOpen(org)) return gates.heldBack(org)
        return org === 'github:locked' ? targetDown(org, 'github:locked answered 403', {credentials: true}) : delivered()
      },
      {once: true, target: 'github', concurrency: 1},
    )
    expect(result).toMatchObject({stoppedBy: 'target-down', delivered: 1, exitCode: 3})
    expect(result.problems).toEqual(['2 remaining (github:locked is down: github:locked answered 403)'])
  })
})

describe('a single-target consumer whose target goes down during a long poll', () => {
  it('cuts the poll short and takes nothing it could not attempt until the gate opens', async () => {
    const queue = new MemoryQueue()
    await queue.send({body: 'first'})
    const handled: string[] = []
    const controller = new AbortController()
    const run = consume(
      queue,
      async (message) => {
        handled.push(message.body)
        await sleep(100)
        return targetDown('github', 'GitHub rate limit (429)', {retryAfterSeconds: 60})
      },
      {target: 'github', concurrency: 2, waitSeconds: 20, signal: controller.signal, stopDeadlineMs: 100},
    )
    // The second slot long-polls while the first message is handled; the target goes down at ~100 ms.
    await sleep(300)
    await queue.send({body: 'second'})
    await sleep(300)
    controller.abort()
    const result = await run
    expect(handled).toEqual(['first'])
    expect(result).toMatchObject({received: 1, released: 1, stoppedBy: 'signal'})
    expect(await queue.stats()).toMatchObject({visible: 1, delayed: 1, inFlight: 0})
  })
})
