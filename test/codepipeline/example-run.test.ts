// Issue 14: the shipped example, as an operator runs it — the BUILT CLI (`npm run build` first) with
// examples/codepipeline/codepipeline.yml and jobs.yml, the artifacts in S3 on fauxqs (its own
// process, loopback), CodePipeline a loopback stand-in. (Its own file: examples.test.ts mocks every
// S3Client of its process with aws-sdk-client-mock.)
import {GetObjectCommand, PutObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {strToU8, unzipSync, zipSync} from 'fflate'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {cistern} from '../helpers/cli.js'
import {type Fauxqs, startFauxqs} from '../helpers/fauxqs.js'
import {FakeCodePipeline, jobData} from './fake-codepipeline.js'

const example = fileURLToPath(new URL('../../examples/codepipeline/codepipeline.yml', import.meta.url))
const BUCKET = 'pipeline-artifacts'
const COMMAND_TYPE = {category: 'Build', owner: 'Custom', provider: 'cistern-command', version: '1'}

let emulator: Fauxqs
let s3: S3Client
let codepipeline: FakeCodePipeline
let endpoint: string

beforeAll(async () => {
  emulator = await startFauxqs({region: 'eu-west-1'})
  await emulator.createBucket(BUCKET)
  s3 = new S3Client({region: emulator.region, endpoint: emulator.endpoint, forcePathStyle: true, credentials: {accessKeyId: 'x', secretAccessKey: 'y'}})
  codepipeline = new FakeCodePipeline()
  endpoint = await codepipeline.start()
})
afterAll(async () => {
  s3.destroy()
  await codepipeline.close()
  await emulator.stop()
})

const unix = (mode: number) => ({os: 3, attrs: (0o100000 | mode) * 0x10000})
const artifact = (name: string, key: string) => ({name, location: {type: 'S3', s3Location: {bucketName: BUCKET, objectKey: key}}})

describe('the example job for real: built CLI, S3 on fauxqs, a CodePipeline stand-in', () => {
  it('downloads SourceOutput, runs the build job in it, uploads BuildOutput; a missing artifact is RevisionUnavailable', async () => {
    // A source artifact as a Unix zip records it: the build script executable.
    const source = zipSync({
      'appspec.yml': [strToU8('version: 0.0\nos: linux\n'), unix(0o644)],
      'ci/build.sh': [strToU8('set -e\nmkdir -p dist\nprintf "built from %s\\n" "$(cat VERSION)" > dist/app.js\n'), unix(0o755)],
      VERSION: [strToU8('2.0.1\n'), unix(0o644)],
    })
    await s3.send(new PutObjectCommand({Bucket: BUCKET, Key: 'shop/SourceOutput/src.zip', Body: source}))
    codepipeline.add(
      'example-build',
      jobData(COMMAND_TYPE, {inputArtifacts: [artifact('SourceOutput', 'shop/SourceOutput/src.zip')], outputArtifacts: [artifact('BuildOutput', 'shop/BuildOutput/out.zip')]}),
    )
    codepipeline.add(
      'example-missing',
      jobData(COMMAND_TYPE, {inputArtifacts: [artifact('SourceOutput', 'shop/SourceOutput/gone.zip')], outputArtifacts: [artifact('BuildOutput', 'shop/BuildOutput/never.zip')]}),
    )

    const result = await cistern(['codepipeline-worker', 'run', '--config', example, '--once', '--json'], {
      env: {
        AWS_ENDPOINT_URL_CODEPIPELINE: endpoint,
        AWS_ENDPOINT_URL_S3: emulator.endpoint,
        AWS_REGION: 'eu-west-1',
        AWS_ACCESS_KEY_ID: 'AKIDEXAMPLEWORKER000',
        AWS_SECRET_ACCESS_KEY: 'example-worker-secret',
        AWS_EC2_METADATA_DISABLED: 'true',
        // The example also has Jenkins and Travis actions: they poll (no jobs for them) and need their variables.
        JENKINS_USER: 'codepipeline-bot',
        JENKINS_TOKEN: 'example-jenkins-token-0001',
        TRAVIS_TOKEN: 'example-travis-token-0002',
        CISTERN_LOG_FORMAT: 'json',
      },
    })
    expect(result.exitCode, String(result.stderr)).toBe(0)
    expect(JSON.parse(String(result.stdout))).toMatchObject({jobs: 2, succeeded: 1, failed: 1, exitCode: 0})
    // The example's three action types were polled.
    expect(new Set(codepipeline.calls.filter((call) => call.op === 'PollForJobs').map((call) => (call.input.actionTypeId as {provider: string}).provider))).toEqual(
      new Set(['cistern-command', 'cistern-jenkins', 'cistern-travis']),
    )

    expect(codepipeline.jobs.get('example-build')!.results.map((r) => r.op)).toEqual(['PutJobSuccessResult'])
    const out = await s3.send(new GetObjectCommand({Bucket: BUCKET, Key: 'shop/BuildOutput/out.zip'}))
    const files = unzipSync(await out.Body!.transformToByteArray())
    expect(Object.keys(files).sort()).toEqual(['appspec.yml', 'dist/app.js'])
    expect(new TextDecoder().decode(files['dist/app.js'])).toBe('built from 2.0.1\n')

    expect(codepipeline.jobs.get('example-missing')!.results).toEqual([
      {
        op: 'PutJobFailureResult',
        input: {jobId: 'example-missing', failureDetails: {type: 'RevisionUnavailable', message: 'downloading artifact SourceOutput (s3://pipeline-artifacts/shop/SourceOutput/gone.zip): NoSuchKey'}},
      },
    ])
    expect(String(result.stderr)).not.toMatch(/example-(jenkins|travis)-token/)
  })
})
