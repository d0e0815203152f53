// Start-up (issue 15): a command loads only what it uses. Runs the built CLI (npm run build first)
// with test/fixtures/loaded-modules.mjs, which lists every module the process loads.
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {describe, expect, it} from 'vitest'

import {CLI, cistern} from '../helpers/cli.js'
import {tempDir} from '../helpers/tmp.js'

const HOOK = fileURLToPath(new URL('../fixtures/loaded-modules.mjs', import.meta.url))
const DIST = pathToFileURL(join(CLI, '../../dist/')).href

/** What a module is: a package name (`@aws-sdk/client-sqs`), `dist/<file>` for ours, or the URL. */
function moduleName(url: string): string {
  if (url.startsWith(DIST)) return `dist/${url.slice(DIST.length)}`
  return /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1] ?? url
}

const dir = tempDir('cistern-startup-')
let runs = 0

/** Run the CLI and return the names of the modules it loaded. */
async function loadedBy(args: string[], env: Record<string, string> = {}): Promise<Set<string>> {
  const file = join(dir, `loaded-${++runs}.txt`)
  writeFileSync(file, '')
  const result = await cistern(args, {env: {CISTERN_DATA_DIR: dir, LOADED_MODULES: file, NODE_OPTIONS: `--import ${pathToFileURL(HOOK).href}`, ...env}})
  expect(result.exitCode, String(result.stderr)).toBe(0)
  return new Set(readFileSync(file, 'utf8').split('\n').filter(Boolean).map(moduleName))
}

// Loaded only by the paths that use them: config files, the drain, the SDKs, outgoing HTTP, the servers.
const HEAVY = ['zod', 'yaml', 'undici', 'node:internal/deps/undici', 'p-queue', 'fastify', 'ioredis', '@octokit/rest', '@aws-sdk/client-sqs', '@aws-sdk/client-api-gateway']

describe('start-up loads only what a command uses', () => {
  it('spigot status --json without a config file: the embedded queue, none of the heavy modules', async () => {
    const loaded = await loadedBy(['spigot', 'status', '--json'])
    // The hook sees what the command does load (status reads the embedded queue).
    expect(loaded).toContain('dist/commands/spigot/status.js')
    expect(loaded).toContain('better-sqlite3')
    expect(HEAVY.filter((name) => loaded.has(name))).toEqual([])
    expect(loaded).not.toContain('dist/spigot/drain.js')
  })

  it('spigot status with a config file loads yaml and zod to read it', async () => {
    const config = join(dir, 'cistern.yml')
    writeFileSync(config, 'spigot:\n  unrouted: accept\n')
    const loaded = await loadedBy(['spigot', 'status', '--json', '--config', config])
    expect(loaded).toContain('yaml')
    expect(loaded).toContain('zod')
  })

  it('spigot toggle on the local backend and queue stats load none of the heavy modules', async () => {
    const toggle = await loadedBy(['spigot', 'toggle', '--state', 'OFF'])
    expect(toggle).toContain('better-sqlite3')
    expect(HEAVY.filter((name) => toggle.has(name))).toEqual([])
    const stats = await loadedBy(['queue', 'stats', `sqlite:${join(dir, 'cistern.db')}#spigot`])
    expect(stats).toContain('dist/commands/queue/stats.js')
    expect(HEAVY.filter((name) => stats.has(name))).toEqual([])
  })

  it('--help and a command’s --help load no command module (the oclif manifest is enough)', async () => {
    for (const args of [['--help'], ['spigot', 'toggle', '--help']]) {
      const loaded = await loadedBy(args)
      expect(loaded, args.join(' ')).toContain('@oclif/core')
      expect([...loaded].filter((name) => name.startsWith('dist/') || HEAVY.includes(name)), args.join(' ')).toEqual([])
    }
  })
})
