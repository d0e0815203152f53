import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ConfigError} from '../../src/core/errors.js'
import {BASE_VARIABLES, type JobSpec, jobEnvironment, loadJobs, looksLikeJobs, runJob, splitCommand} from '../../src/core/jobs.js'
import {readSecretFile, registerSecret} from '../../src/core/secrets.js'
import {tempDir} from '../helpers/tmp.js'

const node = process.execPath
/** A job that prints its argv (after the script) and its CISTERN_* env as one JSON line. */
const echoArgs: JobSpec = {
  name: 'echo',
  argv: [node, '-e', 'console.log(JSON.stringify({args: process.argv.slice(1), params: process.env.CISTERN_PARAMS, p1: process.env.CISTERN_PARAM_1, p2: process.env.CISTERN_PARAM_2, extra: process.env.EXTRA}))'],
}

/** Running (a zombie left unreaped by a container's init counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^\d+ \(.*\) [ZX]/.test(stat)
  } catch {
    return false
  }
}

describe('splitCommand', () => {
  it('splits words and honours quotes and backslashes without expanding anything', () => {
    expect(splitCommand('deploy --env prod')).toEqual(['deploy', '--env', 'prod'])
    expect(splitCommand(`  a   'b c'  "d e" f\\ g  `)).toEqual(['a', 'b c', 'd e', 'f g'])
    expect(splitCommand(`say "it's \\"quoted\\"" 'a "b"' x\\'y`)).toEqual(['say', `it's "quoted"`, 'a "b"', "x'y"])
    expect(splitCommand('echo $HOME $(id) `id` ; rm -rf / | cat && x *')).toEqual(['echo', '$HOME', '$(id)', '`id`', ';', 'rm', '-rf', '/', '|', 'cat', '&&', 'x', '*'])
    expect(splitCommand(`a "" '' b`)).toEqual(['a', '', '', 'b'])
    expect(splitCommand(`pre"mid"'post'`)).toEqual(['premidpost'])
    expect(splitCommand(`"a\\b\\$c"`)).toEqual(['a\\b$c'])
    expect(splitCommand('')).toEqual([])
  })

  it('refuses unterminated quotes', () => {
    expect(() => splitCommand(`echo 'open`)).toThrow('unterminated single quote')
    expect(() => splitCommand(`echo "open`)).toThrow('unterminated double quote')
    expect(() => splitCommand('echo \\')).toThrow('trailing backslash')
  })
})

describe('loadJobs', () => {
  const dir = tempDir()
  const file = (name: string, text: string) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }

  it('reads argv and command jobs with env, cwd and timeout', async () => {
    const jobs = await loadJobs(
      file(
        'jobs.yml',
        [
          'deploy:',
          '  argv: [./deploy.sh, --env, prod]',
          '  env: {REGION: eu-west-1, RETRIES: 3, DRY: false}',
          '  cwd: /srv/app',
          '  timeout: 600',
          'notify:',
          `  command: notify --text "build done" 'a b'`,
        ].join('\n'),
      ),
    )
    expect([...jobs.keys()]).toEqual(['deploy', 'notify'])
    expect(jobs.get('deploy')).toEqual({
      name: 'deploy',
      argv: ['./deploy.sh', '--env', 'prod'],
      env: {REGION: 'eu-west-1', RETRIES: '3', DRY: 'false'},
      cwd: '/srv/app',
      timeoutSeconds: 600,
    })
    expect(jobs.get('notify')).toEqual({name: 'notify', argv: ['notify', '--text', 'build done', 'a b']})
  })

  it('reads inheritEnv: a list of names and PREFIX_* patterns, or all', async () => {
    const jobs = await loadJobs(file('inherit.yml', 'aws:\n  command: x\n  inheritEnv: [AWS_PROFILE, AWS_*]\nbang:\n  command: y\n  inheritEnv: all\n'))
    expect(jobs.get('aws')?.inheritEnv).toEqual(['AWS_PROFILE', 'AWS_*'])
    expect(jobs.get('bang')?.inheritEnv).toBe('all')
  })

  it('explains bad jobs with file, line and key', async () => {
    await expect(loadJobs(file('a.yml', 'deploy:\n  argv: []\n'))).rejects.toThrow(/a\.yml:2 deploy\.argv: expected at least 1 item, got a list$/)
    await expect(loadJobs(file('b.yml', 'ok:\n  argv: [x]\ndeploy:\n  cwd: /tmp\n'))).rejects.toThrow(
      /b\.yml:3 deploy: missing what to run; expected argv \(a list\) or command \(a string\)$/,
    )
    await expect(loadJobs(file('c.yml', 'deploy:\n  argv: [x]\n  command: y\n'))).rejects.toThrow(/c\.yml:3 deploy\.command: give either argv/)
    await expect(loadJobs(file('d.yml', 'deploy:\n  command: echo "oops\n'))).rejects.toThrow(/d\.yml:2 deploy\.command: cannot split the command line: unterminated double quote/)
    await expect(loadJobs(file('e.yml', 'deploy:\n  command: x\n  timeout: -1\n'))).rejects.toThrow(/e\.yml:3 deploy\.timeout: expected a number > 0, got -1/)
    await expect(loadJobs(file('f.yml', 'deploy:\n  command: x\n  timout: 5\n'))).rejects.toThrow(/f\.yml:3 deploy\.timout: unknown key; did you mean "timeout"\?/)
    await expect(loadJobs(file('g.yml', 'deploy:\n  command: x\n  env:\n    BAD-NAME: 1\n'))).rejects.toThrow(/g\.yml:4 deploy\.env\.BAD-NAME: expected a string matching/)
    await expect(loadJobs(file('h.yml', 'deploy: ./deploy.sh\n'))).rejects.toThrow(/h\.yml:1 deploy: expected a mapping, got "\.\/deploy\.sh"/)
    await expect(loadJobs(file('i.yml', 'deploy:\n  command: x\n  inheritEnv: yes\n'))).rejects.toThrow(/i\.yml:3 deploy\.inheritEnv: expected "all" or a list, got "yes"$/)
    await expect(loadJobs(file('j.yml', 'deploy:\n  command: x\n  inheritEnv:\n    - AWS_REGION\n    - BAD-NAME\n'))).rejects.toThrow(
      /j\.yml:5 deploy\.inheritEnv\.1: expected a string matching .*, got "BAD-NAME"$/,
    )
    await expect(loadJobs(join(dir, 'missing.yml'))).rejects.toThrow(ConfigError)
  })

  it('looksLikeJobs tells a jobs file from a cistern.yml', () => {
    expect(looksLikeJobs({deploy: {argv: ['x']}, notify: {command: 'y'}})).toBe(true)
    expect(looksLikeJobs({jobs: {deploy: {argv: ['x']}}, spigot: {}})).toBe(false)
    expect(looksLikeJobs({})).toBe(false)
    expect(looksLikeJobs(['x'])).toBe(false)
    expect(looksLikeJobs(null)).toBe(false)
  })
})

describe('runJob', () => {
  it('passes parameters literally, as arguments and as environment', async () => {
    const tricky = ['two words', `it's "quoted"`, 'a; rm -rf /', '$(id) `id` $HOME', '*', '', '--flag=x y']
    const lines: string[] = []
    const result = await runJob(echoArgs, {parameters: tricky, env: {EXTRA: 'yes'}, onLine: (line) => lines.push(line)})
    expect(result.exitCode).toBe(0)
    expect(result.startError).toBeUndefined()
    const seen = JSON.parse(lines[0]!)
    expect(seen.args).toEqual(tricky)
    expect(JSON.parse(seen.params)).toEqual(tricky)
    expect(seen.p1).toBe('two words')
    expect(seen.p2).toBe(`it's "quoted"`)
    expect(seen.extra).toBe('yes')
  })

  it('runs a command-line job split without a shell, with its env and cwd', async () => {
    const dir = tempDir()
    const job: JobSpec = {
      name: 'pwd',
      argv: splitCommand(`"${node}" -e "console.log(process.cwd(), process.env.JOBVAR, process.argv.length)" 'a;b' '$(x)'`),
      env: {JOBVAR: 'from-job'},
      cwd: dir,
    }
    const result = await runJob(job)
    expect(result.lastLines).toEqual([`${dir} from-job 3`])
  })

  it('streams stdout and stderr lines in order and keeps the last ones', async () => {
    const job: JobSpec = {
      name: 'count',
      argv: [node, '-e', 'for (let i = 1; i <= 300; i++) console.log("line " + i); process.stdout.write("partial"); console.error("err 1"); process.exitCode = 3'],
    }
    const out: string[] = []
    const err: string[] = []
    const result = await runJob(job, {keepLines: 5, onLine: (line, stream) => (stream === 'stdout' ? out : err).push(line)})
    expect(out).toEqual([...Array.from({length: 300}, (_, i) => `line ${i + 1}`), 'partial'])
    expect(err).toEqual(['err 1'])
    expect(result.exitCode).toBe(3)
    expect(result.lastLines).toHaveLength(5)
    expect(result.lastLines).toContain('partial')
    expect(result.timedOut).toBe(false)
  })

  it('kills a job at its timeout: SIGTERM, then SIGKILL when it traps SIGTERM', async () => {
    const stubborn: JobSpec = {
      name: 'stubborn',
      argv: [node, '-e', 'process.on("SIGTERM", () => console.log("ignoring TERM")); console.log("ready"); setInterval(() => {}, 1000)'],
      timeoutSeconds: 0.5,
    }
    const lines: string[] = []
    const result = await runJob(stubborn, {killGraceMs: 300, onLine: (line) => lines.push(line)})
    expect(result.timedOut).toBe(true)
    expect(result.signal).toBe('SIGKILL')
    expect(result.exitCode).toBeNull()
    expect(lines).toEqual(['ready', 'ignoring TERM'])

    const polite = await runJob({name: 'sleep', argv: ['sleep', '30']}, {timeoutSeconds: 0.3, killGraceMs: 5000})
    expect(polite.timedOut).toBe(true)
    expect(polite.signal).toBe('SIGTERM')
    expect(polite.durationMs).toBeLessThan(5000)
  })

  it('kills what the job started too (its process group)', async () => {
    const dir = tempDir()
    const pidFile = join(dir, 'child.pid')
    const job: JobSpec = {name: 'tree', argv: ['sh', '-c', `sleep 30 & echo $! > ${pidFile}; wait`]}
    const result = await runJob(job, {timeoutSeconds: 0.5, killGraceMs: 200})
    expect(result.timedOut).toBe(true)
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    expect(pid).toBeGreaterThan(0)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(alive(pid)).toBe(false)
  })

  it('stops on abort the same way', async () => {
    const controller = new AbortController()
    const lines: string[] = []
    const running = runJob(
      {name: 'wait', argv: [node, '-e', 'console.log("started"); setInterval(() => {}, 1000)']},
      {signal: controller.signal, killGraceMs: 300, onLine: (line) => {
        lines.push(line)
        controller.abort()
      }},
    )
    const result = await running
    expect(lines).toEqual(['started'])
    expect(result.aborted).toBe(true)
    expect(result.timedOut).toBe(false)
    expect(result.signal).toBe('SIGTERM')

    const before = new AbortController()
    before.abort()
    expect((await runJob(echoArgs, {signal: before.signal})).aborted).toBe(true)
  })

  it('returns a start error instead of throwing', async () => {
    const missing = await runJob({name: 'nope', argv: ['cistern-no-such-program-x']})
    expect(missing.startError).toBe('cistern-no-such-program-x: command not found')
    expect(missing.exitCode).toBeNull()
    const badCwd = await runJob({...echoArgs, cwd: '/nonexistent/dir'})
    expect(badCwd.startError).toBe('cwd /nonexistent/dir does not exist')
  })

  it('does not wait for a background child that keeps the output open', async () => {
    const result = await runJob({name: 'bg', argv: ['sh', '-c', 'echo main; (sleep 5; echo late) & exit 0']})
    expect(result.exitCode).toBe(0)
    expect(result.lastLines).toEqual(['main'])
    expect(result.durationMs).toBeLessThan(4000)
  })
})

describe('jobEnvironment', () => {
  const parent = {
    PATH: '/usr/bin:/bin',
    HOME: '/home/ci',
    USER: 'ci',
    LANG: 'C.UTF-8',
    TZ: 'UTC',
    AWS_REGION: 'eu-west-1',
    AWS_PROFILE: 'deploy',
    AWS_SECRET_ACCESS_KEY: 'aws-secret',
    GITHUB_TOKEN: 'ghp_x',
    EXTRA: 'x',
  }

  it('is the base and the request only, unless the job names more', () => {
    expect(jobEnvironment({}, {CISTERN_REQUEST_ID: 'r-1'}, parent)).toEqual({PATH: '/usr/bin:/bin', HOME: '/home/ci', USER: 'ci', LANG: 'C.UTF-8', TZ: 'UTC', CISTERN_REQUEST_ID: 'r-1'})
    expect(BASE_VARIABLES).toEqual(['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'])
  })

  it('adds named variables and prefixes; all is the whole environment', () => {
    expect(jobEnvironment({inheritEnv: ['AWS_PROFILE', 'MISSING']}, {}, parent)).toMatchObject({AWS_PROFILE: 'deploy'})
    expect(jobEnvironment({inheritEnv: ['AWS_PROFILE']}, {}, parent)).not.toHaveProperty('AWS_REGION')
    expect(Object.keys(jobEnvironment({inheritEnv: ['AWS_*']}, {}, parent)).filter((name) => name.startsWith('AWS_')).sort()).toEqual(['AWS_PROFILE', 'AWS_REGION', 'AWS_SECRET_ACCESS_KEY'])
    expect(jobEnvironment({inheritEnv: 'all'}, {}, parent)).toEqual(parent)
  })

  it("the job's env beats what it inherits; the request beats both", () => {
    const env = jobEnvironment({inheritEnv: ['EXTRA'], env: {EXTRA: 'from-job', CISTERN_REQUEST_ID: 'spoofed', PATH: '/opt/bin'}}, {CISTERN_REQUEST_ID: 'r-2'}, parent)
    expect(env).toMatchObject({EXTRA: 'from-job', CISTERN_REQUEST_ID: 'r-2', PATH: '/opt/bin'})
  })
})

describe('secrets never leave through a job (issue 12)', () => {
  const dir = tempDir()
  // Every kind of secret cistern reads: tokens and keys from the environment, a secret file, a
  // token from a config file's tokenEnv (registered), and one job's own credential (options.mask).
  const fromEnv = {
    GITHUB_TOKEN: 'ghp_leaktest_github_0001',
    GITHUB_ACCESS_TOKEN: 'ghp_leaktest_status_0002',
    JENKINS_TOKEN: '11leaktestjenkins0003',
    TRAVIS_TOKEN: 'travis-leaktest-0004',
    AWS_ACCESS_KEY_ID: 'AKIALEAKTEST0005',
    AWS_SECRET_ACCESS_KEY: 'leak/test+secret=0006',
    AWS_SESSION_TOKEN: 'IQoJleaktestsession0007',
    CISTERN_HOOKS_TOKEN: 'hooks-leaktest-0008',
    GITHUB_WEBHOOK_SECRET: "It's a leak test 0009",
    API_KEY: 'facade-leaktest-0010',
  }
  const secretFile = join(dir, 'webhook-secret')
  writeFileSync(secretFile, 'from-a-file-leaktest-0011\n')
  const configured = 'configured-leaktest-0012'
  const perJob = 'per-job-artifact-key-0013'
  let all: string[] = []

  const saved = {...process.env}
  beforeAll(() => {
    Object.assign(process.env, fromEnv, {AWS_REGION: 'eu-west-1'})
    registerSecret(configured)
    all = [...Object.values(fromEnv), readSecretFile(secretFile, {what: 'webhook secret', source: '--webhook-secret-file'}), configured, perJob]
  })
  afterAll(() => {
    for (const name of Object.keys(process.env)) if (!(name in saved)) Reflect.deleteProperty(process.env, name)
    Object.assign(process.env, saved)
  })

  /** Prints its environment, then every secret it was given, plain, base64 and URL-encoded. */
  const leaky = (inheritEnv?: JobSpec['inheritEnv']): JobSpec => ({
    name: 'leaky',
    argv: [
      node,
      '-e',
      `for (const [k, v] of Object.entries(process.env)) console.log(k + '=' + v)
       for (const s of process.argv.slice(1)) { console.log(s); console.error(Buffer.from(s).toString('base64')); console.log(encodeURIComponent(s)); console.log('Basic ' + Buffer.from('bot:' + s).toString('base64')) }
       process.exitCode = 3`,
    ],
    ...(inheritEnv ? {inheritEnv} : {}),
  })

  const forms = (secret: string) => [secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64').replace(/=+$/, ''), encodeURIComponent(secret)]

  it.each([
    ['built environment', undefined],
    ['inheritEnv: [AWS_*]', ['AWS_*']],
    ['inheritEnv: all', 'all'],
  ] as const)('%s: output and result contain none of them, in any form', async (_name, inheritEnv) => {
    const lines: string[] = []
    const result = await runJob(leaky(inheritEnv as JobSpec['inheritEnv']), {parameters: all, mask: [perJob], keepLines: 1000, onLine: (line) => lines.push(line), env: {CISTERN_REQUEST_ID: 'req-1'}})
    expect(result.exitCode).toBe(3)
    const seen = [...lines, ...result.lastLines, result.startError ?? ''].join('\n')
    expect(seen).toContain('CISTERN_REQUEST_ID=req-1')
    expect(seen).toContain('[redacted]')
    for (const secret of all) for (const form of forms(secret)) expect(seen, `${secret} as ${form}`).not.toContain(form)
    // The variables themselves are passed only when the job names them.
    const names = lines.filter((line) => /^[A-Z_]+=/.test(line)).map((line) => line.split('=')[0])
    if (inheritEnv === undefined) {
      for (const name of Object.keys(fromEnv)) expect(names).not.toContain(name)
      expect(names).not.toContain('AWS_REGION')
    } else if (inheritEnv === 'all') {
      expect(names).toEqual(expect.arrayContaining(Object.keys(fromEnv)))
    } else {
      expect(names).toEqual(expect.arrayContaining(['AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']))
      expect(names).not.toContain('GITHUB_TOKEN')
    }
  })
})
