import {writeFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {ConfigError, UsageError} from '../../src/core/errors.js'
import {defaultDbPath} from '../../src/core/paths.js'
import {loadListenerConfig, resolveListenerConfig} from '../../src/sqs-listener/config.js'
import {loadListenerJobs} from '../../src/sqs-listener/jobs.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-sqs-config-')
let n = 0
const file = (text: string, name = `c${++n}.yml`) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

describe('.sqslistener', () => {
  it("reads the original's example with its defaults; names resolve through GetQueueUrl (sqs://)", async () => {
    const path = file(`---
aws_region: us-east-1
job_queue_name: bang-queue
response_queue_name: bang-response
polling_interval: 2  # in seconds.
jobs_config_path: /root/sqslistener/jobs.yml
logging_config_path: /root/sqslistener/logging-conf.yml
`)
    const config = await loadListenerConfig(path)
    expect(config).toMatchObject({
      region: 'us-east-1',
      requestQueueUrl: 'sqs://bang-queue',
      responseQueueUrl: 'sqs://bang-response',
      pollingIntervalSeconds: 2,
      jobsPath: '/root/sqslistener/jobs.yml',
      loggingPath: '/root/sqslistener/logging-conf.yml',
      maxConcurrentJobs: 1,
      responseEncoding: 'base64',
      bangCommand: ['bang'],
      stateDb: defaultDbPath(),
      unknownKeys: [],
    })
  })

  it('takes the cistern additions; relative paths resolve against the file, ~ against home', async () => {
    const path = file(`
job_queue_url: sqlite:queues.db#requests
response_queue_url: https://sqs.eu-west-1.amazonaws.com/123456789012/answers
jobs_config_path: conf/jobs.yml
logging_config_path: ~/logging.yml
max_concurrent_jobs: 4
visibility_timeout: 120
job_timeout: 3600
response_encoding: plain
bang_command: /opt/bang/bin/bang --verbose
stop_timeout: 300
completed_window: 600
state_db: state.db
something_new: 1
`)
    const config = await loadListenerConfig(path)
    expect(config).toMatchObject({
      requestQueueUrl: `sqlite:${join(dir, 'queues.db')}#requests`,
      responseQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/answers',
      jobsPath: join(dir, 'conf/jobs.yml'),
      loggingPath: join(homedir(), 'logging.yml'),
      maxConcurrentJobs: 4,
      visibilityTimeout: 120,
      jobTimeoutSeconds: 3600,
      responseEncoding: 'plain',
      bangCommand: ['/opt/bang/bin/bang', '--verbose'],
      stopTimeoutSeconds: 300,
      completedWindowSeconds: 600,
      stateDb: join(dir, 'state.db'),
      unknownKeys: ['something_new'],
    })
  })

  it('names the file, line and key of a bad value', async () => {
    const path = file('job_queue_name: q\nresponse_encoding: utf16\n')
    await expect(loadListenerConfig(path)).rejects.toThrow(ConfigError)
    await expect(loadListenerConfig(path)).rejects.toThrow(new RegExp(`${path}:2 response_encoding`))
  })

  it('refuses the same queue for requests and responses, and a name and a URL for one queue', async () => {
    await expect(loadListenerConfig(file('job_queue_name: q\nresponse_queue_name: q\n'))).rejects.toThrow(UsageError)
    await expect(loadListenerConfig(file('job_queue_name: q\njob_queue_url: sqlite:x.db#q\n'))).rejects.toThrow(/both job_queue_url and job_queue_name/)
  })

  it('a missing file is a ConfigError naming it', async () => {
    await expect(loadListenerConfig(join(dir, 'nope.yml'))).rejects.toThrow(/nope\.yml: cannot read/)
  })
})

describe('where the settings come from (flag > environment > config file > default)', () => {
  const bang = `aws_region: eu-west-1\njob_queue_name: bang-queue\nresponse_queue_name: bang-response\nmax_concurrent_jobs: 2\njobs_config_path: jobs.yml\n`

  it('reads the sqs-listen: section of a cistern.yml (paths against that file), with its shared jobs: table when the section names no jobs file', async () => {
    const path = file(`spigot:\n  jenkinsUrl: https://jenkins.example.com/\nsqs-listen:\n  job_queue_url: sqlite:q.db#jobs\n  response_queue_url: sqlite:q.db#answers\n  stop_timeout: 5\n  colour: red\njobs:\n  greet:\n    argv: [echo, hello]\n`, 'cistern.yml')
    const config = await loadListenerConfig(path)
    expect(config).toMatchObject({
      file: path,
      requestQueueUrl: `sqlite:${join(dir, 'q.db')}#jobs`,
      stopTimeoutSeconds: 5,
      jobsPath: `${path} (jobs:)`,
      unknownKeys: ['sqs-listen.colour'],
    })
    expect(config.sharedJobs?.get('greet')).toEqual({name: 'greet', argv: ['echo', 'hello']})
    // a jobs file named in the section wins over the table
    const named = await loadListenerConfig(file(`sqs-listen:\n  jobs_config_path: conf/jobs.yml\njobs:\n  greet:\n    argv: [echo]\n`))
    expect(named.jobsPath).toBe(join(dir, 'conf/jobs.yml'))
    expect(named.sharedJobs).toBeUndefined()
    // a bad value names the section's key and its line in the cistern.yml
    await expect(loadListenerConfig(file('jobs: {}\nsqs-listen:\n  max_concurrent_jobs: lots\n'))).rejects.toThrow(/:3 sqs-listen\.max_concurrent_jobs: expected a number/)
  })

  it('--config / CONFIG_PATH, else CISTERN_CONFIG when it has the section, else ~/.sqslistener', async () => {
    const listener = file(bang)
    const cistern = file('sqs-listen:\n  job_queue_name: from-cistern-yml\n')
    const other = file('spigot:\n  jenkinsUrl: https://jenkins.example.com/\n')
    expect((await resolveListenerConfig({config: listener}, {CISTERN_CONFIG: cistern})).file).toBe(listener)
    expect((await resolveListenerConfig({}, {CONFIG_PATH: listener, CISTERN_CONFIG: cistern})).file).toBe(listener)
    expect((await resolveListenerConfig({}, {CISTERN_CONFIG: cistern})).requestQueueUrl).toBe('sqs://from-cistern-yml')
    // a cistern.yml without the section is not the listener's: the default file is read (here: missing)
    await expect(resolveListenerConfig({}, {CISTERN_CONFIG: other})).rejects.toThrow(`${join(homedir(), '.sqslistener')}: cannot read`)
  })

  it('flags win over the file: --concurrency, --region (AWS_REGION), --profile, --dead-letter-queue', async () => {
    const path = file(`${bang}dead_letter_queue_url: https://sqs.eu-west-1.amazonaws.com/123456789012/from-file\n`)
    expect(await resolveListenerConfig({config: path})).toMatchObject({maxConcurrentJobs: 2, region: 'eu-west-1', deadLetterUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/from-file'})
    const dlq = 'https://sqs.us-east-1.amazonaws.com/123456789012/from-flag'
    expect(await resolveListenerConfig({config: path, concurrency: 5, region: 'us-east-1', profile: 'ops', deadLetterQueue: dlq})).toMatchObject({
      maxConcurrentJobs: 5,
      region: 'us-east-1',
      profile: 'ops',
      deadLetterUrl: dlq,
    })
  })

  it('refuses a dead-letter queue for an embedded job queue (it keeps its own dead letters) and a dead_letter_queue_url that is not a URL', async () => {
    const embedded = file('job_queue_url: sqlite:q.db#jobs\nresponse_queue_url: sqlite:q.db#answers\n')
    await expect(resolveListenerConfig({config: embedded, deadLetterQueue: 'https://sqs.us-east-1.amazonaws.com/1/dlq'})).rejects.toThrow(UsageError)
    await expect(loadListenerConfig(file('dead_letter_queue_url: bang-dlq\n'))).rejects.toThrow(/:1 dead_letter_queue_url: expected an SQS queue URL/)
  })
})

describe('jobs.yml', () => {
  it("runs the original form through bang_command with the stack files (relative to jobs.yml), and cistern's form as written", async () => {
    const path = file(
      `---
test_job_1:
  bang-stacks:
   - /this/is/just/a/test.yml
test_job_2:
  bang-stacks:
   - stacks/test2.yml
   - /this/is/just/another/test2.yml
  timeout: 600
deploy:
  command: ./deploy.sh --env "staging area"
  cwd: scripts
  env: {MODE: fast}
`,
      'jobs.yml',
    )
    const jobs = await loadListenerJobs(path, ['bang-dispatcher', '-v'])
    expect(jobs.get('test_job_1')).toEqual({name: 'test_job_1', argv: ['bang-dispatcher', '-v', '/this/is/just/a/test.yml']})
    expect(jobs.get('test_job_2')).toEqual({
      name: 'test_job_2',
      argv: ['bang-dispatcher', '-v', join(dir, 'stacks/test2.yml'), '/this/is/just/another/test2.yml'],
      timeoutSeconds: 600,
    })
    expect(jobs.get('deploy')).toEqual({name: 'deploy', argv: ['./deploy.sh', '--env', 'staging area'], cwd: join(dir, 'scripts'), env: {MODE: 'fast'}})
  })

  it('carries inheritEnv in either form (Bang!-style `all`, or names and PREFIX_* patterns)', async () => {
    const path = file('bang:\n  bang-stacks: [x.yml]\n  inheritEnv: all\nrun:\n  argv: [x]\n  inheritEnv: [AWS_PROFILE, AWS_*]\n', 'inherit-jobs.yml')
    const jobs = await loadListenerJobs(path, ['bang'])
    expect(jobs.get('bang')).toMatchObject({argv: ['bang', join(dir, 'x.yml')], inheritEnv: 'all'})
    expect(jobs.get('run')).toMatchObject({inheritEnv: ['AWS_PROFILE', 'AWS_*']})
    await expect(loadListenerJobs(file('a:\n  bang-stacks: [x.yml]\n  inheritEnv: everything\n'), ['bang'])).rejects.toThrow(/:3 a\.inheritEnv/)
  })

  it('says what the file holds where a job is wrong (an empty list is "a list", not the whole job)', async () => {
    await expect(loadListenerJobs(file('a:\n  bang-stacks: []\n'), ['bang'])).rejects.toThrow(/a\.bang-stacks: expected at least 1 item, got a list$/)
    await expect(loadListenerJobs(file('a:\n  argv: []\n'), ['bang'])).rejects.toThrow(/a\.argv: expected at least 1 item, got a list$/)
  })

  it('names the line and key of a bad job in either form', async () => {
    await expect(loadListenerJobs(file('a:\n  bang-stacks: []\n'), ['bang'])).rejects.toThrow(/:2 a\.bang-stacks/)
    await expect(loadListenerJobs(file('a:\n  bang-stacks: [x.yml]\nb:\n  argv: [x]\n  colour: red\n'), ['bang'])).rejects.toThrow(/:\d+ b/)
    await expect(loadListenerJobs(file('a:\n  bang-stacks: [x.yml]\n  stacks: 1\n'), ['bang'])).rejects.toThrow(ConfigError)
  })
})
