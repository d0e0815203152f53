// Start-up time of the built CLI as a ratio of `node -e 0` measured in the same run (issue 15's goals:
// --help and toggle --help ≤ 2.2, spigot status --json ≤ 3.0, queue stats ≤ 2.5).
// npm run bench -- startup [runs]
import {spawnSync} from 'node:child_process'
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {fmt, ratio, table} from './lib.js'

const CLI = fileURLToPath(new URL('../bin/run.js', import.meta.url))

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function time(args, env) {
  const start = process.hrtime.bigint()
  const result = spawnSync(process.execPath, args, {env, stdio: ['ignore', 'ignore', 'pipe']})
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (result.status !== 0) throw new Error(`${args.join(' ')} exited ${result.status}: ${result.stderr}`)
  return ms
}

export default async function run(args = []) {
  const runs = Number(args[0] ?? 15)
  const dataDir = mkdtempSync(join(tmpdir(), 'cistern-bench-'))
  const env = {...process.env, CISTERN_DATA_DIR: dataDir, NO_COLOR: '1'}
  // queue stats reads an existing queue: create it once.
  time([CLI, 'queue', 'send', `sqlite:${join(dataDir, 'cistern.db')}#spigot`, '--body', 'x'], env)
  const cases = [
    ['node -e 0', ['-e', '0']],
    ['cistern --version', [CLI, '--version']],
    ['cistern --help', [CLI, '--help']],
    ['cistern spigot toggle --help', [CLI, 'spigot', 'toggle', '--help']],
    ['cistern spigot toggle --state ON (local)', [CLI, 'spigot', 'toggle', '--state', 'ON']],
    ['cistern spigot status --json', [CLI, 'spigot', 'status', '--json']],
    ['cistern queue stats sqlite:…', [CLI, 'queue', 'stats', `sqlite:${join(dataDir, 'cistern.db')}#spigot`]],
  ]
  // Warm the file cache once, then interleave the cases so drift hits them all alike.
  for (const [, argv] of cases) time(argv, env)
  const samples = new Map(cases.map(([name]) => [name, []]))
  for (let i = 0; i < runs; i++) for (const [name, argv] of cases) samples.get(name).push(time(argv, env))
  const baseline = median(samples.get('node -e 0'))
  const rows = cases.map(([name]) => {
    const ms = median(samples.get(name))
    return {command: name, 'median ms': fmt(ms), 'ratio to node -e 0': fmt(ratio(ms, baseline), 2)}
  })
  table(rows)
  return Object.fromEntries(rows.map((r) => [r.command, r]))
}
