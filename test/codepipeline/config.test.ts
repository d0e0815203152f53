import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {actionKey, loadWorkerConfig} from '../../src/codepipeline/config.js'
import {buildActions} from '../../src/codepipeline/worker.js'
import {ConfigError} from '../../src/core/errors.js'
import {tempDir} from '../helpers/tmp.js'

const dir = tempDir('cistern-cp-config-')
let n = 0
function file(text: string, name = `cfg-${++n}.yml`): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

writeFileSync(join(dir, 'jobs.yml'), 'build:\n  command: make build\n')

const FULL = `
concurrency: 6
pollInterval: {min: 2, max: 20}
jobs: jobs.yml
stopTimeout: 90
actions:
  - category: Build
    provider: cistern-make
    version: 1
    handler: command
    concurrency: 3
    queryParam: {Team: blue}
    settings:
      job: build
      outputs: {Built: [dist]}
  - category: Build
    provider: cistern-jenkins
    version: "2"
    handler: jenkins
    secretConfiguration: [DeployKey]
    settings: {url: "https://jenkins.example.com/", waitSeconds: 10}
  - category: Test
    provider: cistern-travis
    version: "1"
    handler: travis
    settings: {repo: acme/app}
`

describe('codepipeline-worker config', () => {
  it('loads codepipeline.yml with defaults, resolving jobs relative to the file', async () => {
    const config = await loadWorkerConfig(file(FULL))
    expect(config.concurrency).toBe(6)
    expect(config.pollInterval).toEqual({min: 2, max: 20})
    expect(config.stopTimeout).toBe(90)
    expect(config.jobs).toBe(join(dir, 'jobs.yml'))
    expect(config.actions.map(actionKey)).toEqual([
      'Custom/Build/cistern-make/1?Team=blue',
      'Custom/Build/cistern-jenkins/2',
      'Custom/Test/cistern-travis/1',
    ])
    const [command, jenkins, travis] = config.actions
    expect(command).toMatchObject({owner: 'Custom', concurrency: 3, settings: {job: 'build', keepLines: 20, outputs: {Built: ['dist']}}})
    expect(jenkins).toMatchObject({concurrency: 1, secretConfiguration: ['DeployKey'], settings: {userEnv: 'JENKINS_USER', tokenEnv: 'JENKINS_TOKEN', waitSeconds: 10}})
    expect(travis).toMatchObject({settings: {endpoint: 'https://api.travis-ci.com', tokenEnv: 'TRAVIS_TOKEN'}})
  })

  it('reads the codepipeline-worker section of a shared cistern.yml', async () => {
    const shared = 'spigot:\n  anything: here\ncodepipeline-worker:\n' + FULL.split('\n').map((line) => '  ' + line).join('\n')
    const config = await loadWorkerConfig(file(shared))
    expect(config.actions).toHaveLength(3)
    expect(config.jobs).toBe(join(dir, 'jobs.yml'))
  })

  it('in cistern.yml, command actions can use the top-level jobs: table', async () => {
    const shared = [
      'jobs:',
      '  build: {command: make build}',
      'codepipeline-worker:',
      '  actions:',
      '    - {category: Build, provider: p, version: "1", handler: command, settings: {job: build}}',
      '',
    ].join('\n')
    const config = await loadWorkerConfig(file(shared))
    expect(config.jobs).toBeUndefined()
    expect(config.sharedJobs?.get('build')?.argv).toEqual(['make', 'build'])
    const actions = await buildActions(config, {env: {}})
    expect(actions).toHaveLength(1)

    const missing = 'codepipeline-worker:\n  actions:\n    - {category: Build, provider: p, version: "1", handler: command, settings: {job: build}}\n'
    await expect(loadWorkerConfig(file(missing))).rejects.toThrow(/neither codepipeline-worker.jobs .* nor a top-level jobs: table/)
    const unknown = shared.replace('settings: {job: build}', 'settings: {job: deploy}')
    await expect(buildActions(await loadWorkerConfig(file(unknown)), {env: {}})).rejects.toThrow(/job "deploy" is not defined in the jobs: table of/)
  })

  it.each([
    ['a literal token in settings', 'actions:\n  - {category: Build, provider: p, version: "1", handler: jenkins, settings: {url: "https://j.example", token: abc}}\n', /token: a literal secret is not allowed/],
    ['an unknown handler', 'actions:\n  - {category: Build, provider: p, version: "1", handler: gitlab}\n', /handler/],
    ['an unknown category', 'actions:\n  - {category: Lint, provider: p, version: "1", handler: travis, settings: {repo: a/b}}\n', /category/],
    ['a command action without jobs:', 'actions:\n  - {category: Build, provider: p, version: "1", handler: command, settings: {job: build}}\n', /jobs/],
    ['pollInterval.max below min', 'pollInterval: {min: 10, max: 1}\nactions:\n  - {category: Build, provider: p, version: "1", handler: travis, settings: {repo: a/b}}\n', /max/],
    ['duplicate action types', 'actions:\n  - {category: Build, provider: p, version: "1", handler: travis, settings: {repo: a/b}}\n  - {category: Build, provider: p, version: "1", handler: travis, settings: {repo: c/d}}\n', /duplicate/],
    ['no actions', 'actions: []\n', /at least 1/],
    ['a provider CodePipeline would refuse', 'actions:\n  - {category: Build, provider: "has space", version: "1", handler: travis, settings: {repo: a/b}}\n', /provider/],
    ['a non-http Jenkins URL', 'actions:\n  - {category: Build, provider: p, version: "1", handler: jenkins, settings: {url: "ftp://j"}}\n', /url/],
  ])('rejects %s with a ConfigError naming the file and line', async (_what, text, pattern) => {
    const path = file(text)
    const error = await loadWorkerConfig(path).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toContain(path)
    expect((error as ConfigError).message).toMatch(pattern)
    expect((error as ConfigError).exitCode).toBe(2)
  })

  it('a missing file is a ConfigError', async () => {
    await expect(loadWorkerConfig(join(dir, 'nope.yml'))).rejects.toBeInstanceOf(ConfigError)
  })
})

describe('buildActions', () => {
  it('needs the Jenkins user and token and the Travis token in the environment', async () => {
    const config = await loadWorkerConfig(file(FULL))
    await expect(buildActions(config, {env: {}})).rejects.toThrow(/JENKINS_USER is not set/)
    await expect(buildActions(config, {env: {JENKINS_USER: 'u'}})).rejects.toThrow(/JENKINS_TOKEN is not set/)
    await expect(buildActions(config, {env: {JENKINS_USER: 'u', JENKINS_TOKEN: 't0ken-value'}})).rejects.toThrow(/TRAVIS_TOKEN is not set/)
    const actions = await buildActions(config, {env: {JENKINS_USER: 'u', JENKINS_TOKEN: 't0ken-value', TRAVIS_TOKEN: 'tr-value'}})
    expect(actions).toHaveLength(3)
  })

  it('a command action naming a job jobs.yml lacks is a ConfigError', async () => {
    const config = await loadWorkerConfig(file('jobs: jobs.yml\nactions:\n  - {category: Build, provider: p, version: "1", handler: command, settings: {job: deploy}}\n'))
    const error = await buildActions(config, {env: {}}).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(/job "deploy" is not defined/)
  })
})
