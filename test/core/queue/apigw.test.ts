import {randomUUID} from 'node:crypto'
import {existsSync} from 'node:fs'
import type {ServerResponse} from 'node:http'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {UsageError} from '../../../src/core/errors.js'
import {facadeBase} from '../../../src/core/queue/apigw.js'
import {QueueBatchError, StaleReceiptError} from '../../../src/core/queue/errors.js'
import {openQueue} from '../../../src/core/queue/index.js'
import type {SendInput} from '../../../src/core/queue/types.js'
import {type RecordedRequest, type StandIn, standIn} from '../../helpers/http.js'
import {tempDir} from '../../helpers/tmp.js'
import {queueContract} from './contract.js'
import {type SimQueue, SqsSimulator} from './sqs-sim.js'

const KEY = 'test-api-key-0123456789'
const sim = new SqsSimulator('us-east-1')
const dir = tempDir('cistern-facade-')

/**
 * Answers like the status-queue API Gateway: the SQS behind it is the in-memory simulator. GET
 * /message receives up to 10 with the facade's own visibility timeout; every SQS outcome is a 200
 * (an error travels in the body); a bad key is 403 {"message":"Forbidden"}; an unknown resource is
 * 403 {"message":"Missing Authentication Token"}.
 */
function facade(queue: () => SimQueue, visibility: () => number) {
  const answer = (req: RecordedRequest): [number, unknown] => {
    const url = new URL(req.url, 'http://facade')
    if (!url.pathname.startsWith('/prod/message')) return [403, {message: 'Missing Authentication Token'}]
    if (req.headers['x-api-key'] !== KEY) return [403, {message: 'Forbidden'}]
    if (req.method === 'GET') {
      const messages = sim.receiveNow(queue(), 10, visibility())
      return [200, {ReceiveMessageResponse: {ReceiveMessageResult: {messages: messages.length ? messages : null}, ResponseMetadata: {RequestId: randomUUID()}}}]
    }
    if (req.method === 'DELETE') {
      try {
        sim.deleteOne(queue(), url.searchParams.get('receiptHandle') ?? '')
        return [200, {DeleteMessageResponse: {ResponseMetadata: {RequestId: randomUUID()}}}]
      } catch (error) {
        return [200, {Error: {Code: (error as Error).name, Message: (error as Error).message, Type: 'Sender'}, RequestId: randomUUID()}]
      }
    }
    return [403, {message: 'Missing Authentication Token'}]
  }
  return (req: RecordedRequest, res: ServerResponse) => {
    const [status, body] = answer(req)
    res.writeHead(status, {'content-type': 'application/json', 'x-amzn-requestid': randomUUID()})
    res.end(JSON.stringify(body))
  }
}

let server: StandIn
let current: SimQueue
let visibility = 30
let counter = 0
beforeAll(async () => {
  server = await standIn(facade(() => current, () => visibility))
})
afterAll(async () => {
  await server.close()
  sim.stop()
})

function seed(queue: SimQueue) {
  return async (messages: SendInput[]) => {
    for (const m of messages) {
      sim.put(queue, {
        MessageBody: m.body,
        DelaySeconds: m.delaySeconds,
        MessageAttributes: m.attributes
          ? Object.fromEntries(Object.entries(m.attributes).map(([k, v]) => [k, {DataType: 'String', StringValue: v}]))
          : undefined,
      })
    }
  }
}

queueContract(
  'apigw facade (loopback API Gateway over in-memory SQS)',
  async (options) => {
    current = sim.createQueue(`facade-${++counter}`)
    visibility = options.visibilityTimeout ?? 30
    const queue = await openQueue(`apigw+${server.url}/prod/`, {apiKey: KEY, deadLetterUrl: `sqlite:${dir}/dead.db#dead-${counter}`, log: options.log})
    return {queue, seed: seed(current)}
  },
  {
    fifo: false,
    delay: true,
    visibility: false,
    staleReceiptErrors: false,
    maxReceiveCount: false,
    dedupInQueue: false,
    stats: false,
    purge: false,
    redrive: false,
    deadLetters: 'moved',
  },
)

describe('apigw facade specifics', () => {
  it('GETs /message and DELETEs /message?receiptHandle= with x-api-key', async () => {
    current = sim.createQueue(`facade-${++counter}`)
    visibility = 30
    await seed(current)([{body: '{"build":{"number":1}}'}])
    const queue = await openQueue(`apigw+${server.url}/prod`, {apiKey: KEY})
    expect(queue.url).toBe(`apigw+${server.url}/prod/`)
    server.requests.length = 0
    const [m] = await queue.receive()
    expect(m!.body).toBe('{"build":{"number":1}}')
    expect(m!.receiveCount).toBe(1)
    await queue.delete(m!.receiptHandle)
    expect(server.requests.map((r) => [r.method, r.url.split('?')[0], r.headers['x-api-key']])).toEqual([
      ['GET', '/prod/message', KEY],
      ['DELETE', '/prod/message', KEY],
    ])
    expect(new URL(server.requests[1]!.url, 'http://x').searchParams.get('receiptHandle')).toBe(m!.receiptHandle)
    await queue.close()
  })

  it('takes the key from API_KEY, and a bad key is one usage line', async () => {
    process.env.API_KEY = 'wrong-key-value'
    try {
      const queue = await openQueue(`apigw+${server.url}/prod/`)
      const error = await queue.receive().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(UsageError)
      expect((error as UsageError).oneLine).toMatch(/refused the API key \(403\) — check API_KEY/)
      expect((error as UsageError).oneLine).not.toContain('wrong-key-value')
      await queue.close()
    } finally {
      delete process.env.API_KEY
    }
    await expect(openQueue(`apigw+${server.url}/prod/`)).rejects.toThrow(/no API key/)
  })

  it('a wrong stage is a 403 Missing Authentication Token, reported as such', async () => {
    const queue = await openQueue(`apigw+${server.url}/staging/`, {apiKey: KEY})
    await expect(queue.receive()).rejects.toThrow(/Missing Authentication Token/)
    await queue.close()
  })

  it('deleteBatch sends bounded parallel DELETEs and reports the invalid handle that came back in a 200', async () => {
    current = sim.createQueue(`facade-${++counter}`)
    await seed(current)(Array.from({length: 8}, (_, i) => ({body: `m${i}`})))
    const queue = await openQueue(`apigw+${server.url}/prod/`, {apiKey: KEY})
    const got = await queue.receive()
    expect(got).toHaveLength(8)
    await expect(queue.delete('garbage')).rejects.toBeInstanceOf(StaleReceiptError)
    const error = await queue.deleteBatch([...got.map((m) => m.receiptHandle), 'garbage']).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(QueueBatchError)
    expect((error as QueueBatchError).failures.map((f) => [f.index, f.code])).toEqual([[8, 'ReceiptHandleIsInvalid']])
    expect(current.messages).toHaveLength(0)
    await queue.close()
  })

  it('cannot send, peek, purge or redrive; changeVisibility and release are no-ops', async () => {
    current = sim.createQueue(`facade-${++counter}`)
    await seed(current)([{body: 'x'}])
    const queue = await openQueue(`apigw+${server.url}/prod/`, {apiKey: KEY, deadLetterUrl: `sqlite:${dir}/nothing.db#none`})
    expect(queue.capabilities.send).toBe(false)
    await expect(queue.send({body: 'x'})).rejects.toThrow(/cannot send/)
    await expect(queue.peek()).rejects.toBeInstanceOf(UsageError)
    await expect(queue.purge()).rejects.toBeInstanceOf(UsageError)
    await expect(queue.redrive()).rejects.toBeInstanceOf(UsageError)
    // Nothing dead yet: the store is not even created by looking.
    expect(await queue.stats()).toEqual({visible: -1, inFlight: -1, delayed: -1, dead: 0})
    expect(await queue.peekDead!()).toEqual([])
    expect(existsSync(join(dir, 'nothing.db'))).toBe(false)
    const [m] = await queue.receive()
    server.requests.length = 0
    await queue.changeVisibility(m!.receiptHandle, 0)
    await queue.release(m!.receiptHandle, 5)
    expect(server.requests).toHaveLength(0)
    expect(await queue.maxAttempts!()).toBeUndefined()
    await queue.close()
  })

  // Issue 11 item 5: a poison message was logged "to=redrive-policy" and never deleted, holding its
  // FIFO group for up to maxReceiveCount visibility timeouts.
  it('deadLetter keeps the whole message in the embedded store, then DELETEs it from the facade; peek --dead and stats show it', async () => {
    current = sim.createQueue(`facade-${++counter}`)
    await seed(current)([{body: '{"build":{"number":7}}', attributes: {source: 'eventbridge'}}, {body: '{"build":{"number":8}}'}])
    const queue = await openQueue(`apigw+${server.url}/prod/`, {apiKey: KEY})
    // The default store: the data dir's cistern.db, a queue named after the facade.
    expect((queue as unknown as {deadLetterUrl: string}).deadLetterUrl).toMatch(
      new RegExp(`^sqlite:${process.env.CISTERN_DATA_DIR}/cistern\\.db#apigw-dead\\.127\\.0\\.0\\.1-${server.port}-prod$`),
    )
    const [poison, next] = await queue.receive()
    server.requests.length = 0
    expect(await queue.deadLetter(poison!, 'build.commit is HEAD, not a 40-hex SHA')).toBe('dead-letter-queue')
    expect(server.requests.map((r) => [r.method, new URL(r.url, 'http://x').searchParams.get('receiptHandle')])).toEqual([['DELETE', poison!.receiptHandle]])
    expect(current.messages.map((m) => m.Body)).toEqual(['{"build":{"number":8}}'])
    await queue.delete(next!.receiptHandle)
    expect(await queue.stats()).toEqual({visible: -1, inFlight: -1, delayed: -1, dead: 1})
    await queue.close()
    // Another process (the operator's peek) sees it, with the reason.
    const operator = await openQueue(`apigw+${server.url}/prod/`, {apiKey: KEY})
    const [dead, ...rest] = await operator.peekDead!(10)
    expect(rest).toEqual([])
    expect(dead).toMatchObject({id: poison!.id, body: '{"build":{"number":7}}', attributes: {source: 'eventbridge', 'cistern.deadReason': 'build.commit is HEAD, not a 40-hex SHA'}})
    const error = await operator.redrive().catch((e: unknown) => e)
    expect((error as UsageError).oneLine).toMatch(/cannot send, so its dead letters cannot go back through it .* send their bodies to the SQS queue behind the facade/)
    await operator.close()
  })

  // SQS (so the facade) answers a DELETE with an old receipt as a success and deletes nothing.
  it('a message dead-lettered again after its lease lapsed is kept once', async () => {
    current = sim.createQueue(`facade-${++counter}`)
    visibility = 1
    await seed(current)([{body: 'slow poison'}])
    const queue = await openQueue(`apigw+${server.url}/prod/`, {apiKey: KEY, deadLetterUrl: `sqlite:${dir}/lapsed.db#dead`})
    const [first] = await queue.receive()
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const [again] = await queue.receive()
    expect(again!.id).toBe(first!.id)
    expect(await queue.deadLetter(first!, 'why')).toBe('dead-letter-queue') // the old receipt deletes nothing
    expect(current.messages).toHaveLength(1)
    expect(await queue.deadLetter(again!, 'why')).toBe('dead-letter-queue')
    expect(current.messages).toHaveLength(0)
    expect((await queue.peekDead!()).map((m) => m.id)).toEqual([first!.id])
    visibility = 30
    await queue.close()
  })

  it('a non-JSON or unexpected answer is an error, not an empty queue', async () => {
    const odd = await standIn((_req, res) => {
      res.writeHead(200, {'content-type': 'text/html'})
      res.end('<html>maintenance</html>')
    })
    const queue = await openQueue(`apigw+${odd.url}/prod/`, {apiKey: KEY})
    await expect(queue.receive()).rejects.toThrow(/not JSON/)
    odd.respond((_req, res) => {
      res.end(JSON.stringify({something: 'else'}))
    })
    await expect(queue.receive()).rejects.toThrow(/without ReceiveMessageResponse/)
    odd.respond((_req, res) => {
      res.writeHead(502)
      res.end('bad gateway')
    })
    await expect(queue.receive()).rejects.toThrow(/HTTP 502/)
    await queue.close()
    await odd.close()
  })

  it('rejects URLs with credentials or a query', () => {
    expect(() => facadeBase('apigw+https://user:pw@abc.execute-api.us-east-1.amazonaws.com/prod/')).toThrow(UsageError)
    expect(facadeBase('apigw+https://abc.execute-api.us-east-1.amazonaws.com/prod/')).toBe('https://abc.execute-api.us-east-1.amazonaws.com/prod')
  })
})
