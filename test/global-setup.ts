import {existsSync} from 'node:fs'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

/**
 * Runs once before the suite: every test process gets its own data dir so nothing touches the
 * operator's ~/.local/share/cistern, and the e2e tests need the built CLI (npm test builds it).
 */
export default function setup() {
  if (!existsSync(new URL('../dist/commands', import.meta.url))) {
    throw new Error('dist/ is missing: run `npm test` (it builds first) or `npm run build`')
  }
  const dir = mkdtempSync(join(tmpdir(), 'cistern-test-'))
  process.env.CISTERN_DATA_DIR = dir
  process.env.CISTERN_LOG_FORMAT ??= 'json'
  return () => rmSync(dir, {recursive: true, force: true})
}
