import {AcknowledgeJobCommand, CodePipelineClient, PutJobFailureResultCommand, PutJobSuccessResultCommand} from '@aws-sdk/client-codepipeline'
import {GetObjectCommand, PutObjectCommand, S3Client} from '@aws-sdk/client-s3'
import {mockClient} from 'aws-sdk-client-mock'
import {execa} from 'execa'
import {strToU8, unzipSync, zipSync} from 'fflate'
import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import {afterEach, describe, expect, it} from 'vitest'

import {CommandHandler, KILL_GRACE_MS} from '../../src/codepipeline/actions/command.js'
import {loadWorkerConfig} from '../../src/codepipeline/config.js'
import {processJob} from '../../src/codepipeline/lifecycle.js'
import {loadJobs} from '../../src/core/jobs.js'
import {tempDir} from '../helpers/tmp.js'
import {captureLogger, fakeJob} from './fixtures.js'

const examples = (name: string) => fileURLToPath(new URL(`../../examples/codepipeline/${name}`, import.meta.url))

describe('examples/codepipeline', () => {
  it('codepipeline.yml validates and names a custom action type definition per handler', async () => {
    const config = await loadWorkerConfig(examples('codepipeline.yml'))
    expect(config.actions.map((a) => a.handler).sort()).toEqual(['command', 'jenkins', 'travis'])
    expect((await loadJobs(config.jobs!)).has('build')).toBe(true)
    for (const action of config.actions) {
      const definition = JSON.parse(readFileSync(examples(`action-type-${action.handler}.json`), 'utf8'))
      expect({category: definition.category, provider: definition.provider, version: definition.version}).toEqual({
        category: action.category,
        provider: action.provider,
        version: action.version,
      })
      // CodePipeline's rules: at most 10 properties, a queryable one must be required and not secret
      expect(definition.configurationProperties.length).toBeLessThanOrEqual(10)
      for (const p of definition.configurationProperties) if (p.queryable) expect([p.required, p.secret]).toEqual([true, false])
    }
  })

  it('the systemd unit gives cistern longer than its stop deadline and signals only the main process', async () => {
    const unit = readFileSync(examples('cistern-codepipeline-worker.service'), 'utf8')
    const config = await loadWorkerConfig(examples('codepipeline.yml'))
    const timeoutStop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1])
    expect(timeoutStop).toBeGreaterThan(config.stopTimeout + KILL_GRACE_MS / 1000 + 5)
    expect(unit).toMatch(/^KillMode=mixed$/m)
    expect(unit).toMatch(/^Restart=on-failure$/m)
    expect(unit).toMatch(/^EnvironmentFile=/m)
    expect(unit).toMatch(/^User=cistern$/m)
  })
})

describe('the example build job, run by the command handler as configured', () => {
  const cp = mockClient(CodePipelineClient)
  const s3 = mockClient(S3Client)
  afterEach(() => {
    cp.reset()
    s3.reset()
  })

  // A source artifact as CodePipeline stores it: the repository zipped, build script included.
  // Zip entries carry no file mode here, as in many real source artifacts.
  const source = zipSync({
    'appspec.yml': strToU8('version: 0.0\nos: linux\n'),
    'ci/build.sh': strToU8('set -e\nmkdir -p dist\nprintf "built from %s\\n" "$(cat VERSION)" > dist/app.js\n'),
    VERSION: strToU8('1.2.3\n'),
  })

  /** Runs the configured command action on one job with these artifacts; returns the uploaded zip's files. */
  async function runExample(configFile: string, sourceZip: Uint8Array) {
    const config = await loadWorkerConfig(configFile)
    const action = config.actions.find((a) => a.handler === 'command')
    if (action?.handler !== 'command') throw new Error(`${configFile} has no command action`)
    const handler = new CommandHandler({
      settings: {...action.settings, workRoot: tempDir('cistern-cp-example-')},
      jobs: config.sharedJobs ?? (await loadJobs(config.jobs!)),
      region: 'eu-west-1',
    })
    cp.on(AcknowledgeJobCommand).resolves({status: 'InProgress'})
    cp.on(PutJobSuccessResultCommand).resolves({})
    cp.on(PutJobFailureResultCommand).resolves({})
    s3.on(GetObjectCommand).resolves({Body: {transformToByteArray: async () => sourceZip} as never, ContentLength: sourceZip.length})
    s3.on(PutObjectCommand).resolves({})

    const job = fakeJob({
      data: {
        actionTypeId: {category: action.category, owner: 'Custom', provider: action.provider, version: action.version},
        inputArtifacts: [{name: 'SourceOutput', location: {type: 'S3', s3Location: {bucketName: 'pipeline-bucket', objectKey: 'shop/SourceOutput/src.zip'}}}],
        outputArtifacts: [{name: 'BuildOutput', location: {type: 'S3', s3Location: {bucketName: 'pipeline-bucket', objectKey: 'shop/BuildOutput/out.zip'}}}],
      },
    })
    const never = new AbortController().signal
    const capture = captureLogger()
    const outcome = await processJob(job, {client: new CodePipelineClient({region: 'eu-west-1'}), handler, logger: capture.logger, stopping: never, deadline: never})

    const failure = cp.commandCalls(PutJobFailureResultCommand)[0]?.args[0]!.input.failureDetails
    expect(failure, capture.text()).toBeUndefined()
    expect(outcome).toBe('succeeded')
    const upload = s3.commandCalls(PutObjectCommand)[0]!.args[0].input
    expect(upload).toMatchObject({Bucket: 'pipeline-bucket', Key: 'shop/BuildOutput/out.zip'})
    return unzipSync(upload.Body as Uint8Array)
  }

  it('codepipeline.yml + jobs.yml: builds in the unzipped sources, uploads dist/ and appspec.yml as BuildOutput', async () => {
    const files = await runExample(examples('codepipeline.yml'), source)
    expect(Object.keys(files).sort()).toEqual(['appspec.yml', 'dist/app.js'])
    expect(new TextDecoder().decode(files['dist/app.js'])).toBe('built from 1.2.3\n')
  })

  it("examples/cistern.yml's codepipeline-worker section and shared build job: make dist in the sources, dist/ uploaded", async (context) => {
    if ((await execa('make', ['--version'], {reject: false}).catch(() => ({exitCode: 1}))).exitCode !== 0) return context.skip('make is not installed')
    const makefile = zipSync({
      Makefile: strToU8('dist:\n\tmkdir -p dist && cp VERSION dist/version.txt\n'),
      VERSION: strToU8('4.5.6\n'),
    })
    const files = await runExample(fileURLToPath(new URL('../../examples/cistern.yml', import.meta.url)), makefile)
    expect(Object.keys(files)).toEqual(['version.txt'])
    expect(new TextDecoder().decode(files['version.txt'])).toBe('4.5.6\n')
  })
})
