/**
 * A listener set-up in a temp dir: embedded request/response queues, a jobs.yml whose jobs are
 * small node scripts (print lines, fail, sleep while writing start/end markers, echo parameters),
 * and helpers to send requests and read the responses back.
 */
import {mkdirSync, readFileSync, writeFileSync, existsSync} from 'node:fs'
import {randomUUID} from 'node:crypto'
import {join} from 'node:path'
import {stringify} from 'yaml'

import {openQueue} from '../../src/core/queue/index.js'
import type {Queue} from '../../src/core/queue/types.js'
import {decodeResponse, type Response} from '../../src/sqs-listener/codec.js'

const JOB_SCRIPT = `
import {appendFileSync} from 'node:fs'
const [mode, ...params] = process.argv.slice(2)
const id = process.env.CISTERN_REQUEST_ID
const markers = process.env.MARKERS
const mark = (what) => markers && appendFileSync(markers, JSON.stringify({what, id, pid: process.pid, listener: process.ppid, at: Date.now()}) + '\\n')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
if (mode === 'lines') {
  const n = Number(params[0] ?? 5)
  for (let i = 1; i <= n; i++) console.log('line ' + i + ' of ' + n)
} else if (mode === 'fail') {
  console.log('about to fail')
  console.error('something broke')
  process.exit(Number(params[0] ?? 3))
} else if (mode === 'echo') {
  console.log('ARGV ' + JSON.stringify(params))
  console.log('ENV ' + process.env.CISTERN_PARAMS)
  for (let i = 1; i <= params.length; i++) console.log('PARAM_' + i + ' ' + JSON.stringify(process.env['CISTERN_PARAM_' + i]))
} else if (mode === 'slow' || mode === 'slowfirst') {
  // slowfirst: the first run of a request takes 30 s, a rerun 300 ms
  const rerun = mode === 'slowfirst' && markers && (await import('node:fs')).existsSync(markers) &&
    (await import('node:fs')).readFileSync(markers, 'utf8').includes('"id":' + JSON.stringify(id))
  mark('start')
  const ms = mode === 'slowfirst' ? (rerun ? 300 : 30000) : Number(params[0] ?? 1000)
  const until = Date.now() + ms
  let i = 0
  while (Date.now() < until) {
    console.log('tick ' + ++i)
    await sleep(Math.min(200, Math.max(0, until - Date.now())))
  }
  mark('end')
} else if (mode === 'work') {
  // As slow, but a stop (SIGTERM, e.g. the orphan sweep) is marked too: runs can be checked for overlap.
  process.on('SIGTERM', () => {
    mark('stopped')
    process.exit(143)
  })
  mark('start')
  await sleep(Number(params[0] ?? 1000))
  mark('end')
} else if (mode === 'hang') {
  mark('start')
  await sleep(3_600_000)
} else if (mode === 'crash') {
  console.log('about to crash')
  process.kill(process.pid, 'SIGKILL')
}
`

export interface Fixture {
  dir: string
  configPath: string
  markers: string
  requestUrl: string
  responseUrl: string
  dataDir: string
  env: Record<string, string>
  send(jobName: string, requestId: string | undefined, parameters?: unknown[], options?: {base64?: boolean; groupId?: string}): Promise<void>
  sendRaw(body: string): Promise<void>
  /** Every response now on the response queue (received and deleted), decoded, in queue order. */
  drainResponses(): Promise<Response[]>
  marks(): Array<{what: 'start' | 'end' | 'stopped'; id: string; pid: number; listener: number; at: number}>
  queues(): Promise<{requests: Queue; responses: Queue}>
}

export function makeFixture(dir: string, extraConfig: Record<string, unknown> = {}, name = 'listener'): Fixture {
  mkdirSync(dir, {recursive: true})
  const script = join(dir, 'job.mjs')
  writeFileSync(script, JOB_SCRIPT)
  const markers = join(dir, 'markers.jsonl')
  const jobs = {
    lines: {argv: [process.execPath, script, 'lines'], env: {MARKERS: markers}},
    fail: {argv: [process.execPath, script, 'fail'], env: {MARKERS: markers}},
    echo: {argv: [process.execPath, script, 'echo'], env: {MARKERS: markers}},
    slow: {argv: [process.execPath, script, 'slow'], env: {MARKERS: markers}},
    slowfirst: {argv: [process.execPath, script, 'slowfirst'], env: {MARKERS: markers}},
    work: {argv: [process.execPath, script, 'work'], env: {MARKERS: markers}},
    hang: {argv: [process.execPath, script, 'hang'], env: {MARKERS: markers}, timeout: 1},
    crash: {argv: [process.execPath, script, 'crash'], env: {MARKERS: markers}},
  }
  writeFileSync(join(dir, 'jobs.yml'), stringify(jobs))
  // Embedded queues unless the config names others (SQS on the emulator: the test process's
  // environment points the SDK at it).
  const db = join(dir, 'queues.db')
  const requestUrl = typeof extraConfig.job_queue_url === 'string' ? extraConfig.job_queue_url : `sqlite:${db}#requests`
  const responseUrl = typeof extraConfig.response_queue_url === 'string' ? extraConfig.response_queue_url : `sqlite:${db}#responses`
  const configPath = join(dir, `${name}.yml`)
  writeFileSync(
    configPath,
    stringify({
      job_queue_url: requestUrl,
      response_queue_url: responseUrl,
      jobs_config_path: 'jobs.yml',
      polling_interval: 1,
      visibility_timeout: 2,
      response_encoding: 'plain',
      working_interval: 0.3,
      ...extraConfig,
    }),
  )
  const dataDir = join(dir, 'data')
  mkdirSync(dataDir, {recursive: true})

  let opened: {requests: Queue; responses: Queue} | undefined
  const queues = async () => (opened ??= {requests: await openQueue(requestUrl), responses: await openQueue(responseUrl)})

  return {
    dir,
    configPath,
    markers,
    requestUrl,
    responseUrl,
    dataDir,
    env: {CISTERN_DATA_DIR: dataDir, CISTERN_LOG_FORMAT: 'json', CISTERN_LOG_LEVEL: 'debug'},
    async send(jobName, requestId, parameters, options = {}) {
      const body: Record<string, unknown> = {}
      if (requestId !== undefined) body.request_id = requestId
      if (parameters !== undefined) body.parameters = parameters
      const yaml = stringify({[jobName]: body})
      const {requests} = await queues()
      await requests.send({body: options.base64 ? Buffer.from(yaml).toString('base64') : yaml, ...fifo(requests, options.groupId)})
    },
    async sendRaw(body) {
      const {requests} = await queues()
      await requests.send({body, ...fifo(requests)})
    },
    async drainResponses() {
      const {responses} = await queues()
      const out: Response[] = []
      for (let i = 0; i < 1000; i++) {
        const batch = await responses.receive({maxMessages: 10, visibilityTimeout: 30})
        if (batch.length === 0) break
        for (const message of batch) {
          out.push(decodeResponse(message.body))
          await responses.delete(message.receiptHandle)
        }
      }
      return out
    },
    marks() {
      if (!existsSync(markers)) return []
      return readFileSync(markers, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line))
    },
    queues,
  }
}

/** On a FIFO queue: the group (default: the queue's), and an id of its own per message (no content-based deduplication). */
function fifo(queue: Queue, groupId?: string): {groupId?: string; deduplicationId?: string} {
  if (!queue.capabilities.fifo) return groupId ? {groupId} : {}
  return {...(groupId ? {groupId} : {}), deduplicationId: randomUUID()}
}

/** Poll `check` every 100 ms until it returns a truthy value (bounded). */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
