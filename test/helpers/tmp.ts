import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll} from 'vitest'

/** A temp dir removed after the file's tests. */
export function tempDir(prefix = 'cistern-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))
  return dir
}
