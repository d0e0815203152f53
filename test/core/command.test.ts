import {Errors, Flags} from '@oclif/core'
import {fileURLToPath} from 'node:url'
import {format} from 'node:util'
import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {CisternCommand} from '../../src/core/command.js'
import {TargetUnhealthyError, UsageError} from '../../src/core/errors.js'
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

  it('never prints a registered secret in an error line', async () => {
    registerSecret('ghp_secretsecret42')
    expect(await run(Fails, ['--kind', 'secret', '--json'])).toBe(2)
    expect(stderr).toBe('Error: GitHub refused token [redacted]\n')
    expect(stdout).not.toContain('ghp_secretsecret42')
  })
})
