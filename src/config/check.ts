import {readFile} from 'node:fs/promises'
import {z} from 'zod'

import {loadConfig} from '../core/config.js'
import {type ConfigKind, detectKind, validateAs} from './kinds.js'

export interface ConfigCheckResult {
  file: string
  kind: ConfigKind
  ok: true
  /** What the piece accepts but ignores (e.g. an unknown key in a .sqslistener). */
  warnings?: string[]
}

/**
 * Validate one file as `kind`, or as the kind its content and name suggest. A file that is not
 * valid throws the ConfigError (file:line key: what was expected) its piece would throw at start.
 */
export async function checkConfig(file: string, kind?: ConfigKind): Promise<ConfigCheckResult> {
  // The core loader words an unreadable file or bad YAML the way every command does.
  const data = await loadConfig(file, z.unknown())
  const checkedAs = kind ?? detectKind(data, file)
  const warnings = validateAs(checkedAs, await readFile(file, 'utf8'), file)
  return {file, kind: checkedAs, ok: true, ...(warnings.length > 0 ? {warnings} : {})}
}
