import {
  AcknowledgeJobCommand,
  CodePipelineClient,
  PutJobFailureResultCommand,
  PutJobSuccessResultCommand,
} from '@aws-sdk/client-codepipeline'
import {GetObjectCommand, PutObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {mockClient} from 'aws-sdk-client-mock'
import {strToU8, unzipSync, zipSync} from 'fflate'
import {readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {CommandHandler, envKey} from '../../src/codepipeline/actions/command.js'
import {commandSettings} from '../../src/codepipeline/config.js'
import type {JobContext} from '../../src/codepipeline/job.js'
import {processJob} from '../../src/codepipeline/lifecycle.js'
import {safeEntryPath} from '../../src/codepipeline/zip.js'
import {loadJobs} from '../../src/core/jobs.js'
import {tempDir} from '../helpers/tmp.js'
import {CREDS, captureLogger, commandNames, fakeJob} from './fixtures.js'

const cp = mockClient(CodePipelineClient)
const s3 = mockClient(S3Client)
const client = new CodePipelineClient({region: 'eu-west-1'})
const dir = tempDir('cistern-cp-cmd-')
const workRoot = join(dir, 'work')
const KMS = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab'

// A job that checks its input artifact and environment, writes its output artifact, and fails on demand.
writeFileSync(
  join(dir, 'build.mjs'),
  `import {readFileSync, writeFileSync, mkdirSync} from 'node:fs'
const input = readFileSync(process.env.CP_INPUT_SOURCE + '/src/hello.txt', 'utf8')
console.log('building ' + input.trim() + ' in ' + process.env.CP_PIPELINE_NAME)
mkdirSync(process.env.CP_OUTPUT_BUILT + '/bin', {recursive: true})
writeFileSync(process.env.CP_OUTPUT_BUILT + '/bin/app.txt', 'built:' + input.trim() + ':' + process.env.CP_CONFIG_TARGETENV + ':' + process.env.CP_JOB_ID)
if (process.env.CP_CONFIG_MODE === 'fail') { console.error('compile error on line 3'); process.exit(7) }
if (process.env.CP_CONFIG_MODE === 'result') writeFileSync(process.env.CP_RESULT_FILE, JSON.stringify({summary: 'custom summary', externalExecutionId: 'run-77', currentRevision: {revision: 'r1', changeIdentifier: 'c1'}}))
`,
)
writeFileSync(join(dir, 'paths.mjs'), `import {writeFileSync, mkdirSync} from 'node:fs'\nmkdirSync('dist', {recursive: true})\nwriteFileSync('dist/a.txt', 'A')\nwriteFileSync('report.txt', 'R')\n`)
writeFileSync(join(dir, 'hang.mjs'), `console.log('started'); setInterval(() => {}, 1000)\n`)
writeFileSync(
  join(dir, 'jobs.yml'),
  [
    `build:`,
    `  argv: [${JSON.stringify(process.execPath)}, ${JSON.stringify(join(dir, 'build.mjs'))}]`,
    `paths:`,
    `  argv: [${JSON.stringify(process.execPath)}, ${JSON.stringify(join(dir, 'paths.mjs'))}]`,
    `hang:`,
    `  argv: [${JSON.stringify(process.execPath)}, ${JSON.stringify(join(dir, 'hang.mjs'))}]`,
    `missing:`,
    `  argv: [/nonexistent/cistern-no-such-binary]`,
  ].join('\n') + '\n',
)

const sourceZip = zipSync({'src/': {}, 'src/hello.txt': strToU8('hello-world\n')})
const body = (bytes: Uint8Array) => ({transformToByteArray: async () => bytes}) as never

function artifactJob(configuration: Record<string, string>, options: {encryptionKey?: boolean} = {}) {
  return fakeJob({
    configuration,
    data: {
      inputArtifacts: [{name: 'Source', revision: 'abc123', location: {type: 'S3', s3Location: {bucketName: 'pipeline-bucket', objectKey: 'demo/Source/in.zip'}}}],
      outputArtifacts: [{name: 'Built', location: {type: 'S3', s3Location: {bucketName: 'pipeline-bucket', objectKey: 'demo/Built/out.zip'}}}],
      ...(options.encryptionKey === false ? {} : {encryptionKey: {id: KMS, type: 'KMS'}}),
    },
  })
}

async function handlerFor(settings: Record<string, unknown> = {job: 'build'}) {
  const jobs = await loadJobs(join(dir, 'jobs.yml'))
  return new CommandHandler({settings: commandSettings.parse({workRoot, ...settings}), jobs, region: 'eu-west-1'})
}

function process_(job: ReturnType<typeof fakeJob>, handler: Awaited<ReturnType<typeof handlerFor>>, deadline = new AbortController()) {
  const capture = captureLogger()
  const done = processJob(job, {client, handler, logger: capture.logger, stopping: deadline.signal, deadline: deadline.signal})
  return {done, capture}
}

beforeEach(() => {
  cp.reset()
  s3.reset()
  cp.on(AcknowledgeJobCommand).resolves({status: 'InProgress'})
  cp.on(PutJobSuccessResultCommand).resolves({})
  cp.on(PutJobFailureResultCommand).resolves({})
  s3.on(GetObjectCommand).resolves({Body: body(sourceZip), ContentLength: sourceZip.length})
  s3.on(PutObjectCommand).resolves({})
})
afterEach(() => {
  cp.reset()
  s3.reset()
})

describe('command handler', () => {
  it('downloads with the job credentials, runs the job, uploads the output with the job KMS key, reports success', async () => {
    const job = artifactJob({TargetEnv: 'staging'})
    const {done, capture} = process_(job, await handlerFor())
    expect(await done).toBe('succeeded')
    expect(commandNames(cp)).toEqual(['AcknowledgeJob', 'PutJobSuccessResult'])
    expect(commandNames(s3)).toEqual(['GetObject', 'PutObject'])
    expect(s3.commandCalls(GetObjectCommand)[0].args[0].input).toEqual({Bucket: 'pipeline-bucket', Key: 'demo/Source/in.zip'})

    // The S3 client was built from the job's artifact credentials, not the worker's.
    for (const call of s3.calls()) {
      const used = (call.thisValue as S3Client).config
      expect(await used.credentials()).toMatchObject(CREDS)
      expect(await used.region()).toBe('eu-west-1')
    }

    const put = s3.commandCalls(PutObjectCommand)[0].args[0].input
    expect(put).toMatchObject({Bucket: 'pipeline-bucket', Key: 'demo/Built/out.zip', ServerSideEncryption: 'aws:kms', SSEKMSKeyId: KMS})
    const files = unzipSync(put.Body as Uint8Array)
    expect(Object.keys(files)).toEqual(['bin/app.txt'])
    expect(new TextDecoder().decode(files['bin/app.txt'])).toBe(`built:hello-world:staging:${job.id}`)

    const success = cp.commandCalls(PutJobSuccessResultCommand)[0].args[0].input
    expect(success.jobId).toBe(job.id)
    expect(success.executionDetails?.summary).toMatch(/^job build succeeded in [\d.]+ s$/)
    expect(success.continuationToken).toBeUndefined()
    // the job's output is logged (debug), the credentials are not
    expect(capture.text()).toContain('building hello-world in demo-pipeline')
    for (const secret of Object.values(CREDS)) expect(capture.text()).not.toContain(secret)
    // the work directory is removed afterwards
    expect(readdirSync(workRoot)).toEqual([])
  })

  it('no encryption key in the job: SSE-KMS with the AWS-managed key (no key id)', async () => {
    const {done} = process_(artifactJob({}, {encryptionKey: false}), await handlerFor())
    expect(await done).toBe('succeeded')
    const put = s3.commandCalls(PutObjectCommand)[0].args[0].input
    expect(put.ServerSideEncryption).toBe('aws:kms')
    expect(put).not.toHaveProperty('SSEKMSKeyId')
  })

  it('non-zero exit: JobFailed with the last output lines, nothing uploaded', async () => {
    const job = artifactJob({Mode: 'fail'})
    const {done} = process_(job, await handlerFor())
    expect(await done).toBe('failed')
    expect(commandNames(cp)).toEqual(['AcknowledgeJob', 'PutJobFailureResult'])
    expect(commandNames(s3)).toEqual(['GetObject'])
    const details = cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails!
    expect(details.type).toBe('JobFailed')
    expect(details.message).toBe('job build exited with 7\nbuilding hello-world in demo-pipeline\ncompile error on line 3')
  })

  it('$CP_RESULT_FILE enriches the success (summary, external id, current revision)', async () => {
    const {done} = process_(artifactJob({Mode: 'result'}), await handlerFor())
    expect(await done).toBe('succeeded')
    expect(cp.commandCalls(PutJobSuccessResultCommand)[0].args[0].input).toMatchObject({
      executionDetails: {summary: 'custom summary', externalExecutionId: 'run-77'},
      currentRevision: {revision: 'r1', changeIdentifier: 'c1'},
    })
  })

  it('configured output paths are zipped relative to the work directory', async () => {
    const {done} = process_(artifactJob({}), await handlerFor({job: 'paths', outputs: {Built: ['dist', 'report.txt']}}))
    expect(await done).toBe('succeeded')
    const files = unzipSync(s3.commandCalls(PutObjectCommand)[0].args[0].input.Body as Uint8Array)
    expect(Object.keys(files).sort()).toEqual(['dist/a.txt', 'report.txt'])
  })

  it('an output path the job did not produce fails the job', async () => {
    const {done} = process_(artifactJob({}), await handlerFor({job: 'paths', outputs: {Built: ['nope']}}))
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails).toEqual({type: 'JobFailed', message: 'output path nope was not produced by the job'})
    expect(commandNames(s3)).toEqual(['GetObject'])
  })

  it('unknown or missing job: ConfigurationError', async () => {
    const handler = await handlerFor({})
    const {done} = process_(artifactJob({}), handler)
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails?.type).toBe('ConfigurationError')
    cp.resetHistory()
    const second = process_(artifactJob({Job: 'nope'}), handler)
    expect(await second.done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails).toEqual({
      type: 'ConfigurationError',
      message: 'job "nope" is not defined in jobs.yml',
    })
    expect(s3.calls()).toHaveLength(0)
  })

  it('the Job action configuration property picks the job when settings.job is unset', async () => {
    const {done} = process_(artifactJob({Job: 'build'}), await handlerFor({}))
    expect(await done).toBe('succeeded')
  })

  it('a program that cannot start is a ConfigurationError', async () => {
    const {done} = process_(fakeJob(), await handlerFor({job: 'missing'}))
    expect(await done).toBe('failed')
    const details = cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails!
    expect(details.type).toBe('ConfigurationError')
    expect(details.message).toMatch(/^job missing could not start: /)
  })

  it('S3 AccessDenied on the input: PermissionError, the job never runs', async () => {
    s3.on(GetObjectCommand).rejects(Object.assign(new Error('Access Denied'), {name: 'AccessDenied'}))
    const {done} = process_(artifactJob({}), await handlerFor())
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails).toEqual({
      type: 'PermissionError',
      message: 'downloading artifact Source (s3://pipeline-bucket/demo/Source/in.zip): AccessDenied',
    })
    expect(commandNames(s3)).toEqual(['GetObject'])
  })

  it('a zip entry escaping the work directory fails the job before it runs', async () => {
    const evil = zipSync({'../../escape.txt': strToU8('x')})
    s3.on(GetObjectCommand).resolves({Body: body(evil)})
    const {done} = process_(artifactJob({}), await handlerFor())
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails?.message).toMatch(/points outside the work directory/)
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0)
    expect(() => safeEntryPath('/w', '/etc/passwd')).toThrow()
    expect(safeEntryPath('/w', 'a/../b.txt')).toBe('/w/b.txt')
  })

  it('a corrupt artifact is JobFailed', async () => {
    s3.on(GetObjectCommand).resolves({Body: body(strToU8('not a zip at all'))})
    const {done} = process_(artifactJob({}), await handlerFor())
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails?.message).toMatch(/^artifact is not a valid zip/)
  })

  it('at the stop deadline the job is killed and reported as "worker stopped"', async () => {
    const deadline = new AbortController()
    const lines: string[] = []
    const handler = await handlerFor({job: 'hang'})
    const capture = captureLogger()
    const running = processJob(fakeJob(), {
      client,
      handler: {
        run: (ctx: JobContext) => handler.run({...ctx, logger: {...ctx.logger, debug: (m: string) => lines.push(m)}}),
      },
      logger: capture.logger,
      stopping: deadline.signal,
      deadline: deadline.signal,
    })
    const started = Date.now()
    while (!lines.includes('started') && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 10))
    deadline.abort()
    expect(await running).toBe('failed')
    const details = cp.commandCalls(PutJobFailureResultCommand)[0].args[0].input.failureDetails!
    expect(details.type).toBe('JobFailed')
    expect(details.message).toBe('worker stopped before job hang finished\nstarted')
  })

  it('CP_CONFIG_<KEY> names', () => {
    expect(envKey('CP_CONFIG_', 'TargetEnv')).toBe('CP_CONFIG_TARGETENV')
    expect(envKey('CP_CONFIG_', 'target-env.x')).toBe('CP_CONFIG_TARGET_ENV_X')
  })
})

describe('extractZip', () => {
  it('refuses an artifact that unpacks beyond the limit (zip bomb) before writing it', async () => {
    const {extractZip} = await import('../../src/codepipeline/zip.js')
    const bomb = zipSync({'zeros.bin': new Uint8Array(1024 * 1024)}, {level: 9})
    expect(bomb.length).toBeLessThan(10_000)
    const target = join(dir, 'bomb')
    await expect(extractZip(bomb, target, 512 * 1024)).rejects.toThrow(/unpacks to more than 524288 bytes/)
    expect(() => readdirSync(target)).toThrow()
    expect(await extractZip(bomb, target, 2 * 1024 * 1024)).toBe(1)
  })
})
