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

export class CisternError extends Error {
  readonly exitCode: ExitCode
  readonly fix?: string

  constructor(message: string, options: {exitCode?: ExitCode; fix?: string; cause?: unknown} = {}) {
    super(message, {cause: options.cause})
    this.name = 'CisternError'
    this.exitCode = options.exitCode ?? ExitCode.failure
    this.fix = options.fix
  }

  /** The one line shown to the operator. */
  get oneLine(): string {
    return this.fix ? `${this.message} — ${this.fix}` : this.message
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

/** A target (Jenkins, GitHub, a queue service) is unhealthy or unreachable: exit 3. */
export class TargetUnhealthyError extends CisternError {
  constructor(message: string, fix?: string, cause?: unknown) {
    super(message, {exitCode: ExitCode.unhealthy, fix, cause})
    this.name = 'TargetUnhealthyError'
  }
}

export function isCisternError(error: unknown): error is CisternError {
  return error instanceof CisternError
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}
