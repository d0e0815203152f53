import {mkdirSync, writeFileSync} from 'node:fs'
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
    expect(ok.stdout).toBe(`${config}: ok (cistern)`)
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
    expect(result.stderr).toBe(`Error: ${bad}:5 jobs.deploy.timeout: expected a number, got "soon"`)
  })

  it('--json gives the error object on stdout, the line on stderr, and exits 2', async () => {
    const bad = file('jobs-bad.yml', 'deploy:\n  command: echo "unclosed\n')
    const result = await cistern(['config', 'check', bad, '--json'], {env})
    expect(result.exitCode).toBe(2)
    const message = `${bad}:2 deploy.command: cannot split the command line: unterminated double quote`
    expect(JSON.parse(String(result.stdout))).toEqual({error: {name: 'ConfigError', message, exitCode: 2}})
    expect(result.stderr).toBe(`Error: ${message}`)
  })

  it('--kind overrides detection; a misspelt section is caught', async () => {
    const config = file('sections.yml', 'spigto: {}\n')
    const result = await cistern(['config', 'check', config], {env})
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toBe(`Error: ${config}:1 spigto: unknown key; did you mean "spigot"?`)
    const asJobs = await cistern(['config', 'check', config, '--kind', 'jobs'], {env})
    expect(asJobs.exitCode).toBe(2)
    expect(asJobs.stderr).toBe(`Error: ${config}:1 spigto: missing what to run; expected argv (a list) or command (a string)`)
  })

  it('reports malformed YAML and a missing file in one line', async () => {
    const broken = file('broken.yml', 'spigot:\n  jenkins: [unclosed\nhooks: {}\n')
    const result = await cistern(['config', 'check', broken], {env})
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toMatch(new RegExp(`^Error: ${broken}:\\d+ invalid YAML: [^\\n]+$`))
    const missing = join(dir, 'missing.yml')
    const gone = await cistern(['config', 'check', missing], {env})
    expect(gone.exitCode).toBe(2)
    expect(gone.stderr).toBe(`Error: ${missing}: cannot read the config file (no such file)`)
  })
})

describe("config check on the pieces' own files", () => {
  it(".sqslistener: Bang!'s keys pass; a queue named twice is refused; an unknown key is a warning", async () => {
    const sub = join(dir, 'listener')
    mkdirSync(sub, {recursive: true})
    const path = join(sub, '.sqslistener')
    writeFileSync(path, 'aws_region: us-east-1\njob_queue_name: bang-queue\nresponse_queue_name: bang-response\n')
    const ok = await cistern(['config', 'check', path], {env})
    expect(ok.exitCode).toBe(0)
    expect(ok.stdout).toBe(`${path}: ok (sqs-listen)`)

    writeFileSync(path, 'job_queue_name: bang-queue\njob_queue_url: sqlite:q.db#bang-queue\n')
    const twice = await cistern(['config', 'check', path], {env})
    expect(twice.exitCode).toBe(2)
    expect(twice.stderr).toBe(`Error: ${path}: both job_queue_url and job_queue_name are set — keep one of them`)

    writeFileSync(path, 'job_queue_name: bang-queue\npolling_intervall: 5\n')
    const unknown = await cistern(['config', 'check', path, '--json', '--log-format', 'human'], {env})
    expect(unknown.exitCode).toBe(0)
    expect(JSON.parse(String(unknown.stdout))).toEqual({file: path, kind: 'sqs-listen', ok: true, warnings: [`${path}: polling_intervall: unknown key, sqs-listen ignores it`]})
    expect(unknown.stderr).toBe(`warn  ${path}: polling_intervall: unknown key, sqs-listen ignores it`)
  })

  it("sqs-listen's jobs.yml: bang-stacks jobs and shared ones; the shared kind refuses bang-stacks", async () => {
    const jobs = file('listener-jobs.yml', 'deploy_web:\n  bang-stacks: [stacks/web.yml]\nrotate:\n  argv: [rotate-logs]\n')
    const ok = await cistern(['config', 'check', jobs], {env})
    expect(ok.stdout).toBe(`${jobs}: ok (sqs-listen-jobs)`)
    expect(ok.exitCode).toBe(0)

    const empty = file('listener-jobs-bad.yml', 'deploy_web:\n  bang-stacks: []\nrotate:\n  argv: [rotate-logs]\n')
    const bad = await cistern(['config', 'check', empty], {env})
    expect(bad.exitCode).toBe(2)
    // (what it got is worded by the listener's schema, which reports the job rather than the list)
    expect(bad.stderr).toMatch(new RegExp(`^Error: ${empty}:2 deploy_web.bang-stacks: expected at least 1 item`))

    const shared = await cistern(['config', 'check', jobs, '--kind', 'jobs'], {env})
    expect(shared.exitCode).toBe(2)
    expect(shared.stderr).toMatch(new RegExp(`^Error: ${jobs}:2 deploy_web.bang-stacks: unknown key`))
  })

  it('codepipeline.yml: detected by its actions, validated by the worker\'s schema', async () => {
    const config = file('worker.yml', 'jobs: jobs.yml\nactions:\n  - category: Build\n    provider: my-build\n    version: "1"\n    handler: command\n')
    const ok = await cistern(['config', 'check', config, '--json'], {env})
    expect(JSON.parse(String(ok.stdout))).toEqual({file: config, kind: 'codepipeline-worker', ok: true})

    const bad = file('worker-bad.yml', 'actions:\n  - category: Biuld\n    provider: my-build\n    version: "1"\n    handler: command\n')
    const refused = await cistern(['config', 'check', bad], {env})
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toMatch(new RegExp(`^Error: ${bad}:2 actions.0.category: expected one of "Source", "Build"`))

    // Nothing to go by but the name: an empty codepipeline.yml is checked as one.
    const empty = file('codepipeline.yml', '')
    const named = await cistern(['config', 'check', empty], {env})
    expect(named.exitCode).toBe(2)
    expect(named.stderr).toBe(`Error: ${empty}:1: expected a mapping, got null (an empty value)`)
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
      error: {name: 'UsageError', message: 'Expected --kind=nope to be one of: cistern, jobs, codepipeline-worker, sqs-listen, sqs-listen-jobs', fix: 'see cistern config check --help', exitCode: 2},
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
