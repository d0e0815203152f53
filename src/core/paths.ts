import {homedir} from 'node:os'
import {join} from 'node:path'

/**
 * Where cistern keeps its embedded state (the SQLite queue file, the local spigot state).
 * CISTERN_DATA_DIR wins (tests, containers); else the XDG data dir oclif would pick.
 */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CISTERN_DATA_DIR) return env.CISTERN_DATA_DIR
  // XDG: an empty XDG_DATA_HOME counts as unset, whoever calls this.
  // eslint-disable-next-line @typescript-eslint/prefer-nullish-coalescing
  const xdg = env.XDG_DATA_HOME || join(homedir(), '.local', 'share')
  return join(xdg, 'cistern')
}

/** The embedded database file every piece shares by default. */
export function defaultDbPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(dataDir(env), 'cistern.db')
}

/** `sqlite:<data dir>/cistern.db#<name>`: the default queue of a piece. */
export function defaultQueueUrl(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return `sqlite:${defaultDbPath(env)}#${name}`
}
