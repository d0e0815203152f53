/**
 * Two kinds of error. A CisternError is one the operator can fix (bad flag, bad config, missing
 * credentials, unreachable target): it prints as one line with the fix and maps to an exit code.
 * Anything else is a bug: its stack is printed only with --debug.
 */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  unhealthy: 3,
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/**
 * A run that completed can still end badly: something went dead, work remains, a target was down.
 * Results that carry this are printed (or returned as --json) first; then the base command writes
 * each problem as one line to stderr and exits with the code. Commands never exit by themselves.
 */
export interface RunOutcome {
  exitCode: ExitCode
  /** One line each: why exitCode is not 0 (empty when it is). */
  problems: string[]
}

/** One reason a run did not end well, with the exit code it calls for. */
export interface Problem {
  exitCode: Exclude<ExitCode, 0>
  line: string
}

/** When several apply, the most specific wins: 2 (usage/config), then 3 (a target was unhealthy), then 1 (docs/delivery.md). */
const PRECEDENCE: readonly ExitCode[] = [ExitCode.usage, ExitCode.unhealthy, ExitCode.failure, ExitCode.ok]

export function mostSpecificExitCode(codes: Iterable<ExitCode>): ExitCode {
  let best: ExitCode = ExitCode.ok
  for (const code of codes) if (PRECEDENCE.indexOf(code) < PRECEDENCE.indexOf(best)) best = code
  return best
}

/** The outcome of a run from its problems (none: exit 0); the line that decided the code comes first. */
export function runOutcome(problems: readonly Problem[]): RunOutcome {
  const ordered = [...problems].sort((a, b) => PRECEDENCE.indexOf(a.exitCode) - PRECEDENCE.indexOf(b.exitCode))
  return {exitCode: mostSpecificExitCode(ordered.map((problem) => problem.exitCode)), problems: ordered.map((problem) => problem.line)}
}

/** True for a result that carries its outcome ({exitCode, problems} among its fields). */
export function carriesOutcome(value: unknown): value is RunOutcome {
  if (typeof value !== 'object' || value === null) return false
  const {exitCode, problems} = value as Partial<Record<keyof RunOutcome, unknown>>
  return (Object.values(ExitCode) as unknown[]).includes(exitCode) && Array.isArray(problems) && problems.every((line) => typeof line === 'string')
}

export class CisternError extends Error {
  readonly exitCode: ExitCode
  readonly fix?: string

  constructor(message: string, options: {exitCode?: ExitCode; fix?: string; cause?: unknown} = {}) {
    super(message, {cause: options.cause})
    this.name = 'CisternError'
    this.exitCode = options.exitCode ?? ExitCode.failure
    this.fix = options.fix
  }

  /** What went wrong, without the fix. */
  get summary(): string {
    return this.message
  }

  /** The one line shown to the operator. */
  get oneLine(): string {
    return this.fix ? `${this.summary} — ${this.fix}` : this.summary
  }
}

/** Bad flag, bad URL, bad config file: exit 2. */
export class UsageError extends CisternError {
  constructor(message: string, fix?: string, cause?: unknown) {
    super(message, {exitCode: ExitCode.usage, fix, cause})
    this.name = 'UsageError'
  }
}

/** A config file that does not parse or validate: names the file, line and key. Exit 2. */
export class ConfigError extends UsageError {
  constructor(
    message: string,
    readonly file?: string,
    readonly lineNumber?: number,
    readonly key?: string,
  ) {
    super(message)
    this.name = 'ConfigError'
  }
}

/**
 * A flag value that does not parse: names the flag and what was expected (exit 2). oclif rewrites
 * the message of an error thrown by a flag parser ("Parsing --rate \n\t…"), so the line the
 * operator sees is kept apart, in `reason`.
 */
export class FlagValueError extends UsageError {
  readonly reason: string

  constructor(
    readonly flag: string,
    expected: string,
    readonly input: string,
  ) {
    const reason = `--${flag}: expected ${expected}, got ${JSON.stringify(input)}`
    super(reason)
    this.name = 'FlagValueError'
    this.reason = reason
  }

  override get summary(): string {
    return this.reason
  }
}

/** A target (Jenkins, GitHub, a queue service) is unhealthy or unreachable: exit 3. */
export class TargetUnhealthyError extends CisternError {
  constructor(message: string, fix?: string, cause?: unknown) {
    super(message, {exitCode: ExitCode.unhealthy, fix, cause})
    this.name = 'TargetUnhealthyError'
  }
}

/**
 * The reason the stop signal aborts with (SIGINT/SIGTERM): not a failure. Loops stop receiving,
 * finish or release in-flight work, and exit 0. The message is the signal's name.
 */
export class StopSignalError extends CisternError {
  constructor(readonly signal: NodeJS.Signals) {
    super(signal, {exitCode: ExitCode.ok})
    this.name = 'StopSignalError'
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}

// --- the network's failures ------------------------------------------------------------------------

/**
 * How a request failed before any answer came (docs/delivery.md: each means "target down"):
 * refused (nothing listens, host or network unreachable), reset (the connection dropped), dns (the
 * name does not resolve), timeout (no answer in time), tls (the certificate or handshake failed).
 */
export type TransportFailureKind = 'refused' | 'reset' | 'dns' | 'timeout' | 'tls'

export interface TransportFailure {
  kind: TransportFailureKind
  /** The system or library code: ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT… */
  code: string
  /** host:port when the error says. */
  where?: string
}

const TRANSPORT_CODES: Partial<Record<string, TransportFailureKind>> = {
  ECONNREFUSED: 'refused',
  EHOSTUNREACH: 'refused',
  ENETUNREACH: 'refused',
  EHOSTDOWN: 'refused',
  EADDRNOTAVAIL: 'refused',
  ECONNRESET: 'reset',
  EPIPE: 'reset',
  ECONNABORTED: 'reset',
  UND_ERR_SOCKET: 'reset',
  UND_ERR_CLOSED: 'reset',
  ENOTFOUND: 'dns',
  EAI_AGAIN: 'dns',
  EAI_FAIL: 'dns',
  EAI_NONAME: 'dns',
  ETIMEDOUT: 'timeout',
  ESOCKETTIMEDOUT: 'timeout',
  UND_ERR_CONNECT_TIMEOUT: 'timeout',
  UND_ERR_HEADERS_TIMEOUT: 'timeout',
  UND_ERR_BODY_TIMEOUT: 'timeout',
  TimeoutError: 'timeout',
  EPROTO: 'tls',
  CERT_HAS_EXPIRED: 'tls',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'tls',
  SELF_SIGNED_CERT_IN_CHAIN: 'tls',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'tls',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'tls',
  ERR_TLS_CERT_ALTNAME_INVALID: 'tls',
}

const TRANSPORT_WORDS: Record<TransportFailureKind, string> = {
  refused: 'connection refused',
  reset: 'connection reset',
  dns: 'name not resolved',
  timeout: 'no answer in time',
  tls: 'TLS handshake failed',
}

/**
 * The transport failure behind an error, looking through `cause` chains and AggregateErrors (the
 * AWS SDK, undici and Node's happy-eyeballs connect wrap the system error); undefined when the
 * error is something else. A wrapper that kept only the text is read for the code as a last resort.
 */
export function transportFailureOf(error: unknown): TransportFailure | undefined {
  const seen = new Set<unknown>()
  const queue: unknown[] = [error]
  while (queue.length > 0) {
    const current = queue.shift()
    if (typeof current !== 'object' || current === null || seen.has(current)) continue
    seen.add(current)
    const fields = current as {code?: unknown; name?: unknown; address?: unknown; port?: unknown; hostname?: unknown; cause?: unknown; errors?: unknown}
    for (const code of [fields.code, fields.name]) {
      const kind = typeof code === 'string' ? TRANSPORT_CODES[code] : undefined
      if (kind && typeof code === 'string') return {kind, code, ...whereOf(fields)}
    }
    queue.push(fields.cause)
    if (Array.isArray(fields.errors)) queue.push(...(fields.errors as unknown[]))
  }
  const text = /\b(E[A-Z]{4,}|UND_ERR_[A-Z_]+)\b(?: ([\w.:[\]-]+:\d+))?/.exec(errorMessage(error))
  const code = text?.at(1)
  const kind = code === undefined ? undefined : TRANSPORT_CODES[code]
  const where = text?.at(2)
  return kind && code ? {kind, code, ...(where ? {where} : {})} : undefined
}

/** "connection refused by 127.0.0.1:9", "name not resolved (jenkins.internal)". */
export function describeTransportFailure(failure: TransportFailure): string {
  const words = TRANSPORT_WORDS[failure.kind]
  if (!failure.where) return `${words} (${failure.code})`
  return failure.kind === 'refused' || failure.kind === 'reset' ? `${words} by ${failure.where}` : `${words} (${failure.where})`
}

function whereOf(fields: {address?: unknown; port?: unknown; hostname?: unknown}): {where?: string} {
  const host = typeof fields.address === 'string' ? fields.address : typeof fields.hostname === 'string' ? fields.hostname : undefined
  if (!host) return {}
  return {where: typeof fields.port === 'number' ? `${host}:${fields.port}` : host}
}
