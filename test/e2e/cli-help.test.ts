// What an operator sees around the commands themselves: topic help, and a mistyped command.
// Runs the built CLI (npm run build first).
import {execa} from 'execa'
import {describe, expect, it} from 'vitest'

import {CLI, cistern} from '../helpers/cli.js'

describe('topic help', () => {
  it('`hooks --help` lists `hooks task` with its own description, not a command summary', async () => {
    const result = await cistern(['hooks', '--help'])
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toMatch(/^TOPICS\n\s+hooks task\s+Manage the tasks of a running hooks service$/m)
    expect(result.stdout).not.toMatch(/hooks task\s+Create a webhook/)
  })

  it('`hooks task --help` starts with the topic description and lists its commands', async () => {
    const result = await cistern(['hooks', 'task', '--help'])
    expect(result.exitCode).toBe(0)
    expect(String(result.stdout).split('\n')[0]).toBe('Manage the tasks of a running hooks service')
    for (const verb of ['create', 'delete', 'list', 'show', 'start', 'stop', 'update']) expect(result.stdout).toMatch(new RegExp(`^\\s+hooks task ${verb}\\s`, 'm'))
  })

  it('every topic of `cistern --help` has a description', async () => {
    const result = await cistern(['--help'])
    const topics = String(result.stdout).split('\n\n').find((block) => block.startsWith('TOPICS'))
    expect(topics).toBeDefined()
    // A topic's line starts at column 2; wrapped descriptions continue further right.
    const lines = topics!.split('\n').filter((line) => /^ {2}\S/.test(line))
    expect(lines.map((line) => line.trim().split(/\s+/)[0])).toEqual(
      expect.arrayContaining(['codepipeline-worker', 'config', 'hooks', 'queue', 'spigot', 'status-queue']),
    )
    for (const line of lines) expect(line.trim(), line).toMatch(/^\S+\s{2,}\S/)
  })
})

describe('a mistyped command', () => {
  it('off a terminal (CI, cron): one usage line with the closest command, exit 2', async () => {
    const result = await cistern(['spigt', 'status'])
    expect(result.exitCode).toBe(2)
    expect(String(result.stderr).trim()).toBe('Error: "spigt status" is not a cistern command — did you mean `cistern spigot status`? (`cistern --help` lists every command)')
    const verb = await cistern(['spigot', 'stauts'])
    expect(verb.exitCode).toBe(2)
    expect(verb.stderr).toContain('did you mean `cistern spigot status`?')
    const deep = await cistern(['hooks', 'tsk', 'list'])
    expect(deep.stderr).toContain('did you mean `cistern hooks task list`?')
  })

  it('on a terminal: offers the closest command (did you mean …?)', async (context) => {
    // `script` gives the CLI a pseudo-terminal; answer "n" to the prompt.
    const probe = await execa('script', ['--version'], {reject: false})
    if (probe.exitCode !== 0) return context.skip()
    const result = await execa('script', ['-qec', `node ${CLI} spigt status`, '/dev/null'], {
      input: 'n\n',
      reject: false,
      timeout: 30_000,
      env: {NO_COLOR: '1', TERM: 'dumb'},
    })
    expect(result.stdout).toContain('Did you mean spigot status?')
    expect(result.exitCode).toBe(127)
  })
})
