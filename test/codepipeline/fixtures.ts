import type {Job} from '@aws-sdk/client-codepipeline'
import {Writable} from 'node:stream'

import {type Logger, createLogger} from '../../src/core/log.js'

export const CREDS = {
  accessKeyId: 'ASIAFAKEACCESSKEY01',
  secretAccessKey: 'fake/secret+access/KEY0123456789abcdef',
  sessionToken: 'FAKE-SESSION-TOKEN-0123456789-abcdefghijklmnop',
}

export const ACTION_TYPE = {category: 'Build', owner: 'Custom', provider: 'cistern-test', version: '1'} as const

let counter = 0

/** A job as PollForJobs returns it, with artifact credentials and an action configuration. */
export function fakeJob(overrides: {id?: string; configuration?: Record<string, string>; continuationToken?: string; data?: Job['data']} = {}): Job {
  counter++
  const id = overrides.id ?? `job-${counter}`
  return {
    id,
    nonce: `nonce-${id}-0042`,
    accountId: '111122223333',
    data: {
      actionTypeId: {...ACTION_TYPE},
      actionConfiguration: {configuration: overrides.configuration ?? {}},
      pipelineContext: {pipelineName: 'demo-pipeline', stage: {name: 'Build'}, action: {name: 'RunIt', actionExecutionId: 'exec-1'}},
      inputArtifacts: [],
      outputArtifacts: [],
      artifactCredentials: {...CREDS},
      ...(overrides.continuationToken ? {continuationToken: overrides.continuationToken} : {}),
      ...overrides.data,
    },
  }
}

/** A JSON-lines logger at debug level whose output is kept in memory. */
export function captureLogger(): {logger: Logger; text: () => string; lines: () => Array<Record<string, unknown>>} {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(String(chunk))
      callback()
    },
  })
  const logger = createLogger({level: 'debug', format: 'json', stream})
  return {
    logger,
    text: () => chunks.join(''),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  }
}

/** The names of the commands a mocked client was sent, in order. */
export function commandNames(mock: {calls(): Array<{args: unknown[]}>}): string[] {
  return mock.calls().map((call) => (call.args[0] as object).constructor.name.replace(/Command$/, ''))
}

/** Waits until check() is true (bounded). */
export async function until(check: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

import type {JobContext} from '../../src/codepipeline/job.js'
import {silentLogger} from '../../src/core/log.js'

/** A JobContext for calling a handler directly. */
export function context(overrides: Partial<JobContext> = {}): JobContext {
  const never = new AbortController().signal
  return {
    id: 'job-ctx',
    pipelineName: 'demo-pipeline',
    configuration: {},
    inputArtifacts: [],
    outputArtifacts: [],
    logger: silentLogger,
    stopping: never,
    deadline: never,
    secrets: [],
    ...overrides,
  }
}
