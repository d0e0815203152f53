// The committed oclif.manifest.json must describe the same commands as the one `npm run build` just
// wrote. Compared as data with keys sorted: oclif writes commands in directory-listing order, which
// differs between machines.
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'

const sorted = (value) =>
  Array.isArray(value)
    ? value.map(sorted)
    : value && typeof value === 'object'
      ? Object.fromEntries(Object.keys(value).sort().map((key) => [key, sorted(value[key])]))
      : value

const committed = JSON.parse(execFileSync('git', ['show', 'HEAD:oclif.manifest.json'], {encoding: 'utf8'}))
const built = JSON.parse(readFileSync('oclif.manifest.json', 'utf8'))
const a = sorted(committed)
const b = sorted(built)
if (JSON.stringify(a) !== JSON.stringify(b)) {
  const ids = (m) => Object.keys(m.commands ?? {})
  const changed = [...new Set([...ids(a), ...ids(b)])].filter((id) => JSON.stringify(a.commands?.[id]) !== JSON.stringify(b.commands?.[id]))
  console.error(`oclif.manifest.json is stale (${changed.join(', ') || 'version or layout'}): run 'npm run build' and commit it`)
  process.exit(1)
}
console.log('oclif.manifest.json is current')
