import {readFileSync} from 'node:fs'

import {UsageError} from './errors.js'

/**
 * Secrets in one place: the values cistern knows are secret, the one function that masks them in
 * any text that leaves the process (log lines, errors, --json, job output), and the one way to read
 * a secret from a file.
 */

/** What a masked secret becomes. */
export const REDACTED = '[redacted]'

/** Shorter values are not masked: they would blank out ordinary words and numbers. */
const MIN_SECRET_LENGTH = 4
/** A run of base64 shorter than this could occur by chance in other encoded text. */
const MIN_ENCODED_RUN = 8

/**
 * Environment variables whose names say they hold a secret (GITHUB_TOKEN, JENKINS_TOKEN,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, CISTERN_HOOKS_TOKEN, GITHUB_WEBHOOK_SECRET, API_KEY…).
 */
const SECRET_VARIABLE = /TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL/i
/** …except those that say where a secret is (GITHUB_TOKEN_FILE, AWS_SHARED_CREDENTIALS_FILE): a path is not a secret. */
const LOCATION_VARIABLE = /_(FILE|PATH|DIR)$/i
/** A variable named like a secret but holding a short value (`…_TOKEN_ENABLED=true`) is a switch, not a secret. */
const MIN_VARIABLE_SECRET_LENGTH = 8

/** Field names whose values are never written, whatever they hold. */
export const SECRET_FIELD = /secret|token|password|passwd|credential|authorization|api[-_]?key|session|private/i

// Credentials inside URLs (https://user:pass@host, ?token=…) are masked even when nobody registered them.
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^/@\s:]+):[^/@\s]+@/gi
const SECRET_QUERY = /([?&](?:access_token|token|api[-_]?key|apikey|secret|password|sig|signature|x-amz-signature|x-amz-security-token)=)[^&\s"']+/gi

/** Secret values registered process-wide (read from the environment, files, config); never forgotten. */
const known = new Set<string>()
/** One expression matching every known value in every form, rebuilt after a registration. */
let knownPattern: RegExp | null | undefined

/** Mask `value` from now on, wherever it appears (and its base64 and URL-encoded forms). */
export function registerSecret(value: string | undefined): void {
  if (value === undefined || value.length < MIN_SECRET_LENGTH || known.has(value)) return
  known.add(value)
  knownPattern = undefined
}

/**
 * Register the values of every variable whose name says it is a secret. The base command calls it
 * at start-up and the job runner before each job, so what a job could print from cistern's own
 * environment is known before it runs.
 */
export function registerEnvironmentSecrets(env: NodeJS.ProcessEnv = process.env): void {
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && value.length >= MIN_VARIABLE_SECRET_LENGTH && isSecretVariable(name)) registerSecret(value)
  }
}

/** True when the variable's name says it holds a secret. */
export function isSecretVariable(name: string): boolean {
  return SECRET_VARIABLE.test(name) && !LOCATION_VARIABLE.test(name)
}

/**
 * The one masking function for text that leaves cistern: every known secret value, and its base64
 * (padded, unpadded, URL-safe) and URL-encoded forms, becomes `[redacted]`; so do passwords in URLs
 * and token-like query parameters. `extra` adds values for this call only (one job's credentials).
 */
export function maskSecrets(text: string, extra: readonly string[] = []): string {
  let out = text.replace(URL_PASSWORD, `$1:${REDACTED}@`).replace(SECRET_QUERY, `$1${REDACTED}`)
  const pattern = knownSecretsPattern()
  if (pattern) out = out.replace(pattern, REDACTED)
  if (extra.length > 0) {
    const scoped = extraPattern(extra)
    if (scoped) out = out.replace(scoped, REDACTED)
  }
  return out
}

/**
 * A deep copy fit to leave the process: fields whose names say they are secret become
 * `[redacted]`, every string is masked, errors become {name, message}.
 */
export function redact(value: unknown, extra: readonly string[] = [], depth = 0): unknown {
  if (depth > 6) return '[deep]'
  if (typeof value === 'string') return maskSecrets(value, extra)
  if (value instanceof Error) return {name: value.name, message: maskSecrets(value.message, extra)}
  if (Array.isArray(value)) return value.map((item: unknown) => redact(item, extra, depth + 1))
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) {
      out[key] = SECRET_FIELD.test(key) ? REDACTED : redact(item, extra, depth + 1)
    }
    return out
  }
  return value
}

/**
 * A deep copy of JSON-like data with every string masked (maskSecrets) and nothing else changed:
 * what `--json` prints. Values with toJSON (dates) are converted first, as JSON.stringify would.
 */
export function maskDeep(value: unknown): unknown {
  if (typeof value === 'string') return maskSecrets(value)
  if (typeof value !== 'object' || value === null) return value
  const plain: unknown = 'toJSON' in value && typeof value.toJSON === 'function' ? (value.toJSON as () => unknown)() : value
  if (plain !== value) return maskDeep(plain)
  if (Array.isArray(value)) return value.map((item: unknown) => maskDeep(item))
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, maskDeep(item)]))
}

function knownSecretsPattern(): RegExp | null {
  knownPattern ??= patternOf([...known])
  return knownPattern
}

/** Per-call secrets repeat (one job's logger masks the same few on every line): keep a few compiled. */
const extraPatterns = new Map<string, RegExp | null>()
function extraPattern(extra: readonly string[]): RegExp | null {
  const key = extra.join('\0')
  let pattern = extraPatterns.get(key)
  if (pattern === undefined) {
    if (extraPatterns.size >= 32) extraPatterns.clear()
    pattern = patternOf(extra)
    extraPatterns.set(key, pattern)
  }
  return pattern
}

/**
 * The forms a secret takes on its way out: as is, URL-encoded, and base64 (standard and URL-safe).
 * Inside a longer encoded text (a Basic auth header of user:token) the secret's encoding depends on
 * its offset modulo 3: for each offset, the run of base64 characters that only the secret's bytes
 * determine is a form too, so at most two bytes at either end stay visible.
 */
function formsOf(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8')
  const base64 = bytes.toString('base64')
  const forms = [secret, encodeURIComponent(secret), base64, base64.replace(/=+$/, ''), bytes.toString('base64url')]
  for (const offset of [0, 1, 2]) {
    const shifted = Buffer.concat([Buffer.alloc(offset), bytes])
    const from = offset === 0 ? 0 : 4
    const to = Math.floor(shifted.length / 3) * 4
    if (to - from < MIN_ENCODED_RUN) continue
    forms.push(shifted.toString('base64').slice(from, to), shifted.toString('base64url').slice(from, to))
  }
  return forms
}

/** One alternation, longest form first, so a padded base64 form is replaced whole. */
function patternOf(secrets: readonly string[]): RegExp | null {
  const forms = new Set<string>()
  for (const secret of secrets) {
    if (secret.length < MIN_SECRET_LENGTH) continue
    for (const form of formsOf(secret)) if (form.length >= MIN_SECRET_LENGTH) forms.add(form)
  }
  if (forms.size === 0) return null
  const sorted = [...forms].sort((a, b) => b.length - a.length)
  return new RegExp(sorted.map(escapeRegExp).join('|'), 'g')
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

export interface SecretFileOptions {
  /** What the file holds, for messages: "webhook secret", "GitHub token". */
  what: string
  /** Where the path came from, for the fix: "--webhook-secret-file", "spigot.webhookSecretFile". */
  source: string
}

/**
 * Read a secret from a file, the one way every piece does it: the value is the file's content with
 * surrounding whitespace (the trailing newline of `echo token > file`, a Windows CR) removed; an
 * empty file, or one with several lines, is a usage error naming the file and where its path came
 * from. The value is registered for masking before it is returned.
 */
export function readSecretFile(path: string, {what, source}: SecretFileOptions): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new UsageError(`cannot read the ${what} file ${path} (${fileProblem(error)})`, `check ${source}`, error)
  }
  const value = text.replace(/^\uFEFF/, '').trim()
  if (!value) throw new UsageError(`the ${what} file ${path} is empty`, `write the ${what} into it (${source})`)
  if (/[\r\n]/.test(value)) {
    throw new UsageError(`the ${what} file ${path} holds several lines`, `a secret file holds the ${what} alone, on one line (${source})`)
  }
  registerSecret(value)
  return value
}

function fileProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  switch (code) {
    case 'ENOENT':
      return 'ENOENT: no such file'
    case 'EACCES':
    case 'EPERM':
      return `${code}: permission denied`
    case 'EISDIR':
      return 'EISDIR: it is a directory'
    default:
      return code ?? String(error)
  }
}
