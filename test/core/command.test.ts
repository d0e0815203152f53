import {Errors, Flags} from '@oclif/core'
import {fileURLToPath} from 'node:url'
import {format} from 'node:util'
import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {CisternCommand} from '../../src/core/command.js'
import {CisternError, ExitCode, type Problem, type RunOutcome, TargetUnhealthyError, UsageError, runOutcome} from '../../src/core/errors.js'
import {duration, integer, positiveNumber, url} from '../../src/core/flags.js'
import {registerSecret} from '../../src/core/secrets.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

let stdout = ''
let stderr = ''
beforeEach(() => {
  stdout = ''
  stderr = ''
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true))
  // oclif prints stdout through console.log
  vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void (stdout += format(...args) + '\n'))
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true))
})
afterEach(() => {
  vi.restoreAllMocks()
  process.exitCode = undefined
})

/** Run a command class in-process; returns the exit code (0 when run() resolved). */
async function run(command: {run(argv: string[], root: string): Promise<unknown>}, argv: string[]): Promise<number> {
  try {
    await command.run(argv, root)
    return 0
  } catch (error) {
    if (error instanceof Errors.ExitError) return error.oclif.exit ?? 1
    throw error
  }
}

class Ok extends CisternCommand<{answer: number}> {
  static override flags = {name: Flags.string()}
  async run() {
    const {flags} = await this.parse(Ok)
    this.print(`hello ${flags.name ?? 'world'}`)
    this.logger.info('ran', {name: flags.name})
    this.logger.debug('debug detail')
    return {answer: 42}
  }
}

class Fails extends CisternCommand<void> {
  static override flags = {kind: Flags.string({required: true})}
  async run() {
    const {flags} = await this.parse(Fails)
    if (flags.kind === 'usage') throw new UsageError('bad --url "x"', 'give an https:// URL')
    if (flags.kind === 'unhealthy') throw new TargetUnhealthyError('Jenkins answered 503', 'try again when it is up')
    if (flags.kind === 'secret') throw new UsageError('GitHub refused token ghp_secretsecret42')
    throw new TypeError("Cannot read properties of undefined (reading 'x')")
  }
}

describe('CisternCommand', () => {
  it('returns the result as --json output and prints for humans otherwise', async () => {
    expect(await run(Ok, ['--name', 'ops'])).toBe(0)
    expect(stdout).toBe('hello ops\n')
    stdout = ''
    expect(await run(Ok, ['--name', 'ops', '--json'])).toBe(0)
    expect(JSON.parse(stdout)).toEqual({answer: 42})
  })

  it('logs JSON lines to stderr when not a TTY, honouring --log-format and --log-level', async () => {
    await run(Ok, ['--name', 'ops', '--log-format', 'json'])
    const lines = stderr.trim().split('\n').map((line) => JSON.parse(line))
    expect(lines).toEqual([expect.objectContaining({level: 'info', msg: 'ran', name: 'ops'})])
    stderr = ''
    await run(Ok, ['--log-format', 'human', '--log-level', 'debug'])
    expect(stderr).toContain('debug debug detail')
    stderr = ''
    await run(Ok, ['--log-level', 'warn'])
    expect(stderr).toBe('')
  })

  it('an operator error is one line with the fix and its exit code', async () => {
    expect(await run(Fails, ['--kind', 'usage'])).toBe(2)
    expect(stderr).toBe('Error: bad --url "x" — give an https:// URL\n')
    stderr = ''
    expect(await run(Fails, ['--kind', 'unhealthy'])).toBe(3)
    expect(stderr).toBe('Error: Jenkins answered 503 — try again when it is up\n')
  })

  it('with --json the error is a JSON envelope on stdout too', async () => {
    expect(await run(Fails, ['--kind', 'usage', '--json'])).toBe(2)
    expect(JSON.parse(stdout)).toEqual({error: {name: 'UsageError', message: 'bad --url "x"', fix: 'give an https:// URL', exitCode: 2}})
    expect(stderr).toBe('Error: bad --url "x" — give an https:// URL\n')
  })

  it('an unexpected error prints its stack only with --debug', async () => {
    expect(await run(Fails, ['--kind', 'bug'])).toBe(1)
    expect(stderr).toBe("Error: Cannot read properties of undefined (reading 'x') (unexpected; run with --debug for the stack)\n")
    stderr = ''
    expect(await run(Fails, ['--kind', 'bug', '--debug'])).toBe(1)
    expect(stderr).toMatch(/^TypeError: Cannot read properties of undefined/)
    expect(stderr).toMatch(/\n\s+at .*command\.test\.ts/)
    stdout = ''
    expect(await run(Fails, ['--kind', 'bug', '--json'])).toBe(1)
    expect(JSON.parse(stdout)).toEqual({error: {name: 'TypeError', message: "Cannot read properties of undefined (reading 'x')", exitCode: 1}})
  })

  it('unknown flags, missing flags and bad option values exit 2 with one line', async () => {
    expect(await run(Ok, ['--bogus'])).toBe(2)
    expect(stderr.trim().split('\n')).toHaveLength(1)
    expect(stderr).toMatch(/^Error: Nonexistent flag: --bogus/)
    stderr = ''
    expect(await run(Fails, [])).toBe(2)
    expect(stderr).toMatch(/^Error: Missing required flag kind — see /)
    stderr = ''
    expect(await run(Ok, ['--log-level', 'loud'])).toBe(2)
    expect(stderr).toMatch(/^Error: .*loud/)
    stdout = ''
    expect(await run(Ok, ['--bogus', '--json'])).toBe(2)
    expect(JSON.parse(stdout).error).toMatchObject({name: 'UsageError', exitCode: 2})
  })

  it('never prints a registered secret in a result, for humans or as --json', async () => {
    class Leaky extends CisternCommand<{nested: {list: string[]; when: Date}}> {
      async run() {
        await this.parse(Leaky)
        this.print('token ghp_resultsecret99 in a line')
        this.log('%s and %d', 'ghp_resultsecret99', 7)
        return {nested: {list: ['ghp_resultsecret99', 'plain'], when: new Date(0)}}
      }
    }
    registerSecret('ghp_resultsecret99')
    expect(await run(Leaky, [])).toBe(0)
    expect(stdout).toBe('token [redacted] in a line\n[redacted] and 7\n')
    stdout = ''
    expect(await run(Leaky, ['--json'])).toBe(0)
    expect(JSON.parse(stdout)).toEqual({nested: {list: ['[redacted]', 'plain'], when: '1970-01-01T00:00:00.000Z'}})
  })

  it('never prints a registered secret in an error line', async () => {
    registerSecret('ghp_secretsecret42')
    expect(await run(Fails, ['--kind', 'secret', '--json'])).toBe(2)
    expect(stderr).toBe('Error: GitHub refused token [redacted]\n')
    expect(stdout).not.toContain('ghp_secretsecret42')
  })
})

class Tuned extends CisternCommand<Record<string, unknown>> {
  static override id = 'tuned'
  static override flags = {
    rate: positiveNumber({env: 'TEST_TUNED_RATE'}),
    concurrency: integer({min: 1, max: 256}),
    timeout: duration({unit: 'ms'}),
    wait: duration(),
    target: url(),
  }
  async run() {
    const {flags} = await this.parse(Tuned)
    return {...flags}
  }
}

describe('core flag builders', () => {
  it('parse good values (a duration is milliseconds; a bare number is in its unit)', async () => {
    expect(await run(Tuned, ['--rate', '2.5', '--concurrency', '8', '--timeout', '1500', '--wait', '2m', '--target', ' https://ci.example.com/x ', '--json'])).toBe(0)
    expect(JSON.parse(stdout)).toMatchObject({rate: 2.5, concurrency: 8, timeout: 1500, wait: 120_000, target: 'https://ci.example.com/x'})
    stdout = ''
    expect(await run(Tuned, ['--timeout', '2s', '--wait', '1.5', '--json'])).toBe(0)
    expect(JSON.parse(stdout)).toMatchObject({timeout: 2000, wait: 1500})
  })

  it.each([
    [['--rate', 'abc'], '--rate: expected a positive number, got "abc"'],
    [['--rate', '0'], '--rate: expected a positive number, got "0"'],
    [['--rate', '-5'], '--rate: expected a positive number, got "-5"'],
    [['--concurrency', '0'], '--concurrency: expected an integer from 1 to 256, got "0"'],
    [['--concurrency', '2.5'], '--concurrency: expected an integer from 1 to 256, got "2.5"'],
    [['--timeout', 'soon'], '--timeout: expected a duration such as 500ms, 30s, 5m or 1h (a bare number is milliseconds), got "soon"'],
    [['--wait', '0'], '--wait: expected a duration such as 500ms, 30s, 5m or 1h (a bare number is seconds), got "0"'],
    [['--target', 'jenkins'], '--target: expected an http:// or https:// URL, got "jenkins"'],
    [['--target', 'ftp://x/'], '--target: expected an http:// or https:// URL, got "ftp://x/"'],
  ])('%j is a usage error naming the flag and what was expected (exit 2)', async (argv, line) => {
    expect(await run(Tuned, argv)).toBe(2)
    expect(stderr).toBe(`Error: ${line} — see cistern tuned --help\n`)
    stdout = ''
    expect(await run(Tuned, [...argv, '--json'])).toBe(2)
    expect(JSON.parse(stdout)).toEqual({error: {name: 'FlagValueError', message: line, fix: 'see cistern tuned --help', exitCode: 2}})
  })

  it("a value from the flag's environment variable is checked the same way", async () => {
    process.env.TEST_TUNED_RATE = 'fast'
    try {
      expect(await run(Tuned, [])).toBe(2)
      expect(stderr).toMatch(/^Error: --rate: expected a positive number, got "fast"/)
    } finally {
      delete process.env.TEST_TUNED_RATE
    }
  })

  it('a URL with a password is refused without showing the password', async () => {
    expect(await run(Tuned, ['--target', 'https://bot:hunter2hunter2@ci.example.com/'])).toBe(2)
    expect(stderr).toMatch(/^Error: --target: expected an http:\/\/ or https:\/\/ URL without user or password/)
    expect(stderr).not.toContain('hunter2hunter2')
  })
})

/** Results that carry their outcome, as a one-shot run's summary does. */
class Outcome extends CisternCommand<{delivered: number} & RunOutcome> {
  static override flags = {problems: Flags.string({multiple: true, default: []})}
  async run() {
    const {flags} = await this.parse(Outcome)
    const problems = flags.problems.map((text): Problem => {
      const at = text.indexOf(':')
      return {exitCode: Number(text.slice(0, at)) as Problem['exitCode'], line: text.slice(at + 1)}
    })
    this.print('drain: 5 delivered')
    return {delivered: 5, ...runOutcome(problems)}
  }
}

describe('a result that carries its outcome', () => {
  it('is printed, then each problem is one stderr line and the code is the exit code', async () => {
    expect(await run(Outcome, ['--problems', '1:2 dead letters: see cistern queue peek --dead URL'])).toBe(1)
    expect(stdout).toBe('drain: 5 delivered\n')
    expect(stderr).toBe('2 dead letters: see cistern queue peek --dead URL\n')
  })

  it('with --json the outcome is part of the output, and the problems still go to stderr', async () => {
    expect(await run(Outcome, ['--json', '--problems', '3:Jenkins ci is down: 40 remaining', '--problems', '1:1 dead letter'])).toBe(3)
    expect(JSON.parse(stdout)).toEqual({delivered: 5, exitCode: 3, problems: ['Jenkins ci is down: 40 remaining', '1 dead letter']})
    expect(stderr).toBe('Jenkins ci is down: 40 remaining\n1 dead letter\n')
  })

  it('exits 0 with nothing on stderr when there is no problem', async () => {
    expect(await run(Outcome, [])).toBe(0)
    expect(stderr).toBe('')
  })

  it('masks secrets in problem lines', async () => {
    registerSecret('ghp_problemsecret77')
    expect(await run(Outcome, ['--problems', '3:GitHub refused ghp_problemsecret77'])).toBe(3)
    expect(stderr).toBe('GitHub refused [redacted]\n')
  })
})

describe('runOutcome', () => {
  it('picks the most specific code: 2, then 3, then 1', () => {
    const p = (exitCode: Problem['exitCode']): Problem => ({exitCode, line: `code ${exitCode}`})
    expect(runOutcome([])).toEqual({exitCode: 0, problems: []})
    expect(runOutcome([p(1), p(3)]).exitCode).toBe(3)
    expect(runOutcome([p(3), p(1), p(2)])).toEqual({exitCode: 2, problems: ['code 2', 'code 3', 'code 1']})
    expect(runOutcome([p(1)]).exitCode).toBe(ExitCode.failure)
  })
})

class Unreachable extends CisternCommand<void> {
  static override flags = {kind: Flags.string({required: true})}
  async run() {
    const {flags} = await this.parse(Unreachable)
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), {code: 'ECONNREFUSED', address: '127.0.0.1', port: 9})
    if (flags.kind === 'raw') throw refused
    if (flags.kind === 'wrapped') throw new CisternError('SQS ReceiveMessage on sqs://jobs failed: connect ECONNREFUSED 127.0.0.1:9', {cause: refused})
    if (flags.kind === 'dns') throw new TypeError('fetch failed', {cause: Object.assign(new Error('getaddrinfo ENOTFOUND jenkins.internal'), {code: 'ENOTFOUND', hostname: 'jenkins.internal'})})
    throw new Error('something else')
  }
}

describe('an unreachable target or endpoint', () => {
  const fix = 'check that the service is up and that its URL or endpoint (AWS_ENDPOINT_URL for AWS) is right'

  it('is exit 3 with a fix, whether the error is raw, wrapped or a cause', async () => {
    expect(await run(Unreachable, ['--kind', 'raw'])).toBe(3)
    expect(stderr).toBe(`Error: connect ECONNREFUSED 127.0.0.1:9 — connection refused by 127.0.0.1:9: ${fix}\n`)
    stderr = ''
    expect(await run(Unreachable, ['--kind', 'wrapped'])).toBe(3)
    expect(stderr).toBe(`Error: SQS ReceiveMessage on sqs://jobs failed: connect ECONNREFUSED 127.0.0.1:9 — connection refused by 127.0.0.1:9: ${fix}\n`)
    stderr = ''
    expect(await run(Unreachable, ['--kind', 'dns'])).toBe(3)
    expect(stderr).toBe(`Error: fetch failed — name not resolved (jenkins.internal): ${fix}\n`)
    stderr = ''
    expect(await run(Unreachable, ['--kind', 'other'])).toBe(1)
    expect(stderr).toMatch(/unexpected; run with --debug/)
  })
})

describe('an empty environment variable', () => {
  class Env extends CisternCommand<{region?: string}> {
    static override flags = {region: Flags.string({env: 'TEST_EMPTY_REGION'})}
    async run() {
      await this.parse(Env)
      return {region: process.env.TEST_EMPTY_REGION, has: 'TEST_EMPTY_REGION' in process.env}
    }
  }

  it('is unset before the command parses (core/settings.ts)', async () => {
    process.env.TEST_EMPTY_REGION = ''
    expect(await run(Env, ['--json'])).toBe(0)
    expect(JSON.parse(stdout)).toEqual({has: false})
  })
})
