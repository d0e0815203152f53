import {execa, type Options} from 'execa'
import {fileURLToPath} from 'node:url'

export const CLI = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

/** Run the built CLI as a user would; never throws on a non-zero exit. */
export function cistern(args: string[], options: Options = {}) {
  return execa('node', [CLI, ...args], {reject: false, timeout: 60_000, ...options, env: {NO_COLOR: '1', ...options.env}})
}
