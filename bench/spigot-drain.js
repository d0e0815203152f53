// spigot drain: (1) replay rate from the embedded queue into a loopback sink, as a ratio of the raw
// keep-alive POST rate to the same sink at the same concurrency in the same run (target ≥ 0.5);
// (2) SQS requests per drained message, counted at the client against an in-process fake SQS
// (aws-sdk-client-mock), target ≤ 0.21.
// npm run bench -- spigot-drain [messages=2000] [concurrency=4] [db dir=/dev/shm]
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs'
import {mockClient} from 'aws-sdk-client-mock'
import {createHash, randomUUID} from 'node:crypto'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {openQueue} from '../dist/core/queue/index.js'
import {drain} from '../dist/spigot/drain.js'
import {closeJenkinsAgents, deliver} from '../dist/spigot/jenkins.js'
import {fmt, rawPostRate, ratio, sink, table} from './lib.js'

const ROUTES = {
  push: {path: 'github-webhook/', targets: ['default']},
  pull_request: {path: 'ghprbhook/', targets: ['default']},
}

/** A push webhook of a realistic size (~7 KB), as `spigot serve` queues it. */
function webhookMessage(i, rawBody) {
  const body = JSON.parse(rawBody.toString())
  return {
    spigot_state: 'OFF',
    from_queue: 'false',
    body,
    headers: {
      'X-GitHub-Event': 'push',
      'X-GitHub-Delivery': randomUUID(),
      'X-Hub-Signature-256': 'sha256=' + createHash('sha256').update(rawBody).digest('hex'),
      'Content-Type': 'application/json',
      'User-Agent': 'GitHub-Hookshot/bench',
    },
    raw_body: rawBody.toString('base64'),
  }
}

function pushPayload(i) {
  const commits = Array.from({length: 8}, (_, c) => ({
    id: createHash('sha1').update(`${i}-${c}`).digest('hex'),
    message: `Commit ${c} of push ${i}: a line of text that looks like a commit message`,
    author: {name: 'Codertocat', email: 'octocat@github.com', username: 'Codertocat'},
    added: ['src/a.ts'],
    removed: [],
    modified: ['README.md', 'src/b.ts'],
  }))
  return Buffer.from(
    JSON.stringify({
      ref: 'refs/heads/main',
      before: '0'.repeat(40),
      after: commits.at(-1).id,
      repository: {id: 1, name: `repo-${i % 100}`, full_name: `acme/repo-${i % 100}`, owner: {login: 'acme'}, html_url: 'https://github.com/acme/repo'},
      pusher: {name: 'Codertocat', email: 'octocat@github.com'},
      sender: {login: 'Codertocat', id: 21031067, type: 'User'},
      commits,
      head_commit: commits.at(-1),
    }),
  )
}

async function embeddedDrainRate(messages, concurrency, target, where) {
  const dir = mkdtempSync(join(where, 'cistern-bench-drain-'))
  try {
    const queue = await openQueue(`sqlite:${join(dir, 'cistern.db')}#spigot`, {fifo: process.env.BENCH_FIFO !== '0', maxReceiveCount: 0})
    const batch = []
    for (let i = 0; i < messages; i++) {
      const raw = pushPayload(i)
      const message = webhookMessage(i, raw)
      batch.push({body: JSON.stringify(message), groupId: message.body.repository.full_name, deduplicationId: message.headers['X-GitHub-Delivery']})
      if (batch.length === 10) await queue.sendBatch(batch.splice(0))
    }
    if (batch.length) await queue.sendBatch(batch)
    const before = target.count
    const started = performance.now()
    const summary = await drain({queue, config: config(target.url), concurrency})
    const seconds = (performance.now() - started) / 1000
    await queue.close()
    if (summary.delivered !== messages || target.count - before < messages) {
      throw new Error(`drain delivered ${summary.delivered}/${messages}, sink saw ${target.count - before}`)
    }
    return {rate: messages / seconds, seconds}
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

/** The HTTP client alone: deliver() in a loop, same body, same concurrency, no queue (the drain's ceiling). */
async function deliverOnlyRate(messages, concurrency, target) {
  const raw = pushPayload(0)
  const jenkins = {name: 'default', url: target.url + '/'}
  const headers = {'X-GitHub-Event': 'push', 'Content-Type': 'application/json'}
  let sent = 0
  const started = performance.now()
  await Promise.all(
    Array.from({length: concurrency}, async () => {
      while (sent < messages) {
        sent++
        const result = await deliver(jenkins, 'github-webhook/', raw, headers, {timeoutMs: 3000})
        if (result.kind !== 'accepted') throw new Error(`deliver: ${result.kind}`)
      }
    }),
  )
  return messages / ((performance.now() - started) / 1000)
}

function config(url) {
  return {queue: 'bench', targets: [{name: 'default', url: url + '/'}], routes: ROUTES, unrouted: 'accept', forwardTimeoutMs: 3000}
}

/** A minimal standard SQS queue behind aws-sdk-client-mock: receive (≤10, long poll), delete(batch), attributes. */
function fakeSqs(url, bodies) {
  const mock = mockClient(SQSClient)
  const waiting = bodies.map((body, i) => ({id: `m-${i}`, body, visibleAt: 0, receipt: undefined, receives: 0}))
  const inFlight = new Map()
  const counts = {}
  const count = (name) => (counts[name] = (counts[name] ?? 0) + 1)
  mock.on(ReceiveMessageCommand).callsFake(async (input) => {
    count('ReceiveMessage')
    const now = Date.now()
    const out = []
    for (const message of waiting) {
      if (out.length >= (input.MaxNumberOfMessages ?? 1)) break
      if (message.visibleAt > now) continue
      message.receipt = randomUUID()
      message.receives++
      message.visibleAt = now + (input.VisibilityTimeout ?? 30) * 1000
      inFlight.set(message.receipt, message)
      out.push({
        MessageId: message.id,
        ReceiptHandle: message.receipt,
        Body: message.body,
        MD5OfBody: createHash('md5').update(message.body).digest('hex'),
        Attributes: {ApproximateReceiveCount: String(message.receives), SentTimestamp: String(now)},
      })
    }
    return {Messages: out.length ? out : undefined}
  })
  const remove = (handle) => {
    const message = inFlight.get(handle)
    if (!message) return false
    inFlight.delete(handle)
    waiting.splice(waiting.indexOf(message), 1)
    return true
  }
  mock.on(DeleteMessageBatchCommand).callsFake(async (input) => {
    count('DeleteMessageBatch')
    const Successful = []
    const Failed = []
    for (const entry of input.Entries) {
      if (remove(entry.ReceiptHandle)) Successful.push({Id: entry.Id})
      else Failed.push({Id: entry.Id, Code: 'ReceiptHandleIsInvalid', SenderFault: true, Message: 'unknown receipt'})
    }
    return {Successful, Failed}
  })
  mock.on(DeleteMessageCommand).callsFake(async (input) => {
    count('DeleteMessage')
    remove(input.ReceiptHandle)
    return {}
  })
  mock.on(ChangeMessageVisibilityCommand).callsFake(async (input) => {
    count('ChangeMessageVisibility')
    const message = inFlight.get(input.ReceiptHandle)
    if (message) message.visibleAt = Date.now() + input.VisibilityTimeout * 1000
    return {}
  })
  mock.on(GetQueueAttributesCommand).callsFake(async () => {
    count('GetQueueAttributes')
    const now = Date.now()
    const visible = waiting.filter((m) => m.visibleAt <= now).length
    return {
      Attributes: {
        ApproximateNumberOfMessages: String(visible),
        ApproximateNumberOfMessagesNotVisible: String(waiting.length - visible),
        ApproximateNumberOfMessagesDelayed: '0',
        QueueArn: 'arn:aws:sqs:eu-west-1:123456789012:spigot',
      },
    }
  })
  return {mock, counts, url, remaining: () => waiting.length}
}

async function sqsRequestsPerMessage(messages, concurrency, target) {
  const url = 'https://sqs.eu-west-1.amazonaws.com/123456789012/spigot'
  const bodies = Array.from({length: messages}, (_, i) => JSON.stringify(webhookMessage(i, pushPayload(i))))
  const sqs = fakeSqs(url, bodies)
  try {
    const queue = await openQueue(url, {region: 'eu-west-1'})
    const summary = await drain({queue, config: config(target.url), concurrency})
    await queue.close()
    if (summary.delivered !== messages || sqs.remaining() !== 0) throw new Error(`SQS drain delivered ${summary.delivered}/${messages}, ${sqs.remaining()} left`)
    const total = sqs.mock.calls().length
    return {total, perMessage: total / messages, counts: sqs.counts}
  } finally {
    sqs.mock.restore()
  }
}

export default async function run(args = []) {
  const messages = Number(args[0] ?? 2000)
  const concurrency = Number(args[1] ?? 4)
  // Like the queue bench: the SQLite file in /dev/shm measures CPU cost (fsync is free there);
  // pass a disk directory as the third argument to see the fsync-bound figure.
  const where = args[2] ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir())
  process.env.AWS_ACCESS_KEY_ID ??= 'bench'
  process.env.AWS_SECRET_ACCESS_KEY ??= 'bench'
  const target = await sink()
  try {
    const body = pushPayload(0).toString()
    // Warm both paths, then measure: baseline, drain, baseline again (the mean is the baseline).
    await rawPostRate(target.url, {connections: concurrency, seconds: 1, body})
    await embeddedDrainRate(200, concurrency, target, where)
    const base1 = await rawPostRate(target.url, {connections: concurrency, seconds: 3, body})
    const embedded = await embeddedDrainRate(messages, concurrency, target, where)
    const clientOnly = await deliverOnlyRate(messages, concurrency, target)
    const base2 = await rawPostRate(target.url, {connections: concurrency, seconds: 3, body})
    const baseline = (base1 + base2) / 2
    const sqsAt10 = await sqsRequestsPerMessage(messages, 10, target)
    const sqsAtN = concurrency === 10 ? sqsAt10 : await sqsRequestsPerMessage(messages, concurrency, target)
    closeJenkinsAgents()

    table([
      {metric: `raw keep-alive POST rate, ${concurrency} connections (req/s)`, value: fmt(baseline, 0), target: ''},
      {metric: `drain rate, embedded queue (${where}) → sink, concurrency ${concurrency} (msg/s)`, value: fmt(embedded.rate, 0), target: ''},
      {metric: 'drain / raw POST ratio', value: fmt(ratio(embedded.rate, baseline), 2), target: '≥ 0.5'},
      {metric: `jenkins.deliver() alone, no queue, concurrency ${concurrency} (req/s)`, value: fmt(clientOnly, 0), target: ''},
      {metric: 'drain / deliver() alone', value: fmt(ratio(embedded.rate, clientOnly), 2), target: ''},
      {metric: 'SQS requests per drained message, concurrency 10', value: fmt(sqsAt10.perMessage, 3), target: '≤ 0.21'},
      {metric: `SQS requests per drained message, concurrency ${concurrency}`, value: fmt(sqsAtN.perMessage, 3), target: '≤ 0.21'},
    ])
    console.log(`SQS calls (concurrency 10, ${messages} messages): ${JSON.stringify(sqsAt10.counts)}`)
    if (concurrency !== 10) console.log(`SQS calls (concurrency ${concurrency}, ${messages} messages): ${JSON.stringify(sqsAtN.counts)}`)
    return {
      baseline,
      drainRate: embedded.rate,
      ratio: ratio(embedded.rate, baseline),
      deliverOnlyRate: clientOnly,
      sqsRequestsPerMessage: sqsAt10.perMessage,
      sqsRequestsPerMessageAtConcurrency: sqsAtN.perMessage,
    }
  } finally {
    await target.close()
  }
}
