import {Command, Errors, Flags} from '@oclif/core'
import {format} from 'node:util'

import {CisternError, ExitCode, FlagValueError, type RunOutcome, StopSignalError, carriesOutcome, describeTransportFailure, errorMessage, type TransportFailure, transportFailureOf} from './errors.js'
import {LOG_LEVELS, type LogFormat, type LogLevel, type Logger, createLogger} from './log.js'
import {maskDeep, maskSecrets, redact, registerEnvironmentSecrets} from './secrets.js'
import {unsetEmptyVariables} from './settings.js'

/**
 * The one base command. It gives every command: `--json` (what run() returns is the JSON output),
 * logging flags, `--debug`, the error → exit-code mapping and a stop signal for foreground loops.
 *
 * Exit codes are decided here only. A command returns its result; a result that carries a
 * RunOutcome ({exitCode, problems} among its fields) is printed first, then each problem goes to
 * stderr as one line and the process exits with the code. A command that cannot go on throws: a
 * CisternError prints its one line with the fix and exits with its code; a network failure is
 * exit 3 (a target is unreachable); anything else is a bug, with its stack only under --debug.
 * Commands never write stderr, call exit() or set process.exitCode themselves.
 */
export abstract class CisternCommand<T> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    'log-level': Flags.option({
      options: LOG_LEVELS,
      default: 'info' as LogLevel,
      env: 'CISTERN_LOG_LEVEL',
      summary: 'Lowest level of log lines to write (to stderr).',
      helpGroup: 'GLOBAL',
    })(),
    'log-format': Flags.option({
      options: ['human', 'json'] as const,
      env: 'CISTERN_LOG_FORMAT',
      summary: 'Log line format; default human on a TTY, JSON lines otherwise.',
      helpGroup: 'GLOBAL',
    })(),
    debug: Flags.boolean({
      default: false,
      env: 'CISTERN_DEBUG',
      summary: 'Print stack traces of unexpected errors.',
      helpGroup: 'GLOBAL',
    }),
  }

  protected log_?: Logger
  private debugEnabled = false
  private stopController?: AbortController

  public override async init(): Promise<void> {
    // Before parsing: an empty variable is unset (core/settings.ts), and the values of variables
    // named like secrets are masked in every line from here on.
    unsetEmptyVariables()
    registerEnvironmentSecrets()
    // Known before parsing, so that a parse error is reported with the stack when asked for.
    this.debugEnabled = this.argv.includes('--debug') || isTruthy(process.env.CISTERN_DEBUG)
    await super.init()
    // Parsing is pure over argv: parse the full flag set here for the logging flags; run() parses again.
    const {flags} = await this.parse(this.constructor as typeof CisternCommand)
    const f = flags as unknown as {'log-level': LogLevel; 'log-format'?: LogFormat; debug: boolean}
    this.debugEnabled = f.debug || this.debugEnabled
    this.log_ = createLogger({level: f.debug ? 'debug' : f['log-level'], format: f['log-format']})
  }

  /** The structured logger (stderr); `this.log` stays oclif's plain stdout printer. */
  protected get logger(): Logger {
    return this.log_ ?? createLogger()
  }

  /**
   * Aborts on the first SIGINT/SIGTERM so a loop can stop receiving and finish in-flight work;
   * a second signal exits at once (130).
   */
  protected stopSignal(): AbortSignal {
    if (this.stopController) return this.stopController.signal
    const controller = new AbortController()
    this.stopController = controller
    const onSignal = (signal: NodeJS.Signals) => {
      if (controller.signal.aborted) {
        this.logger.warn(`second ${signal}: exiting now`)
        process.exit(130)
      }
      this.logger.info(`${signal} received: stopping after in-flight work`)
      controller.abort(new StopSignalError(signal))
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    return controller.signal
  }

  /** Errors always reach stderr, --json or not (oclif's logToStderr is muted under --json); secrets masked. */
  private stderr(line: string): void {
    process.stderr.write(String(redact(line)) + '\n')
  }

  /** Prints for humans only; with --json the returned value is the output. */
  protected print(text: string): void {
    if (!this.jsonEnabled()) this.log(text)
  }

  /** Every line for humans on stdout goes through the one masking function. */
  public override log(message = '', ...args: unknown[]): void {
    super.log(maskSecrets(format(message, ...args)))
  }

  /** The --json output: the result, every string in it masked. */
  protected override toSuccessJson(result: unknown): unknown {
    return maskDeep(result)
  }

  public abstract override run(): Promise<T>

  /** oclif's run: init, run(), print (--json). Then the outcome a result carries decides the exit code. */
  protected override async _run<R>(): Promise<R> {
    const result = await super._run<R>()
    if (carriesOutcome(result)) this.finish(result)
    return result
  }

  /** Each problem as one line on stderr (masked), then the exit code; nothing to do for exit 0. */
  private finish(outcome: RunOutcome): void {
    for (const problem of outcome.problems) this.stderr(problem)
    if (outcome.exitCode !== ExitCode.ok) this.exit(outcome.exitCode)
  }

  protected override async catch(error: Error & {oclif?: {exit?: number}}): Promise<unknown> {
    if (error instanceof Errors.ExitError) throw error
    const report = this.reportOf(error)
    this.jsonError(report)
    if (report.bug && this.debugEnabled) {
      this.stderr(error.stack ?? String(error))
    } else {
      const line = report.bug ? `${firstLine(report.message)} (unexpected; run with --debug for the stack)` : report.message
      this.stderr(`Error: ${line}${report.fix ? ` — ${report.fix}` : ''}`)
      if (this.debugEnabled && error.stack) this.stderr(error.stack)
    }
    return this.exit(report.exitCode)
  }

  /** What an error means to the operator: what went wrong, an optional fix, the exit code. */
  private reportOf(error: Error & {oclif?: {exit?: number}}): ErrorReport {
    const unreachable = transportFailureOf(error)
    if (error instanceof CisternError) {
      const report = {name: error.name, message: error.summary, fix: error.fix, exitCode: error.exitCode}
      if (error instanceof FlagValueError) return {...report, fix: this.helpFix()}
      // A failure caused by the network is a target that cannot be reached: exit 3, with a fix.
      if (unreachable && error.exitCode === ExitCode.failure) return {...report, exitCode: ExitCode.unhealthy, fix: error.fix ?? unreachableFix(unreachable)}
      return report
    }
    if (error instanceof Errors.CLIError) {
      // oclif's own errors (unknown flag, missing arg, bad option value) are usage errors: exit 2.
      const exitCode = error.oclif.exit && error.oclif.exit > 1 ? (error.oclif.exit as ExitCode) : ExitCode.usage
      return {name: 'UsageError', message: parseErrorLine(errorMessage(error)), fix: this.helpFix(), exitCode}
    }
    if (unreachable) return {name: error.name, message: firstLine(errorMessage(error)), fix: unreachableFix(unreachable), exitCode: ExitCode.unhealthy}
    // Anything else is a bug: one line, and the stack only with --debug.
    return {name: error.name, message: errorMessage(error), exitCode: ExitCode.failure, bug: true}
  }

  private helpFix(): string | undefined {
    return this.id ? `see ${this.config.bin} ${this.id.replaceAll(':', ' ')} --help` : undefined
  }

  /** With --json the error is also the output: {error: {name, message, fix?, exitCode}} on stdout. */
  private jsonError({name, message, fix, exitCode}: ErrorReport): void {
    if (!this.jsonEnabled()) return
    this.logJson(redact({error: {name, message, ...(fix ? {fix} : {}), exitCode}}))
  }
}

interface ErrorReport {
  name: string
  message: string
  fix?: string
  exitCode: ExitCode
  /** Not an error the operator can fix: its stack is what --debug prints. */
  bug?: boolean
}

function unreachableFix(failure: TransportFailure): string {
  return `${describeTransportFailure(failure)}: check that the service is up and that its URL or endpoint (AWS_ENDPOINT_URL for AWS) is right`
}

/** oclif's parse errors span lines ("Missing 1 required arg:\nfile  The file…\nSee more help…"): make one. */
function parseErrorLine(text: string): string {
  const lines = text
    .split('\n')
    .map((line) => line.trim().replace(/\s+/g, ' '))
    .filter((line) => line && !line.startsWith('See more help with') && !/^The following errors? occurred:?$/.test(line))
  return lines.join(' ').replace(/: ?$/, '') || text
}

function firstLine(text: string): string {
  return text.split('\n').find((line) => line.trim() !== '')?.trim() ?? text
}

function isTruthy(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value.toLowerCase() !== 'false'
}

/** Flags most commands share, with environment fallbacks. */
export const sharedFlags = {
  queue: (summary = 'Queue URL: sqlite:<path>#<name>, https://sqs.<region>.amazonaws.com/<acct>/<name>, sqs://<name> or apigw+https://…') =>
    Flags.string({env: 'CISTERN_QUEUE', summary}),
  region: Flags.string({env: 'AWS_REGION', summary: 'AWS region (else the SDK default chain).'}),
  profile: Flags.string({env: 'AWS_PROFILE', summary: 'AWS shared-config profile.'}),
  config: Flags.string({char: 'c', env: 'CISTERN_CONFIG', summary: 'cistern YAML config file.'}),
}
