import {
  AcknowledgeJobCommand,
  CodePipelineClient,
  PutJobFailureResultCommand,
  PutJobSuccessResultCommand,
} from '@aws-sdk/client-codepipeline'
import {GetObjectCommand, PutObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {mockClient} from 'aws-sdk-client-mock'
import {strToU8, unzipSync, zipSync} from 'fflate'
import {mkdirSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {execa} from 'execa'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {CommandHandler, envKey} from '../../src/codepipeline/actions/command.js'
import {commandSettings} from '../../src/codepipeline/config.js'
import type {JobContext} from '../../src/codepipeline/job.js'
import {processJob} from '../../src/codepipeline/lifecycle.js'
import {extractZip, safeEntryPath, unixModes, zipPaths} from '../../src/codepipeline/zip.js'
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
    // Issue 14: the sources' own script, run as ./script (its execute bit comes from the zip).
    `script:`,
    `  argv: [sh, -c, 'cd "$CP_INPUT_SOURCE" && ./ci/build.sh > "$CP_OUTPUT_BUILT/out.txt"']`,
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

async function handlerFor(settings: Record<string, unknown> = {job: 'build'}, artifactRetryMs?: number) {
  const jobs = await loadJobs(join(dir, 'jobs.yml'))
  return new CommandHandler({settings: commandSettings.parse({workRoot, ...settings}), jobs, region: 'eu-west-1', artifactRetryMs})
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
    expect(s3.commandCalls(GetObjectCommand)[0]!.args[0].input).toEqual({Bucket: 'pipeline-bucket', Key: 'demo/Source/in.zip'})

    // The S3 client was built from the job's artifact credentials, not the worker's.
    for (const call of s3.calls()) {
      const used = (call.thisValue as S3Client).config
      expect(await used.credentials()).toMatchObject(CREDS)
      expect(await used.region()).toBe('eu-west-1')
    }

    const put = s3.commandCalls(PutObjectCommand)[0]!.args[0].input
    expect(put).toMatchObject({Bucket: 'pipeline-bucket', Key: 'demo/Built/out.zip', ServerSideEncryption: 'aws:kms', SSEKMSKeyId: KMS})
    const files = unzipSync(put.Body as Uint8Array)
    expect(Object.keys(files)).toEqual(['bin/app.txt'])
    expect(new TextDecoder().decode(files['bin/app.txt'])).toBe(`built:hello-world:staging:${job.id}`)

    const success = cp.commandCalls(PutJobSuccessResultCommand)[0]!.args[0].input
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
    const put = s3.commandCalls(PutObjectCommand)[0]!.args[0].input
    expect(put.ServerSideEncryption).toBe('aws:kms')
    expect(put).not.toHaveProperty('SSEKMSKeyId')
  })

  it('non-zero exit: JobFailed with the last output lines, nothing uploaded', async () => {
    const job = artifactJob({Mode: 'fail'})
    const {done} = process_(job, await handlerFor())
    expect(await done).toBe('failed')
    expect(commandNames(cp)).toEqual(['AcknowledgeJob', 'PutJobFailureResult'])
    expect(commandNames(s3)).toEqual(['GetObject'])
    const details = cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails!
    expect(details.type).toBe('JobFailed')
    expect(details.message).toBe('job build exited with 7\nbuilding hello-world in demo-pipeline\ncompile error on line 3')
  })

  it('$CP_RESULT_FILE enriches the success (summary, external id, current revision)', async () => {
    const {done} = process_(artifactJob({Mode: 'result'}), await handlerFor())
    expect(await done).toBe('succeeded')
    expect(cp.commandCalls(PutJobSuccessResultCommand)[0]!.args[0].input).toMatchObject({
      executionDetails: {summary: 'custom summary', externalExecutionId: 'run-77'},
      currentRevision: {revision: 'r1', changeIdentifier: 'c1'},
    })
  })

  it('configured output paths are zipped relative to the work directory', async () => {
    const {done} = process_(artifactJob({}), await handlerFor({job: 'paths', outputs: {Built: ['dist', 'report.txt']}}))
    expect(await done).toBe('succeeded')
    const files = unzipSync(s3.commandCalls(PutObjectCommand)[0]!.args[0].input.Body as Uint8Array)
    expect(Object.keys(files).sort()).toEqual(['dist/a.txt', 'report.txt'])
  })

  it('an output path the job did not produce fails the job', async () => {
    const {done} = process_(artifactJob({}), await handlerFor({job: 'paths', outputs: {Built: ['nope']}}))
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails).toEqual({type: 'JobFailed', message: 'output path nope was not produced by the job'})
    expect(commandNames(s3)).toEqual(['GetObject'])
  })

  it('unknown or missing job: ConfigurationError', async () => {
    const handler = await handlerFor({})
    const {done} = process_(artifactJob({}), handler)
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails?.type).toBe('ConfigurationError')
    cp.resetHistory()
    const second = process_(artifactJob({Job: 'nope'}), handler)
    expect(await second.done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails).toEqual({
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
    const details = cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails!
    expect(details.type).toBe('ConfigurationError')
    expect(details.message).toMatch(/^job missing could not start: /)
  })

  it('S3 AccessDenied on the input: PermissionError, the job never runs', async () => {
    s3.on(GetObjectCommand).rejects(Object.assign(new Error('Access Denied'), {name: 'AccessDenied'}))
    const {done} = process_(artifactJob({}), await handlerFor())
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails).toEqual({
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
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails?.message).toMatch(/points outside the work directory/)
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0)
    expect(() => safeEntryPath('/w', '/etc/passwd')).toThrow()
    expect(safeEntryPath('/w', 'a/../b.txt')).toBe('/w/b.txt')
  })

  it('a corrupt artifact is JobFailed', async () => {
    s3.on(GetObjectCommand).resolves({Body: body(strToU8('not a zip at all'))})
    const {done} = process_(artifactJob({}), await handlerFor())
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails?.message).toMatch(/^artifact is not a valid zip/)
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
    const details = cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails!
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
    const bomb = zipSync({'zeros.bin': new Uint8Array(1024 * 1024)}, {level: 9})
    expect(bomb.length).toBeLessThan(10_000)
    const target = join(dir, 'bomb')
    await expect(extractZip(bomb, target, 512 * 1024)).rejects.toThrow(/unpacks to more than 524288 bytes/)
    expect(() => readdirSync(target)).toThrow()
    expect(await extractZip(bomb, target, 2 * 1024 * 1024)).toBe(1)
  })
})

describe('file modes (issue 14: ./script.sh in an artifact runs)', () => {
  const unix = (mode: number) => ({os: 3, attrs: (0o100000 | mode) * 0x10000})

  it('an input artifact keeps the modes its zip records: the job runs ./ci/build.sh; the output records them too', async () => {
    const source = zipSync({
      'ci/build.sh': [strToU8('#!/bin/sh\necho built by script\n'), unix(0o755)],
      'README.md': [strToU8('read me\n'), unix(0o644)],
    })
    s3.on(GetObjectCommand).resolves({Body: body(source), ContentLength: source.length})
    const {done, capture} = process_(artifactJob({}), await handlerFor({job: 'script', keepWorkDir: false}))
    expect(await done, capture.text()).toBe('succeeded')
    const uploaded = s3.commandCalls(PutObjectCommand)[0]!.args[0].input.Body as Uint8Array
    expect(new TextDecoder().decode(unzipSync(uploaded)['out.txt'])).toBe('built by script\n')
    expect((unixModes(uploaded).get('out.txt') ?? 0) & 0o170000).toBe(0o100000)
  })

  it('extractZip: modes from fflate and from Info-ZIP zips; setuid bits dropped; a zip without modes gives plain files', async () => {
    const target = join(dir, 'modes')
    const zip = zipSync({
      'run.sh': [strToU8('#!/bin/sh\necho ok\n'), unix(0o755)],
      'suid': [strToU8('x'), unix(0o4755)],
      'private.key': [strToU8('k'), unix(0o600)],
      'plain.txt': strToU8('no mode recorded'),
    })
    expect(await extractZip(zip, target)).toBe(4)
    const mode = (name: string) => statSync(join(target, name)).mode & 0o7777
    expect(mode('run.sh')).toBe(0o755)
    expect(mode('suid')).toBe(0o755)
    expect(mode('private.key')).toBe(0o600)
    expect(mode('plain.txt') & 0o111).toBe(0)
    expect((await execa(join(target, 'run.sh'))).stdout).toBe('ok')

    const probe = await execa('zip', ['-v'], {reject: false}).catch(() => ({exitCode: 1}))
    if (probe.exitCode !== 0) return
    const src = join(dir, 'infozip-src')
    mkdirSync(join(src, 'bin'), {recursive: true})
    writeFileSync(join(src, 'bin', 'tool.sh'), '#!/bin/sh\necho infozip\n', {mode: 0o750})
    await execa('zip', ['-q', '-r', join(dir, 'infozip.zip'), 'bin'], {cwd: src})
    const out = join(dir, 'infozip-out')
    await extractZip(readFileSync(join(dir, 'infozip.zip')), out)
    expect(statSync(join(out, 'bin', 'tool.sh')).mode & 0o777).toBe(0o750)
    expect((await execa(join(out, 'bin', 'tool.sh'))).stdout).toBe('infozip')
  })

  it('zipPaths records each file\'s permission bits (a deploy step unzipping it gets ./run.sh back)', async () => {
    const root = join(dir, 'to-zip')
    mkdirSync(root, {recursive: true})
    writeFileSync(join(root, 'run.sh'), '#!/bin/sh\n', {mode: 0o755})
    writeFileSync(join(root, 'data.txt'), 'd', {mode: 0o644})
    const {zip} = await zipPaths(root, ['.'])
    const modes = unixModes(zip)
    expect((modes.get('run.sh') ?? 0) & 0o777).toBe(0o755)
    expect((modes.get('data.txt') ?? 0) & 0o777).toBe(0o644)
  })
})

describe('S3 failing (contract: S3 unwell is retried, the job fails only when it stays so)', () => {
  const slowDown = () => Object.assign(new Error('Please reduce your request rate.'), {name: 'SlowDown', $metadata: {httpStatusCode: 503}})

  it('GetObject/PutObject throttled twice each: retried, the job succeeds', async () => {
    let gets = 0
    let puts = 0
    s3.on(GetObjectCommand).callsFake(() => (++gets <= 2 ? Promise.reject(slowDown()) : {Body: body(sourceZip), ContentLength: sourceZip.length}))
    s3.on(PutObjectCommand).callsFake(() => (++puts <= 2 ? Promise.reject(slowDown()) : {}))
    const {done} = process_(artifactJob({TargetEnv: 'x'}), await handlerFor({job: 'build'}, 5000))
    expect(await done).toBe('succeeded')
    expect([gets, puts]).toEqual([3, 3])
  })

  it('S3 unreachable for longer than the retry window: SystemUnavailable, the job never runs', async () => {
    s3.on(GetObjectCommand).rejects(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), {code: 'ECONNREFUSED'}))
    const {done} = process_(artifactJob({}), await handlerFor({job: 'build'}, 100))
    expect(await done).toBe('failed')
    const details = cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails!
    expect(details.type).toBe('SystemUnavailable')
    expect(details.message).toMatch(/^downloading artifact Source \(s3:\/\/pipeline-bucket\/demo\/Source\/in\.zip\): S3 did not answer in \d+ tr(y|ies) \(ECONNREFUSED: connect ECONNREFUSED/)
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0)
  })

  it('a missing input artifact (NoSuchKey) is RevisionUnavailable at once', async () => {
    s3.on(GetObjectCommand).rejects(Object.assign(new Error('The specified key does not exist.'), {name: 'NoSuchKey'}))
    const {done} = process_(artifactJob({}), await handlerFor())
    expect(await done).toBe('failed')
    expect(cp.commandCalls(PutJobFailureResultCommand)[0]!.args[0].input.failureDetails).toEqual({
      type: 'RevisionUnavailable',
      message: 'downloading artifact Source (s3://pipeline-bucket/demo/Source/in.zip): NoSuchKey',
    })
    expect(s3.commandCalls(GetObjectCommand)).toHaveLength(1)
  })
})

