import {execa} from 'execa'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'

import {CLI, cistern} from '../helpers/cli.js'
import {tempDir} from '../helpers/tmp.js'
import {makeFixture, waitFor, type Fixture} from '../sqs-listener/fixture.js'
import type {Response} from '../../src/sqs-listener/codec.js'

const root = tempDir('cistern-sqs-listen-')
let n = 0
const fixture = (extra: Record<string, unknown> = {}) => makeFixture(join(root, `case-${++n}`), extra)

/** Running (a zombie waiting for init to reap it has exited). */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return false
  }
}
const byRequest = (responses: Response[], id: string) => responses.filter((r) => r.request_id === id)
const children: Array<{kill: (signal?: NodeJS.Signals) => boolean}> = []
afterAll(() => {
  for (const child of children) child.kill('SIGKILL')
})

function listenInBackground(f: Fixture, args: string[] = [], configPath = f.configPath, env: Record<string, string> = {}) {
  const child = execa('node', [CLI, 'sqs-listen', '--config', configPath, ...args], {
    reject: false,
    env: {NO_COLOR: '1', ...f.env, ...env},
    timeout: 60_000,
  })
  children.push(child)
  return child
}

describe('cistern sqs-listen (built CLI, embedded queues)', () => {
  it('a job printing lines answers started, working (every line, in order), success', async () => {
    // a long working_interval: only the line count and the job's end cut batches here
    const f = fixture({working_lines: 7, working_interval: 60})
    await f.send('lines', 'req-lines', ['25'])
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})
    expect(run.exitCode, String(run.stderr)).toBe(0)
    const responses = await f.drainResponses()
    expect(responses.map((r) => r.result)).toEqual(['started', 'working', 'working', 'working', 'working', 'success'])
    expect(responses.every((r) => r.job_name === 'lines' && r.request_id === 'req-lines')).toBe(true)
    const lines = responses.filter((r) => r.result === 'working').flatMap((r) => r.message.split('\n'))
    expect(lines).toEqual(Array.from({length: 25}, (_, i) => `line ${i + 1} of 25`))
    // batches of at most working_lines lines
    expect(responses.filter((r) => r.result === 'working').map((r) => r.message.split('\n').length)).toEqual([7, 7, 7, 4])
    expect(responses.at(-1)?.message).toMatch(/^Job lines succeeded \(exit code 0\)/)
    const {requests} = await f.queues()
    expect((await requests.stats()).visible + (await requests.stats()).inFlight).toBe(0)
  })

  it('a failing job answers failure with its exit code and last lines; --once exits 1', async () => {
    const f = fixture()
    await f.send('fail', 'req-fail', ['7'])
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})
    expect(run.exitCode).toBe(1)
    const responses = await f.drainResponses()
    expect(responses[0]?.result).toBe('started')
    const final = responses.at(-1)!
    expect(final).toMatchObject({job_name: 'fail', request_id: 'req-fail', result: 'failure'})
    expect(final.message).toContain('exit code 7')
    expect(final.message).toContain('something broke')
    // the request is finished with (not retried)
    const {requests} = await f.queues()
    const stats = await requests.stats()
    expect(stats.visible + stats.inFlight + stats.dead).toBe(0)
  })

  it('parameters with spaces and shell metacharacters reach the job literally (argv and env), base64 requests too', async () => {
    const f = fixture()
    const pwned = join(f.dir, 'pwned')
    const params = ['two words', `$(touch ${pwned})`, `; touch ${pwned}`, '`id`', "it's \"quoted\"", '*', '$HOME', '0012', '1.0', 'yes', '']
    await f.send('echo', 'req-echo', params, {base64: true})
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})
    expect(run.exitCode, String(run.stderr)).toBe(0)
    const responses = await f.drainResponses()
    const lines = responses.filter((r) => r.result === 'working').flatMap((r) => r.message.split('\n'))
    expect(lines[0]).toBe(`ARGV ${JSON.stringify(params)}`)
    expect(JSON.parse((lines[1] ?? '').slice('ENV '.length))).toEqual(params)
    params.forEach((value, i) => expect(lines).toContain(`PARAM_${i + 1} ${JSON.stringify(value)}`))
    expect(existsSync(pwned)).toBe(false)
    expect(responses.at(-1)?.result).toBe('success')
  })

  it('answers every bad request with failure (unknown where unreadable), dead-letters it, and keeps going', async () => {
    const f = fixture()
    await f.sendRaw('lines: [unclosed')
    await f.sendRaw('- just\n- a list\n')
    await f.sendRaw('a plain scalar')
    await f.sendRaw('lines:\n  request_id: two-jobs\nfail:\n  request_id: two-jobs\n')
    await f.send('no_such_job', 'req-unknown', [])
    await f.send('lines', undefined, ['3'])
    await f.sendRaw('lines:\n  request_id: bad-params\n  parameters:\n    nested: map\n')
    await f.send('lines', 'req-good', ['2']) // the listener keeps going
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once', '--json'], {env: f.env})
    expect(run.exitCode).toBe(1)
    const summary = JSON.parse(String(run.stdout))
    expect(summary).toMatchObject({received: 8, badRequests: 7, succeeded: 1})
    const responses = await f.drainResponses()
    const failures = responses.filter((r) => r.result === 'failure')
    expect(failures).toHaveLength(7)
    expect(failures.filter((r) => r.job_name === 'unknown' && r.request_id === 'unknown')).toHaveLength(4)
    expect(failures.find((r) => r.request_id === 'req-unknown')).toMatchObject({job_name: 'no_such_job'})
    expect(failures.find((r) => r.request_id === 'req-unknown')?.message).toContain('no job named "no_such_job"')
    expect(failures.find((r) => r.job_name === 'lines' && r.request_id === 'unknown')?.message).toContain('no request_id')
    expect(failures.find((r) => r.request_id === 'bad-params')?.message).toContain('parameters')
    expect(failures.every((r) => r.message.startsWith('Invalid request: '))).toBe(true)
    expect(byRequest(responses, 'req-good').at(-1)?.result).toBe('success')
    const {requests} = await f.queues()
    const stats = await requests.stats()
    expect(stats.dead).toBe(7)
    expect(stats.visible + stats.inFlight).toBe(0)
  })

  it('a request_id already completed is answered again, not run again', async () => {
    const f = fixture()
    await f.send('slow', 'req-once', ['100'])
    expect((await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})).exitCode).toBe(0)
    const first = await f.drainResponses()
    await f.send('slow', 'req-once', ['100'])
    const again = await cistern(['sqs-listen', '--config', f.configPath, '--once', '--json'], {env: f.env})
    expect(JSON.parse(String(again.stdout))).toMatchObject({answeredAgain: 1, succeeded: 0})
    const second = await f.drainResponses()
    expect(second).toEqual([first.at(-1)])
    expect(f.marks().filter((m) => m.what === 'start')).toHaveLength(1)
  })

  it('kill -9 mid-job: the next listener stops the orphaned job, then runs the request again', async () => {
    const f = fixture({visibility_timeout: 1})
    await f.send('slowfirst', 'req-crash')
    const first = listenInBackground(f)
    await waitFor(() => f.marks().some((m) => m.what === 'start'), 15_000, 'the first run to start')
    first.kill('SIGKILL')
    await first
    const orphan = f.marks()[0]?.pid ?? -1
    expect(alive(orphan)).toBe(true) // a SIGKILLed listener cannot take its job down with it
    // --once may find the request still hidden for up to its visibility timeout: run until answered.
    // Such a run says it is held by another consumer and exits 1 (issue 11: it used to exit 0).
    let responses: Response[] = []
    for (let i = 0; i < 10 && !responses.some((r) => r.result === 'success'); i++) {
      const next = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})
      if (next.exitCode !== 0) expect(String(next.stderr)).toMatch(/1 remaining \(held by another consumer/)
      expect([0, 1], String(next.stderr)).toContain(next.exitCode)
      responses = responses.concat(await f.drainResponses())
      if (!responses.some((r) => r.result === 'success')) await new Promise((resolve) => setTimeout(resolve, 300))
    }
    const runs = f.marks().filter((m) => m.id === 'req-crash')
    expect(runs.map((m) => m.what)).toEqual(['start', 'start', 'end']) // the orphan never finished
    expect(runs[0]?.pid).not.toBe(runs[1]?.pid)
    expect(alive(orphan)).toBe(false) // stopped before the rerun began
    expect(byRequest(responses, 'req-crash').at(-1)?.result).toBe('success')
    const {requests} = await f.queues()
    const stats = await requests.stats()
    expect(stats.visible + stats.inFlight + stats.dead).toBe(0)
  })

  it('SIGTERM mid-job: the job gets stop_timeout, then a failure "listener stopped" and the request is released', async () => {
    const f = fixture({stop_timeout: 1, visibility_timeout: 30})
    await f.send('slow', 'req-term', ['20000'])
    const child = listenInBackground(f)
    await waitFor(() => f.marks().some((m) => m.what === 'start'), 15_000, 'the job to start')
    child.kill('SIGTERM')
    const result = await child
    expect(result.exitCode, result.stderr).toBe(0)
    const responses = byRequest(await f.drainResponses(), 'req-term')
    expect(responses[0]?.result).toBe('started')
    expect(responses.at(-1)?.result).toBe('failure')
    expect(responses.at(-1)?.message).toContain('listener stopped')
    expect(f.marks().some((m) => m.what === 'end')).toBe(false) // the job was killed
    // released: visible again at once (not after the 30 s visibility timeout)
    const {requests} = await f.queues()
    const back = await requests.receive({maxMessages: 1})
    expect(back).toHaveLength(1)
    expect(back[0]?.body).toContain('req-term')
    expect(back[0]?.receiveCount).toBe(2)
  })

  it('working lines also go out every working_interval while the job runs', async () => {
    const f = fixture({working_lines: 1000, working_interval: 0.3})
    await f.send('slow', 'req-ticks', ['1500'])
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})
    expect(run.exitCode, String(run.stderr)).toBe(0)
    const working = byRequest(await f.drainResponses(), 'req-ticks').filter((r) => r.result === 'working')
    expect(working.length).toBeGreaterThan(1)
    const ticks = working.flatMap((r) => r.message.split('\n'))
    expect(ticks).toEqual(ticks.map((_, i) => `tick ${i + 1}`))
    expect(ticks.length).toBeGreaterThan(3)
  })

  it('SIGTERM with another listener on the host: it takes the released request over (not dropped as a duplicate)', async () => {
    const f = fixture({stop_timeout: 1, visibility_timeout: 30})
    await f.send('slowfirst', 'req-handover')
    const a = listenInBackground(f)
    await waitFor(() => f.marks().some((m) => m.what === 'start'), 15_000, 'the job to start')
    const b = listenInBackground(f)
    await new Promise((resolve) => setTimeout(resolve, 2500)) // b is up and polling
    a.kill('SIGTERM')
    expect((await a).exitCode).toBe(0)
    await waitFor(() => f.marks().some((m) => m.what === 'end'), 20_000, 'the rerun to end')
    await waitFor(async () => {
      const stats = await (await f.queues()).requests.stats()
      return stats.visible + stats.inFlight === 0
    }, 10_000, 'the request to be deleted')
    b.kill('SIGTERM')
    await b
    const runs = f.marks().filter((m) => m.id === 'req-handover')
    expect(runs.map((m) => m.what)).toEqual(['start', 'start', 'end'])
    expect(runs[0]?.listener).toBe(a.pid)
    expect(runs[1]?.listener).toBe(b.pid)
    expect(alive(runs[0]?.pid ?? -1)).toBe(false)
    const results = byRequest(await f.drainResponses(), 'req-handover').map((r) => r.result)
    expect(results.filter((r) => r === 'started')).toHaveLength(2)
    expect(results.at(-1)).toBe('success')
  }, 60_000)

  it('a job still finishing within stop_timeout after SIGTERM completes normally', async () => {
    const f = fixture({stop_timeout: 20})
    await f.send('slow', 'req-finish', ['1500'])
    const child = listenInBackground(f)
    await waitFor(() => f.marks().some((m) => m.what === 'start'), 15_000, 'the job to start')
    child.kill('SIGTERM')
    const result = await child
    expect(result.exitCode).toBe(0)
    const responses = byRequest(await f.drainResponses(), 'req-finish')
    expect(responses.at(-1)?.result).toBe('success')
    expect(f.marks().filter((m) => m.what === 'end')).toHaveLength(1)
  })

  it('two listeners on one queue never run the same request at once (jobs outlive the visibility timeout)', async () => {
    // Two "hosts": each listener has its own state db, so only the queue's leases and heartbeat keep them apart.
    const f = fixture({visibility_timeout: 1, max_concurrent_jobs: 2})
    const otherConfig = join(f.dir, 'other.yml')
    writeFileSync(otherConfig, `${readFileSync(f.configPath, 'utf8')}state_db: ${join(f.dir, 'other-state.db')}\n`)
    const ids = Array.from({length: 6}, (_, i) => `req-${i}`)
    for (const id of ids) await f.send('slow', id, ['1800'])
    const a = listenInBackground(f)
    const b = listenInBackground(f, [], otherConfig)
    await waitFor(async () => f.marks().filter((m) => m.what === 'end').length >= ids.length, 40_000, 'all jobs to end')
    a.kill('SIGTERM')
    b.kill('SIGTERM')
    await Promise.all([a, b])
    const marks = f.marks()
    for (const id of ids) {
      const runs = marks.filter((m) => m.id === id)
      expect(runs.map((m) => m.what), id).toEqual(['start', 'end']) // once, not overlapping
    }
    // both listeners took part
    expect(new Set(marks.map((m) => m.listener))).toEqual(new Set([a.pid, b.pid]))
    const responses = await f.drainResponses()
    for (const id of ids) expect(byRequest(responses, id).filter((r) => r.result === 'success'), id).toHaveLength(1)
  }, 60_000)

  it('copies of one request sent to two listeners sharing a host run it once, never concurrently', async () => {
    const f = fixture({visibility_timeout: 1, max_concurrent_jobs: 3})
    for (let copy = 0; copy < 3; copy++) for (const id of ['dup-a', 'dup-b']) await f.send('slow', id, ['1200'])
    const a = listenInBackground(f)
    const b = listenInBackground(f)
    await waitFor(async () => f.marks().filter((m) => m.what === 'end').length >= 2, 30_000, 'both jobs to end')
    await waitFor(async () => {
      const {requests} = await f.queues()
      const stats = await requests.stats()
      return stats.visible + stats.inFlight === 0
    }, 15_000, 'every copy to be handled')
    a.kill('SIGTERM')
    b.kill('SIGTERM')
    await Promise.all([a, b])
    const marks = f.marks()
    for (const id of ['dup-a', 'dup-b']) expect(marks.filter((m) => m.id === id).map((m) => m.what), id).toEqual(['start', 'end'])
    const responses = await f.drainResponses()
    for (const id of ['dup-a', 'dup-b']) {
      expect(byRequest(responses, id).filter((r) => r.result === 'started'), id).toHaveLength(1)
      expect(byRequest(responses, id).filter((r) => r.result === 'success').length, id).toBeGreaterThanOrEqual(1)
    }
  }, 60_000)

  it('a bad config file is one line naming the file and key, exit 2', async () => {
    const f = fixture({max_concurrent_jobs: 'lots'})
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toMatch(new RegExp(`${f.configPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+ max_concurrent_jobs`))
  })

  it('logs through logging-conf.yml (FileHandler, formatter, levels) and warns once about what it ignores', async () => {
    const f = fixture({logging_config_path: 'logging-conf.yml', job_timeout: 0.5})
    const logFile = join(f.dir, 'logs', 'sqslistener.log')
    writeFileSync(
      join(f.dir, 'logging-conf.yml'),
      [
        'version: 1',
        'formatters:',
        '  default:',
        "    format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'",
        'handlers:',
        '  file:',
        '    class: logging.FileHandler',
        '    level: INFO',
        '    formatter: default',
        `    filename: ${logFile}`,
        '  rotating:',
        '    class: logging.handlers.RotatingFileHandler',
        '    filename: /tmp/never.log',
        'loggers:',
        '  SQSListener:',
        '    level: DEBUG',
        '    handlers: [file]',
        '    propagate: no',
        '',
      ].join('\n'),
    )
    await f.send('slow', 'req-timeout', ['5000'])
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})
    expect(run.exitCode).toBe(1)
    const log = readFileSync(logFile, 'utf8')
    expect(log).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - SQSListener - INFO - listening for job requests/m)
    expect(log).toMatch(/ - SQSListener - INFO - job slow failure/)
    expect(log).not.toContain(' - DEBUG - ') // the handler's level filters the logger's DEBUG lines
    expect(log).toContain('RotatingFileHandler" is not supported')
    // also on stderr, since the configured log does not write there; once
    expect(String(run.stderr).split('RotatingFileHandler').length - 1).toBe(1)
    const final = (await f.drainResponses()).at(-1)!
    expect(final).toMatchObject({request_id: 'req-timeout', result: 'failure'})
    expect(final.message).toContain('timed out')
  })

  it('a missing jobs file stops the start with one line and exit 2', async () => {
    const f = fixture({jobs_config_path: 'missing-jobs.yml'})
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: f.env})
    expect(run.exitCode).toBe(2)
    expect(String(run.stderr)).toContain(`Error: ${join(f.dir, 'missing-jobs.yml')}: cannot read the config file (no such file)`)
  })

  it('--concurrency overrides max_concurrent_jobs: jobs run side by side', async () => {
    const f = fixture({max_concurrent_jobs: 1})
    for (const id of ['c1', 'c2', 'c3']) await f.send('slow', id, ['1500'])
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once', '--concurrency', '3'], {env: f.env})
    expect(run.exitCode, String(run.stderr)).toBe(0)
    const marks = f.marks()
    const firstEnd = Math.min(...marks.filter((m) => m.what === 'end').map((m) => m.at))
    expect(marks.filter((m) => m.what === 'start' && m.at < firstEnd)).toHaveLength(3)
  })

  it("reads cistern.yml's sqs-listen: section and shared jobs: table from CISTERN_CONFIG; an exported but empty CONFIG_PATH counts as unset", async () => {
    const f = fixture()
    const cisternYml = join(f.dir, 'cistern.yml')
    writeFileSync(
      cisternYml,
      stringify({
        'sqs-listen': {job_queue_url: f.requestUrl, response_queue_url: f.responseUrl, polling_interval: 1, response_encoding: 'plain'},
        jobs: {greet: {argv: [process.execPath, '-e', 'console.log("hello " + process.argv[1])']}},
      }),
    )
    await f.send('greet', 'req-cistern-yml', ['world'])
    const run = await cistern(['sqs-listen', '--once', '--json'], {env: {...f.env, CONFIG_PATH: '', CISTERN_CONFIG: cisternYml}})
    expect(run.exitCode, String(run.stderr)).toBe(0)
    expect(JSON.parse(String(run.stdout))).toMatchObject({succeeded: 1, exitCode: 0, problems: []})
    const responses = await f.drainResponses()
    expect(responses.map((r) => r.result)).toEqual(['started', 'working', 'success'])
    expect(responses[1]?.message).toBe('hello world')
  })

  it('reads CONFIG_PATH when --config is not given', async () => {
    const f = fixture()
    await f.send('lines', 'req-env', ['1'])
    const run = await cistern(['sqs-listen', '--once'], {env: {...f.env, CONFIG_PATH: f.configPath}})
    expect(run.exitCode, String(run.stderr)).toBe(0)
    expect((await f.drainResponses()).at(-1)).toMatchObject({request_id: 'req-env', result: 'success'})
  })
})
