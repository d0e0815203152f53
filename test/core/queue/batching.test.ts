import {SendMessageBatchCommand} from '@aws-sdk/client-sqs'
import {existsSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {afterAll, describe, expect, it} from 'vitest'

import {UsageError} from '../../../src/core/errors.js'
import {GroupCommit, GroupCommitClosedError, coalescingSender} from '../../../src/core/queue/batching.js'
import {QueueBatchError} from '../../../src/core/queue/errors.js'
import {openQueue} from '../../../src/core/queue/index.js'
import {tempDir} from '../../helpers/tmp.js'
import {SqsSimulator} from './sqs-sim.js'

const dir = tempDir('cistern-batching-')
const tick = () => new Promise((resolve) => setImmediate(resolve))

/** A commit function that records its batches and can be held open or made to fail. */
function recorder<T>(options: {failIf?: (item: T) => boolean} = {}) {
  const batches: T[][] = []
  let release: (() => void) | undefined
  let held: Promise<void> | undefined
  return {
    batches,
    hold() {
      held = new Promise((resolve) => (release = resolve))
    },
    let() {
      const r = release
      held = undefined
      r?.()
    },
    commit: async (items: T[]) => {
      batches.push([...items])
      if (held) await held
      if (options.failIf && items.some(options.failIf)) throw new Error(`batch of ${items.length} refused`)
      return items.map((item) => `ok:${String(item)}`)
    },
  }
}

describe('GroupCommit', () => {
  it('calls of one turn join one commit; calls during a commit join the next; each gets its own result', async () => {
    const r = recorder<number>()
    const group = new GroupCommit(r.commit)
    r.hold()
    const first = [1, 2, 3].map((n) => group.submit(n))
    await tick()
    expect(r.batches).toEqual([[1, 2, 3]])
    // The first commit is still running: these wait, together.
    const second = [4, 5].map((n) => group.submit(n))
    await tick()
    const third = group.submit(6)
    await tick()
    expect(r.batches).toHaveLength(1)
    r.let()
    expect(await Promise.all([...first, ...second, third])).toEqual(['ok:1', 'ok:2', 'ok:3', 'ok:4', 'ok:5', 'ok:6'])
    expect(r.batches).toEqual([[1, 2, 3], [4, 5, 6]])
    expect(group.stats).toEqual({commits: 2, items: 6, largestBatch: 3, isolated: 0})
  })

  it('never commits more than maxBatch at once', async () => {
    const r = recorder<number>()
    const group = new GroupCommit(r.commit, {maxBatch: 4})
    await Promise.all(Array.from({length: 10}, (_, i) => group.submit(i)))
    expect(r.batches.map((b) => b.length)).toEqual([4, 4, 2])
  })

  it('runs up to `concurrency` commits at once', async () => {
    let running = 0
    let most = 0
    const group = new GroupCommit(
      async (items: number[]) => {
        most = Math.max(most, ++running)
        await new Promise((resolve) => setTimeout(resolve, 20))
        running--
        return items
      },
      {maxBatch: 2, concurrency: 3},
    )
    await Promise.all(Array.from({length: 12}, (_, i) => group.submit(i)))
    expect(most).toBe(3)
  })

  it('a batch that fails as a whole is committed again item by item: only the item at fault fails', async () => {
    const r = recorder<string>({failIf: (item) => item === 'bad'})
    const group = new GroupCommit(r.commit)
    const outcomes = await Promise.allSettled(['a', 'bad', 'c'].map((item) => group.submit(item)))
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((outcomes[1] as PromiseRejectedResult).reason.message).toBe('batch of 1 refused')
    expect(r.batches).toEqual([['a', 'bad', 'c'], ['a'], ['bad'], ['c']])
    expect(group.stats.isolated).toBe(1)
  })

  it('a batch that says which entries failed (QueueBatchError with results) settles each entry and repeats none', async () => {
    const batches: string[][] = []
    const group = new GroupCommit(async (items: string[]) => {
      batches.push(items)
      throw new QueueBatchError('send', [{index: 1, code: 'InvalidMessageContents', message: 'no'}], [{id: 'm-0'}, undefined, {id: 'm-2'}])
    })
    const outcomes = await Promise.allSettled(['a', 'b', 'c'].map((item) => group.submit(item)))
    expect(outcomes[0]).toEqual({status: 'fulfilled', value: {id: 'm-0'}})
    expect(outcomes[2]).toEqual({status: 'fulfilled', value: {id: 'm-2'}})
    const failed = (outcomes[1] as PromiseRejectedResult).reason as QueueBatchError
    expect(failed).toBeInstanceOf(QueueBatchError)
    expect(failed.failures).toEqual([{index: 0, code: 'InvalidMessageContents', message: 'no'}])
    expect(batches).toHaveLength(1)
  })

  it('close() waits for what was submitted, then refuses more', async () => {
    const r = recorder<number>()
    const group = new GroupCommit(r.commit)
    r.hold()
    const pending = group.submit(1)
    const closing = group.close()
    await tick()
    r.let()
    await closing
    expect(await pending).toBe('ok:1')
    await expect(group.submit(2)).rejects.toBeInstanceOf(GroupCommitClosedError)
  })

  it('lingerMs holds the next commit open a moment after a busy one', async () => {
    const r = recorder<number>()
    const group = new GroupCommit(r.commit, {lingerMs: 30})
    r.hold()
    const first = [group.submit(1), group.submit(2)]
    await tick()
    const later = [group.submit(3)]
    r.let()
    await Promise.all(first)
    // Within the linger: joins the commit that is about to start.
    later.push(group.submit(4))
    await Promise.all(later)
    expect(r.batches).toEqual([[1, 2], [3, 4]])
  })
})

describe('coalescingSender on the embedded queue', () => {
  it('200 concurrent sends: every one stored with its own id, in a handful of transactions', async () => {
    const queue = await openQueue(`sqlite:${join(dir, 'coalesce.db')}#jobs`)
    const sender = coalescingSender(queue)
    const results = await Promise.all(Array.from({length: 200}, (_, i) => sender.send({body: `m${i}`, groupId: `g${i % 7}`})))
    expect(new Set(results.map((r) => r.id)).size).toBe(200)
    expect(sender.stats.commits).toBeLessThanOrEqual(2)
    expect(sender.stats.items).toBe(200)
    expect((await queue.stats()).visible).toBe(200)
    await sender.close()
    await queue.close()
  })

  it('a message bad on its own fails alone; the rest of its batch is stored', async () => {
    const queue = await openQueue(`sqlite:${join(dir, 'bad-one.db')}#jobs`)
    const sender = coalescingSender(queue)
    const outcomes = await Promise.allSettled([
      sender.send({body: 'good 1'}),
      sender.send({body: ''}),
      sender.send({body: 'x'.repeat(queue.capabilities.maxBodyBytes + 1)}),
      sender.send({body: 'good 2'}),
    ])
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled'])
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(UsageError)
    expect(String((outcomes[2] as PromiseRejectedResult).reason.message)).toMatch(/over this queue's limit/)
    expect((await queue.peek(10)).map((m) => m.body)).toEqual(['good 1', 'good 2'])
    await sender.close()
    await queue.close()
  })

  it('deduplication inside one coalesced batch: the second send is the first one\'s duplicate', async () => {
    const queue = await openQueue(`sqlite:${join(dir, 'dedup.db')}#jobs`)
    const sender = coalescingSender(queue)
    const [a, b] = await Promise.all([sender.send({body: 'x', deduplicationId: 'd-1'}), sender.send({body: 'x again', deduplicationId: 'd-1'})])
    expect(b).toEqual({id: a.id, duplicate: true})
    await sender.close()
    await queue.close()
  })
})

describe('coalescingSender on SQS (exact requests)', () => {
  const sim = new SqsSimulator('eu-west-1')
  afterAll(() => sim.stop())

  it('concurrent sends become SendMessageBatch calls of up to 10; a sender fault fails only its entry, nothing is sent twice', async () => {
    sim.createQueue('coalesced')
    const queue = await openQueue(sim.urlOf('coalesced'))
    const sender = coalescingSender(queue)
    sim.mock.resetHistory()
    sim.injected.push({op: 'send', id: '3', senderFault: true, code: 'InvalidMessageContents'})
    const outcomes = await Promise.allSettled(Array.from({length: 25}, (_, i) => sender.send({body: `s${i}`})))
    const calls = sim.mock.commandCalls(SendMessageBatchCommand).map((c) => c.args[0].input.Entries!.length)
    expect(calls.every((n) => n <= 10)).toBe(true)
    expect(calls.reduce((a, b) => a + b, 0)).toBe(25)
    expect(outcomes.filter((o) => o.status === 'rejected')).toHaveLength(1)
    expect(sim.queues.get(sim.urlOf('coalesced'))!.messages).toHaveLength(24)
    await sender.close()
    await queue.close()
  })
})

// The writer thread runs the built module (a worker cannot load TypeScript sources).
const distBatching = fileURLToPath(new URL('../../../dist/core/queue/batching.js', import.meta.url))

describe.runIf(existsSync(distBatching))('coalescingSender with the writer thread (built code)', () => {
  it('commits in the thread, with per-call results and errors as without it', async () => {
    const built = (await import(pathToFileURL(distBatching).href)) as typeof import('../../../src/core/queue/batching.js')
    const {openQueue: openBuilt} = (await import(pathToFileURL(distBatching.replace('batching.js', 'index.js')).href)) as typeof import('../../../src/core/queue/index.js')
    const url = `sqlite:${join(dir, 'threaded.db')}#jobs.fifo`
    const queue = await openBuilt(url)
    const sender = built.coalescingSender(queue, {thread: true})
    const results = await Promise.all(Array.from({length: 100}, (_, i) => sender.send({body: `t${i}`, groupId: `g${i % 3}`})))
    expect(sender.threaded).toBe(true)
    expect(new Set(results.map((r) => r.id)).size).toBe(100)
    const bad = await sender.send({body: 'x'.repeat(queue.capabilities.maxBodyBytes + 1)}).catch((e: unknown) => e)
    expect((bad as Error).name).toBe('UsageError')
    expect((bad as Error).message).toMatch(/over this queue's limit/)
    await sender.close()
    expect((await queue.stats()).visible).toBe(100)
    // Groups kept through the thread: one head per group, the first of each.
    expect((await queue.receive({maxMessages: 10})).map((m) => m.body)).toEqual(['t0', 't1', 't2'])
    await queue.close()
  })
})
