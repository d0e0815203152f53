// The built CLI (dist/): refresh with `npm run build`. Issue 12 through a real worker: a job that
// prints its whole environment and every secret cistern knows must leave none of them in the
// responses, the logs or the state database (src/core/jobs.ts builds its environment and masks its
// output; src/core/secrets.ts knows the secrets).
import {readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'

import {cistern} from '../helpers/cli.js'
import {type Fauxqs, startFauxqs, useFauxqsEnv} from '../helpers/fauxqs.js'
import {leakyJob, secretForms} from '../helpers/leaky-job.js'
import {tempDir} from '../helpers/tmp.js'
import {makeFixture} from '../sqs-listener/fixture.js'

const SECRETS = {
  GITHUB_TOKEN: 'ghp_e2eleak_github_0001',
  GITHUB_ACCESS_TOKEN: 'ghp_e2eleak_status_0002',
  JENKINS_TOKEN: '11e2eleakjenkins0003',
  TRAVIS_TOKEN: 'travis-e2eleak-0004',
  AWS_ACCESS_KEY_ID: 'AKIAE2ELEAK0005',
  AWS_SECRET_ACCESS_KEY: 'e2e/leak+secret=0006',
  AWS_SESSION_TOKEN: 'IQoJe2eleaksession0007',
  CISTERN_HOOKS_TOKEN: 'hooks-e2eleak-0008',
  GITHUB_WEBHOOK_SECRET: "It's an e2e leak 0009",
  API_KEY: 'facade-e2eleak-0010',
}

/** The job prints its environment, then each secret it is asked for (by name, from a file it reads itself). */
const LEAKY = leakyJob()


/** Every file under a directory, as latin1 text (SQLite pages keep strings as they are). */
function everything(dir: string): string {
  return readdirSync(dir, {recursive: true, withFileTypes: true})
    .filter((entry) => entry.isFile())
    .map((entry) => readFileSync(join(entry.parentPath, entry.name), 'latin1'))
    .join('\n')
}

describe('secrets never leave through a job (sqs-listen, built CLI)', () => {
  it.each([
    ['a built environment', undefined],
    ['inheritEnv: all (Bang!-style)', 'all'],
  ] as const)('with %s: responses, logs and state hold none of them', async (_name, inheritEnv) => {
    const root = tempDir('cistern-e2e-secrets-')
    const f = makeFixture(join(root, 'case'), {jobs_config_path: 'leaky-jobs.yml', working_interval: 60, working_lines: 1000})
    // The job reads the values to print from this file: what a compromised or careless job could know.
    const known = [...Object.values(SECRETS)]
    const list = join(f.dir, 'secrets.json')
    writeFileSync(list, JSON.stringify(known))
    const script = join(f.dir, 'leaky.cjs')
    writeFileSync(script, LEAKY)
    writeFileSync(join(f.dir, 'leaky-jobs.yml'), stringify({leaky: {argv: [process.execPath, script, list], ...(inheritEnv ? {inheritEnv} : {})}}))

    await f.send('leaky', 'req-leak', [])
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: {...f.env, ...SECRETS, AWS_REGION: 'eu-west-1'}})
    expect(run.exitCode, String(run.stderr)).toBe(1)
    const responses = await f.drainResponses()
    expect(responses.map((r) => r.result)).toEqual(['started', 'working', 'failure'])
    const working = responses[1]!.message
    expect(working).toContain('CISTERN_REQUEST_ID=req-leak')
    expect(working).toContain('[redacted]')
    expect(working.includes('GITHUB_TOKEN=')).toBe(inheritEnv === 'all')

    const seen = [JSON.stringify(responses), String(run.stdout), String(run.stderr), everything(f.dataDir)].join('\n')
    expect(String(run.stderr)).toContain('[redacted]') // the debug log carried the lines, masked
    for (const secret of known) for (const form of secretForms(secret)) expect(seen, `${secret} as ${form}`).not.toContain(form)
  })
})

describe('secrets never leave through a job (sqs-listen on SQS through fauxqs, a bang-stacks job, built CLI)', () => {
  let emulator: Fauxqs
  let restoreEnv: () => void
  beforeAll(async () => {
    emulator = await startFauxqs()
    restoreEnv = useFauxqsEnv(emulator)
  }, 60_000)
  afterAll(async () => {
    restoreEnv()
    await emulator.stop()
  })

  it.each([
    ['a built environment', undefined],
    ['inheritEnv: all (Bang!-style)', 'all'],
  ] as const)('with %s: the SQS responses, logs and state hold none of them', async (name, inheritEnv) => {
    const queue = inheritEnv ?? 'built'
    const jobs = await emulator.createQueue(`leak-${queue}`, {deadLetter: `leak-${queue}-dlq`})
    const answers = await emulator.createQueue(`leak-${queue}-answers`)
    const root = tempDir('cistern-e2e-secrets-sqs-')
    const dir = join(root, 'case')
    const list = join(dir, 'secrets.json')
    const script = join(dir, 'leaky.cjs')
    // Bang!'s form: <bang_command> <stack files…> <parameters…>; here the "dispatcher" is the leaky job.
    const f = makeFixture(dir, {
      job_queue_url: jobs.url,
      response_queue_url: answers.url,
      jobs_config_path: 'bang-jobs.yml',
      bang_command: [process.execPath, script, list],
      response_encoding: 'base64',
      working_interval: 60,
      working_lines: 1000,
    })
    const known = [...Object.values(SECRETS)]
    writeFileSync(list, JSON.stringify(known))
    writeFileSync(script, LEAKY)
    writeFileSync(join(dir, 'bang-jobs.yml'), stringify({deploy: {'bang-stacks': ['stacks/web.yml'], ...(inheritEnv ? {inheritEnv} : {})}}))

    await f.send('deploy', 'req-leak-sqs', [])
    // The CLI signs its SQS calls with the secret AWS keys (the emulator does not check them).
    const run = await cistern(['sqs-listen', '--config', f.configPath, '--once'], {env: {...f.env, ...SECRETS, AWS_ENDPOINT_URL: emulator.endpoint, AWS_REGION: emulator.region}})
    expect(run.exitCode, `${name}: ${String(run.stderr)}`).toBe(1)
    const responses = await f.drainResponses()
    expect(responses.map((r) => r.result)).toEqual(['started', 'working', 'failure'])
    const working = responses[1]?.message ?? ''
    expect(working).toContain('CISTERN_REQUEST_ID=req-leak-sqs')
    expect(working).toContain('[redacted]')
    expect(working.includes('GITHUB_TOKEN=')).toBe(inheritEnv === 'all')

    const seen = [JSON.stringify(responses), String(run.stdout), String(run.stderr), everything(f.dataDir)].join('\n')
    expect(String(run.stderr)).toContain('[redacted]')
    for (const secret of known) for (const form of secretForms(secret)) expect(seen, `${secret} as ${form}`).not.toContain(form)
  })
})
