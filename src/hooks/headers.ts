/**
 * Headers that carry credentials (issue 12: no stored credentials). A captured webhook keeps their
 * names with `[redacted]` as the value, so neither the store nor the executions API ever holds
 * them; a task shows an action's secret header by name only; an http action takes a secret
 * header's value from the service's environment or a file (header_from_env, header_from_file).
 */
import {REDACTED, SECRET_FIELD, registerSecret} from '../core/secrets.js'
import type {Action, HttpAction, Task} from './model.js'

/** Names that carry credentials whatever their value: auth schemes, cookies, signatures, API keys. */
const SECRET_HEADER = /^(authorization|proxy-authorization|cookie|set-cookie|x-hub-signature(-256)?|x-api-key|x[-_]auth[-_]header|x-gitlab-token)$|signature|cookie|auth/i

/** Header names seen, and whether each is secret: intake asks for every header of every webhook. */
const known = new Map<string, boolean>()

/** True for a header whose value is a credential (Authorization, Cookie, X-Hub-Signature-256, X-Api-Key, *token*, *secret*…). */
export function isSecretHeader(name: string): boolean {
  let secret = known.get(name)
  if (secret === undefined) {
    secret = SECRET_HEADER.test(name) || SECRET_FIELD.test(name)
    if (known.size < 1000) known.set(name, secret)
  }
  return secret
}

/** The headers with every secret one's value replaced by `[redacted]` (names kept: they tell what was sent). */
export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) out[name] = isSecretHeader(name) ? REDACTED : value
  return out
}

/** True for a header value that was redacted at intake: it is not forwarded (the literal would be a lie). */
export function isRedacted(value: string): boolean {
  return value === REDACTED
}

/** Plain `headers:` entries of an http action that name a secret (refused in new tasks, masked in old ones). */
export function secretPlainHeaders(action: HttpAction): string[] {
  return Object.keys(action.headers ?? {}).filter(isSecretHeader)
}

/** An action as the API shows it: a secret header given as a plain value (a task stored before this rule) shows its name only. */
export function publicAction(action: Action): Action {
  if (action.type !== 'http' || secretPlainHeaders(action).length === 0) return action
  return {...action, headers: redactHeaders(action.headers ?? {})}
}

/** A task as the API shows it. */
export function publicTask<T extends Task>(task: T): T {
  const action = publicAction(task.config.action)
  return action === task.config.action ? task : {...task, config: {...task.config, action}}
}

/**
 * Mask, from now on, the values of the variables a task's http action takes secret headers from:
 * their names need not look secret (JENKINS_AUTH), and a job run with `inheritEnv: all` sees them.
 * The service calls it for every task at start and for each task created or changed.
 */
export function registerHeaderSecrets(task: Task, env: NodeJS.ProcessEnv = process.env): void {
  const action = task.config.action
  if (action.type !== 'http') return
  for (const variable of Object.values(action.header_from_env ?? {})) registerSecret(env[variable])
}
