#!/usr/bin/env node
// npm run bench -- <name> [args…]: runs bench/<name>.js (all of them without a name).
// Benchmarks import the built code from dist/: run `npm run build` first.
// bench/baselines/ holds the processes the queue benchmark starts (not benchmarks of their own):
// the minimal durable drain and intake (issue 15's baselines), a sink, a bare server, and cistern's
// queue in the same harness. `npm run bench -- queue` runs them against each other in one run.
import {readdirSync} from 'node:fs'

// As bin/run.js: the AWS SDK's Node 22 notice is noise in benchmark output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

/** Modules in bench/ that are not benchmarks. */
const HELPERS = ['run.js', 'lib.js']

const [name, ...args] = process.argv.slice(2)
const here = new URL('.', import.meta.url)
const all = readdirSync(here)
  .filter((f) => f.endsWith('.js') && !HELPERS.includes(f))
  .map((f) => f.slice(0, -3))
const names = name ? [name] : all
for (const bench of names) {
  if (!all.includes(bench)) {
    console.error(`unknown benchmark "${bench}"; have: ${all.join(', ')}`)
    process.exit(2)
  }
  console.log(`\n## ${bench}  (node ${process.version}, ${new Date().toISOString()})`)
  const mod = await import(new URL(`${bench}.js`, here))
  await mod.default(args)
}
