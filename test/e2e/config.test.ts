import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {cistern} from '../helpers/cli.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir()
const file = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}
const env = {CISTERN_DATA_DIR: dir}

describe('cistern config check', () => {
  it('says ok for a valid cistern.yml and jobs.yml', async () => {
    const config = file('cistern.yml', 'spigot:\n  jenkinsUrl: "http://ci:8080/"\njobs:\n  deploy:\n    argv: [./deploy.sh]\n')
    const ok = await cistern(['config', 'check', config], {env})
    expect(ok.exitCode).toBe(0)
    expect(ok.stdout).toBe(`${config}: ok`)
    expect(ok.stderr).toBe('')

    const jobs = file('jobs.yml', 'deploy:\n  command: ./deploy.sh --env "prod eu"\n  timeout: 600\n')
    const json = await cistern(['config', 'check', jobs, '--json'], {env})
    expect(json.exitCode).toBe(0)
    expect(JSON.parse(String(json.stdout))).toEqual({file: jobs, kind: 'jobs', ok: true})
  })

  it('the shipped example jobs.yml is valid', async () => {
    const example = new URL('../../examples/core/jobs.yml', import.meta.url).pathname
    const result = await cistern(['config', 'check', example, '--json'], {env})
    expect(JSON.parse(String(result.stdout))).toEqual({file: example, kind: 'jobs', ok: true})
  })

  it('prints one line naming file, line and key, and exits 2', async () => {
    const bad = file('bad.yml', 'spigot: {}\njobs:\n  deploy:\n    argv: [x]\n    timeout: soon\n')
    const result = await cistern(['config', 'check', bad], {env})
    expect(result.exitCode).toBe(2)
    expect(result.stdout).toBe('')
    expect(result.stderr).toBe(`${bad}:5 jobs.deploy.timeout: expected a number, got "soon"`)
  })

  it('--json gives {file, kind, ok, error} and exits 2', async () => {
    const bad = file('jobs-bad.yml', 'deploy:\n  command: echo "unclosed\n')
    const result = await cistern(['config', 'check', bad, '--json'], {env})
    expect(result.exitCode).toBe(2)
    expect(JSON.parse(String(result.stdout))).toEqual({
      file: bad,
      kind: 'jobs',
      ok: false,
      error: `${bad}:2 deploy.command: cannot split the command line: unterminated double quote`,
      line: 2,
      key: 'deploy.command',
    })
  })

  it('--kind overrides detection; a misspelt section is caught', async () => {
    const config = file('sections.yml', 'spigto: {}\n')
    const result = await cistern(['config', 'check', config], {env})
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toBe(`${config}:1 spigto: unknown key; did you mean "spigot"?`)
    const asJobs = await cistern(['config', 'check', config, '--kind', 'jobs'], {env})
    expect(asJobs.exitCode).toBe(2)
    expect(asJobs.stderr).toBe(`${config}:1 spigto: missing what to run; expected argv (a list) or command (a string)`)
  })

  it('reports malformed YAML and a missing file in one line', async () => {
    const broken = file('broken.yml', 'spigot:\n  jenkins: [unclosed\nhooks: {}\n')
    const result = await cistern(['config', 'check', broken], {env})
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toMatch(new RegExp(`^${broken}:\\d+ invalid YAML: [^\\n]+$`))
    const missing = join(dir, 'missing.yml')
    const gone = await cistern(['config', 'check', missing], {env})
    expect(gone.exitCode).toBe(2)
    expect(gone.stderr).toBe(`${missing}: cannot read the config file (no such file)`)
  })
})

describe('the base command, through the built CLI', () => {
  it('an unknown flag or a missing argument exits 2 with one line', async () => {
    const unknown = await cistern(['config', 'check', 'x.yml', '--bogus'], {env})
    expect(unknown.exitCode).toBe(2)
    expect(unknown.stderr).toBe('Error: Nonexistent flag: --bogus — see cistern config check --help')
    const missing = await cistern(['config', 'check'], {env})
    expect(missing.exitCode).toBe(2)
    expect(missing.stderr).toBe('Error: Missing 1 required arg: file — see cistern config check --help')
  })

  it('--json turns a usage error into a JSON envelope', async () => {
    const result = await cistern(['config', 'check', '--kind', 'nope', 'x.yml', '--json'], {env})
    expect(result.exitCode).toBe(2)
    expect(JSON.parse(String(result.stdout))).toEqual({
      error: {name: 'UsageError', message: 'Expected --kind=nope to be one of: cistern, jobs', fix: 'see cistern config check --help', exitCode: 2},
    })
  })

  it('logs JSON lines on stderr when not a TTY, human lines with --log-format human', async () => {
    const config = file('log.yml', 'hooks: {}\n')
    const json = await cistern(['config', 'check', config, '--log-level', 'debug'], {env: {...env, CISTERN_LOG_FORMAT: ''}})
    expect(json.exitCode).toBe(0)
    const line = JSON.parse(String(json.stderr))
    expect(line).toMatchObject({level: 'debug', msg: 'config file checked', file: config, kind: 'cistern', ok: true})
    const human = await cistern(['config', 'check', config, '--debug', '--log-format', 'human'], {env})
    expect(human.stderr).toBe(`debug config file checked file=${config} kind=cistern ok=true`)
  })
})
