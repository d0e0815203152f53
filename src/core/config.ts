// CONTRACT STUB — the implementation is being written (helper "core-consume"). Signatures are fixed.
import type {ZodType} from 'zod'

/**
 * Load a YAML file and validate it with a zod schema. Any error is a ConfigError naming the file,
 * the line and the key, and saying what was expected:
 *   cistern.yml:12 spigot.jenkins.url: expected a URL, got "jenkins"
 */
export async function loadConfig<T>(_path: string, _schema: ZodType<T>): Promise<T> {
  throw new Error('loadConfig: not implemented yet')
}

/** Same for text already read (e.g. a request body); `source` names it in errors. */
export function parseConfig<T>(_text: string, _schema: ZodType<T>, _source: string): T {
  throw new Error('parseConfig: not implemented yet')
}
