// Issue 12 through the worker: a command job that prints its whole environment and every secret
// cistern knows (and the job's own artifact credentials, nonce and secret configuration) must leave
// none of them in what reaches CodePipeline (the PutJob*Result requests, captured by
// aws-sdk-client-mock) or in the log. JENKINS_TOKEN/TRAVIS_TOKEN are masked with no such action configured.
import {AcknowledgeJobCommand, CodePipelineClient, PollForJobsCommand, PutJobFailureResultCommand, PutJobSuccessResultCommand} from '@aws-sdk/client-codepipeline'
import {mockClient} from 'aws-sdk-client-mock'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'

import {loadWorkerConfig} from '../../src/codepipeline/config.js'
import {startWorker} from '../../src/codepipeline/worker.js'
import {leakyJob, secretForms} from '../helpers/leaky-job.js'
import {tempDir} from '../helpers/tmp.js'
import {CREDS, captureLogger, fakeJob} from './fixtures.js'

const SECRETS = {
  GITHUB_TOKEN: 'ghp_cpleak_github_0001',
  JENKINS_TOKEN: '11cpleakjenkins0003',
  TRAVIS_TOKEN: 'travis-cpleak-0004',
  AWS_ACCESS_KEY_ID: 'AKIACPLEAK0005',
  AWS_SECRET_ACCESS_KEY: 'cp/leak+secret=0006',
  AWS_SESSION_TOKEN: 'IQoJcpleaksession0007',
  CISTERN_HOOKS_TOKEN: 'hooks-cpleak-0008',
  GITHUB_WEBHOOK_SECRET: "It's a cp leak 0009",
}
const CONFIG_SECRET = 'cfg-api-token-cpleak-0010'

/** Prints the environment, then each secret it is given (by a file it reads itself) in the forms a job could print it. */
const LEAKY = leakyJob(`if (process.env.CP_CONFIG_MODE === 'pass') {
  fs.writeFileSync(process.env.CP_RESULT_FILE, JSON.stringify({summary: 'done with ' + all.join(' '), externalExecutionId: all[0], outputVariables: {leak: all[1], cfg: process.env.CP_CONFIG_APITOKEN}, currentRevision: {revision: 'r1', changeIdentifier: 'c1', revisionSummary: all.join(',')}}))
  process.exit(0)
}
process.exit(3)`)


const saved: Record<string, string | undefined> = {}
beforeAll(() => {
  for (const [name, value] of Object.entries(SECRETS)) {
    saved[name] = process.env[name]
    process.env[name] = value
  }
})
afterAll(() => {
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) Reflect.deleteProperty(process.env, name)
    else process.env[name] = value
  }
})

describe('secrets never leave through a codepipeline job (issue 12)', () => {
  it.each([
    ['a built environment', undefined],
    ['inheritEnv: all (the listener-style environment, explicit)', 'all'],
  ] as const)('with %s: results and the log hold none of them', async (_name, inheritEnv) => {
    const dir = tempDir('cistern-cp-leak-')
    const known = [...Object.values(SECRETS), ...Object.values(CREDS), CONFIG_SECRET]
    writeFileSync(join(dir, 'secrets.json'), JSON.stringify(known))
    writeFileSync(join(dir, 'leaky.cjs'), LEAKY)
    writeFileSync(join(dir, 'jobs.yml'), stringify({leaky: {argv: [process.execPath, join(dir, 'leaky.cjs'), join(dir, 'secrets.json')], ...(inheritEnv ? {inheritEnv} : {})}}))
    // A command action only: no Jenkins or Travis action reads JENKINS_TOKEN or TRAVIS_TOKEN.
    writeFileSync(join(dir, 'codepipeline.yml'), stringify({jobs: 'jobs.yml', concurrency: 2, actions: [{category: 'Build', provider: 'leaky', version: '1', handler: 'command', concurrency: 2, settings: {job: 'leaky', workRoot: join(dir, 'work')}}]}))

    const cp = mockClient(CodePipelineClient)
    try {
      const jobs = [fakeJob({id: 'leak-fail', configuration: {ApiToken: CONFIG_SECRET}}), fakeJob({id: 'leak-pass', configuration: {ApiToken: CONFIG_SECRET, Mode: 'pass'}})]
      known.push(...jobs.map((job) => job.nonce!))
      cp.on(PollForJobsCommand).resolvesOnce({jobs}).resolves({jobs: []})
      cp.on(AcknowledgeJobCommand).resolves({status: 'InProgress'})
      cp.on(PutJobSuccessResultCommand).resolves({})
      cp.on(PutJobFailureResultCommand).resolves({})
      const capture = captureLogger()
      const summary = await startWorker(await loadWorkerConfig(join(dir, 'codepipeline.yml')), {
        client: new CodePipelineClient({region: 'eu-west-1'}),
        logger: capture.logger,
        once: true,
        region: 'eu-west-1',
      })
      expect(summary).toMatchObject({jobs: 2, failed: 1, succeeded: 1, exitCode: 0})

      const failure = cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input
      const success = cp.commandCalls(PutJobSuccessResultCommand)[0]!.args[0].input
      expect(failure.failureDetails?.message).toContain('[redacted]')
      expect(success.executionDetails?.summary).toMatch(/^done with \[redacted\]/)
      expect(success.outputVariables).toEqual({leak: '[redacted]', cfg: '[redacted]'})
      const log = capture.text()
      // The job ran and printed its environment (debug lines), masked; secrets reach it only when named.
      expect(log).toContain('CP_JOB_ID=leak-fail')
      expect(log.includes('GITHUB_TOKEN=')).toBe(inheritEnv === 'all')
      expect(log).toContain('CP_CONFIG_APITOKEN=[redacted]')

      // Every result request (AcknowledgeJob must send the nonce: it is the one request that may).
      const results = [...cp.commandCalls(PutJobFailureResultCommand), ...cp.commandCalls(PutJobSuccessResultCommand)].map((call) => call.args[0].input)
      expect(results).toHaveLength(2)
      const seen = [JSON.stringify(results), log].join('\n')
      for (const secret of known) for (const form of secretForms(secret)) expect(seen, `${secret} as ${form}`).not.toContain(form)
    } finally {
      cp.restore()
    }
  })
})
