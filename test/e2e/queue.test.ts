// The built CLI (dist/) as a user runs it: refresh with `npx tsc -p tsconfig.build.json`.
import {execa} from 'execa'
import {existsSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {facadeDeadLetterUrl} from '../../src/core/queue/apigw.js'
import {openQueue} from '../../src/core/queue/index.js'
import {SqsSimulator, sqsEndpoint} from '../core/queue/sqs-sim.js'
import {facadeStandIn} from '../status-queue/facade-standin.js'
import {CLI, cistern} from '../helpers/cli.js'
import type {StandIn} from '../helpers/http.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-e2e-queue-')
const env = {CISTERN_DATA_DIR: dir, CISTERN_LOG_FORMAT: 'json'}
async function run(args: string[], input?: string): Promise<{exitCode: number; stdout: string; stderr: string}> {
  const result = await cistern(args, {env, input})
  return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '')}
}

// Each CLI run costs ~1 s (more on a loaded machine): generous per-test timeouts.
const slow = {timeout: 120_000}

describe('cistern queue on the embedded queue', slow, () => {
  const url = `sqlite:${join(dir, 'e2e', 'cistern.db')}#jobs`

  it('send → stats → receive → delete, end to end', async () => {
    const sent = await run(['queue', 'send', url, '--body', '{"job": "build", "n": 1}', '--json'])
    expect(sent.stderr).toBe('')
    expect(sent.exitCode).toBe(0)
    const {id} = JSON.parse(sent.stdout) as {id: string}
    expect(id).toMatch(/^[0-9a-f-]{36}$/)

    // Body from stdin, byte for byte (the trailing newline too).
    const piped = await run(['queue', 'send', url, '--attribute', 'source=stdin'], 'line one\nline two\n')
    expect(piped.exitCode).toBe(0)
    const file = join(dir, 'body.json')
    writeFileSync(file, '{"from":"file"}')
    expect((await run(['queue', 'send', url, '--file', file, '--delay', '600'])).exitCode).toBe(0)

    const stats = await run(['queue', 'stats', url, '--json'])
    expect(stats.exitCode).toBe(0)
    const counted = JSON.parse(stats.stdout) as Record<string, unknown>
    expect(counted).toMatchObject({visible: 2, inFlight: 0, delayed: 1, dead: 0})
    // The embedded queue also tells the oldest message's age and when the delayed one shows.
    expect(counted.oldestAgeSeconds).toBeLessThan(60)
    expect(Date.parse(String(counted.nextVisibleAt))).toBeGreaterThan(Date.now() + 500_000)

    const peeked = await run(['queue', 'peek', url, '--json'])
    expect((JSON.parse(peeked.stdout) as Array<{body: string}>).map((m) => m.body)).toEqual([
      '{"job": "build", "n": 1}',
      'line one\nline two\n',
      '{"from":"file"}',
    ])

    const received = await run(['queue', 'receive', url, '--max', '10', '--json'])
    expect(received.exitCode).toBe(0)
    const messages = JSON.parse(received.stdout) as Array<{id: string; body: string; receiveCount: number; attributes: Record<string, string>}>
    expect(messages.map((m) => [m.body, m.receiveCount])).toEqual([
      ['{"job": "build", "n": 1}', 1],
      ['line one\nline two\n', 1],
    ])
    expect(messages[0]!.id).toBe(id)
    expect(messages[1]!.attributes).toEqual({source: 'stdin'})
    // Not deleted: in flight now.
    expect(JSON.parse((await run(['queue', 'stats', url, '--json'])).stdout)).toMatchObject({visible: 0, inFlight: 2, delayed: 1, dead: 0})

    const human = await run(['queue', 'send', url, '--body', 'take me'])
    expect(human.stdout.trim()).toMatch(/^[0-9a-f-]{36}$/)
    const taken = await run(['queue', 'receive', url, '--delete'])
    expect(taken.exitCode).toBe(0)
    expect(taken.stdout).toContain('take me')
    expect(taken.stdout).toContain('deleted')
    expect(JSON.parse((await run(['queue', 'stats', url, '--json'])).stdout)).toMatchObject({visible: 0, inFlight: 2, delayed: 1, dead: 0})

    const empty = await run(['queue', 'receive', url, '--json'])
    expect(empty.exitCode).toBe(0)
    expect(JSON.parse(empty.stdout)).toEqual([])
  })

  it('purge needs --yes off a terminal; redrive and peek --dead work on an empty dead set', async () => {
    const refused = await run(['queue', 'purge', url], '')
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr.trim().split('\n')).toHaveLength(1)
    expect(refused.stderr).toContain('--yes')
    const purged = await run(['queue', 'purge', url, '--yes', '--json'])
    expect(purged.exitCode).toBe(0)
    expect(JSON.parse(purged.stdout)).toEqual({purged: 3})
    expect(JSON.parse((await run(['queue', 'redrive', url, '--json'])).stdout)).toEqual({redriven: 0})
    expect(JSON.parse((await run(['queue', 'peek', url, '--dead', '--json'])).stdout)).toEqual([])
  })

  it('an unknown URL scheme is one line and exit 2', async () => {
    const result = await run(['queue', 'stats', 'redis://localhost/jobs'])
    expect(result.exitCode).toBe(2)
    expect(result.stdout).toBe('')
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(result.stderr).toMatch(/unknown queue URL "redis:\/\/localhost\/jobs"/)
  })

  it('a missing queue file is exit 2 for stats/receive and creates nothing', async () => {
    const missing = join(dir, 'missing', 'q.db')
    for (const verb of ['stats', 'receive', 'peek', 'purge', 'redrive']) {
      const result = await run(['queue', verb, `sqlite:${missing}#jobs`, '--yes'].filter((a) => verb === 'purge' || a !== '--yes'))
      expect(result.exitCode, verb).toBe(2)
      expect(result.stderr.trim().split('\n'), verb).toHaveLength(1)
      expect(result.stderr).toContain('does not exist')
    }
    expect(existsSync(join(dir, 'missing'))).toBe(false)
  })

  it('a file that is not a database is exit 2, one line', async () => {
    const garbage = join(dir, 'garbage.db')
    writeFileSync(garbage, 'not a database '.repeat(100))
    const result = await run(['queue', 'send', `sqlite:${garbage}#jobs`, '--body', 'x'])
    expect(result.exitCode).toBe(2)
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(result.stderr).toContain('garbage.db')
  })

  it('no body at all, or an empty one, is exit 2', async () => {
    const result = await run(['queue', 'send', url], '')
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain('message body is empty')
    const both = await run(['queue', 'send', url, '--body', 'a', '--file', 'b'])
    expect(both.exitCode).toBe(2)
  })

  // Issue 11 item 9: this used to leave a standard queue that every spigot command then refused
  // with "drop fifo=true from the URL", a parameter the user never wrote.
  it('queue send to the spigot queue on a fresh data dir, then a spigot command opens it', async () => {
    const fresh = join(dir, 'fresh-data')
    const spigotQueue = `sqlite:${join(fresh, 'cistern.db')}#spigot`
    const sent = await cistern(['queue', 'send', spigotQueue, '--body', '{"queued":"by hand"}', '--group-id', 'acme/app'], {env: {...env, CISTERN_DATA_DIR: fresh}})
    expect(sent.exitCode).toBe(0)
    const status = await cistern(['spigot', 'status', '--json', '--backend', 'local'], {env: {...env, CISTERN_DATA_DIR: fresh}})
    expect(String(status.stderr)).not.toMatch(/fifo/)
    expect(status.exitCode).toBe(0)
    expect(String(status.stdout)).toMatch(/"visible":\s*1/)
  })

  it('--lines sends one message per line in batches', async () => {
    const lineUrl = `sqlite:${join(dir, 'lines.db')}#jobs`
    const input = Array.from({length: 25}, (_, i) => `line ${i}`).join('\n') + '\n\n'
    const sent = await run(['queue', 'send', lineUrl, '--lines', '--json'], input)
    expect(sent.exitCode).toBe(0)
    expect((JSON.parse(sent.stdout) as {count: number}).count).toBe(25)
    expect(JSON.parse((await run(['queue', 'stats', lineUrl, '--json'])).stdout)).toMatchObject({visible: 25})
  })
})

describe('cistern queue on SQS through AWS_ENDPOINT_URL (loopback SQS JSON endpoint)', slow, () => {
  const sim = new SqsSimulator('eu-west-1')
  let endpoint: StandIn
  beforeAll(async () => {
    sim.createQueue('e2e-jobs', {deadLetterName: 'e2e-jobs-dlq', maxReceiveCount: 3})
    endpoint = await sqsEndpoint(sim)
    return () => endpoint.close()
  })
  afterAll(() => sim.stop())
  const awsEnv = () => ({
    ...env,
    AWS_ENDPOINT_URL: endpoint.url,
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret-example-key',
    AWS_PROFILE: '',
    AWS_CONFIG_FILE: join(dir, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws-credentials'),
  })
  const aws = async (args: string[], input?: string) => {
    const result = await cistern(args, {env: awsEnv(), input})
    return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '')}
  }

  it('send → stats → receive --delete over the real SDK, with sqs://<name> resolved by GetQueueUrl', async () => {
    const sent = await aws(['queue', 'send', 'sqs://e2e-jobs', '--body', '{"x": 1}', '--attribute', 'kind=test', '--json'])
    expect(sent.stderr).toBe('')
    expect(sent.exitCode).toBe(0)
    const {id} = JSON.parse(sent.stdout) as {id: string}
    const stats = await aws(['queue', 'stats', 'sqs://e2e-jobs', '--json'])
    expect(JSON.parse(stats.stdout)).toEqual({visible: 1, inFlight: 0, delayed: 0, dead: 0})
    const got = await aws(['queue', 'receive', sim.urlOf('e2e-jobs'), '--max', '10', '--delete', '--json'])
    expect(got.exitCode).toBe(0)
    expect(JSON.parse(got.stdout)).toMatchObject([{id, body: '{"x": 1}', receiveCount: 1, attributes: {kind: 'test'}, deleted: true}])
    expect(sim.queues.get(sim.urlOf('e2e-jobs'))!.messages).toHaveLength(0)
    const ops = endpoint.requests.map((r) => String(r.headers['x-amz-target']))
    expect(ops).toContain('AmazonSQS.GetQueueUrl')
    expect(ops).toContain('AmazonSQS.DeleteMessageBatch')
    // Signed with the environment's credentials, never shown anywhere.
    expect(String(endpoint.requests[0]!.headers.authorization)).toContain('Credential=AKIDEXAMPLE/')
  })

  it('a queue that does not exist is exit 2, one line', async () => {
    const result = await aws(['queue', 'stats', 'sqs://no-such-queue'])
    expect(result.exitCode).toBe(2)
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(result.stderr).toMatch(/sqs:\/\/no-such-queue does not exist/)
  })

  it('missing AWS credentials are exit 2, one line with the fix', async () => {
    const bare = {...awsEnv(), AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_EC2_METADATA_DISABLED: 'true', AWS_CONTAINER_CREDENTIALS_FULL_URI: '', AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '', AWS_WEB_IDENTITY_TOKEN_FILE: ''}
    const result = await cistern(['queue', 'stats', sim.urlOf('e2e-jobs')], {env: bare})
    const stderr = String(result.stderr ?? '')
    expect(result.exitCode).toBe(2)
    expect(stderr.trim().split('\n')).toHaveLength(1)
    expect(stderr).toMatch(/no AWS credentials .* — set AWS_PROFILE/)
  })

  it('an unreachable endpoint is exit 3, one line naming it and the fix', async () => {
    const result = await cistern(['queue', 'stats', 'http://sqs.eu-west-1.localhost:9/123456789012/jobs'], {env: {...awsEnv(), AWS_ENDPOINT_URL: 'http://127.0.0.1:9'}})
    const stderr = String(result.stderr ?? '')
    expect(result.exitCode).toBe(3)
    expect(stderr.trim().split('\n')).toHaveLength(1)
    expect(stderr).toMatch(/cannot reach SQS at http:\/\/127\.0\.0\.1:9 .*ECONNREFUSED.* — check AWS_ENDPOINT_URL/)
  })

  it('peek on SQS is exit 2 with the alternative', async () => {
    const result = await aws(['queue', 'peek', 'sqs://e2e-jobs'])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toContain('queue receive')
  })
})

describe('cistern queue peek --dead on the API Gateway facade', slow, () => {
  it('shows what a worker set aside in the embedded dead-letter store', async () => {
    const facade = await facadeStandIn('e2e-api-key-123456')
    try {
      facade.send('{"build":{"number":12,"commit":"HEAD"}}')
      const url = `apigw+${facade.apiUrl}/`
      // The worker's side, in-process, with the data dir the CLI will use.
      const queue = await openQueue(url, {apiKey: 'e2e-api-key-123456', deadLetterUrl: facadeDeadLetterUrl(facade.apiUrl, {CISTERN_DATA_DIR: dir})})
      const [poison] = await queue.receive()
      await queue.deadLetter(poison!, 'build.commit is HEAD, not a 40-hex SHA')
      await queue.close()
      expect(facade.messages).toHaveLength(0)
      const peeked = await cistern(['queue', 'peek', url, '--dead', '--json'], {env: {...env, API_KEY: 'e2e-api-key-123456'}})
      expect(peeked.exitCode).toBe(0)
      expect(JSON.parse(String(peeked.stdout))).toMatchObject([
        {id: poison!.id, body: '{"build":{"number":12,"commit":"HEAD"}}', attributes: {'cistern.deadReason': 'build.commit is HEAD, not a 40-hex SHA'}},
      ])
      const stats = await cistern(['queue', 'stats', url, '--json'], {env: {...env, API_KEY: 'e2e-api-key-123456'}})
      expect(JSON.parse(String(stats.stdout))).toEqual({visible: -1, inFlight: -1, delayed: -1, dead: 1})
      const redrive = await cistern(['queue', 'redrive', url], {env: {...env, API_KEY: 'e2e-api-key-123456'}})
      expect(redrive.exitCode).toBe(2)
      expect(String(redrive.stderr)).toMatch(/cannot send, so its dead letters cannot go back through it/)
    } finally {
      await facade.close()
    }
  })
})

describe.runIf(existsSync('/usr/bin/script'))('queue purge on a terminal', slow, () => {
  // `script` gives the CLI a pseudo-terminal, as an operator's shell would.
  const onTty = (url: string, answer: string) =>
    execa('script', ['-qec', `node ${JSON.stringify(CLI)} queue purge '${url}'`, '/dev/null'], {
      input: answer,
      env: {...env, NO_COLOR: '1', CISTERN_LOG_FORMAT: 'human'},
      reject: false,
      timeout: 60_000,
    })

  it('asks, and purges only on yes', async () => {
    const url = `sqlite:${join(dir, 'tty.db')}#jobs`
    expect((await run(['queue', 'send', url, '--body', 'keep me?'])).exitCode).toBe(0)
    const no = await onTty(url, 'n\n')
    expect(no.stdout).toContain('Delete every message in')
    expect(no.stdout).toContain('not purged')
    expect(JSON.parse((await run(['queue', 'stats', url, '--json'])).stdout)).toMatchObject({visible: 1})
    const yes = await onTty(url, 'y\n')
    expect(yes.stdout).toContain('purged 1 message')
    expect(JSON.parse((await run(['queue', 'stats', url, '--json'])).stdout)).toMatchObject({visible: 0})
  })
})
