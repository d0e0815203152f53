import {Command, Errors, Flags, Interfaces} from '@oclif/core'

import {CisternError, ExitCode, errorMessage} from './errors.js'
import {LOG_LEVELS, type LogFormat, type LogLevel, type Logger, createLogger} from './log.js'
import {redact} from './secrets.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof CisternCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * The one base command. It gives every command: `--json` (what run() returns is the JSON output),
 * logging flags, `--debug`, the error → exit-code mapping and a stop signal for foreground loops.
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

  protected log_!: Logger
  private debugEnabled = false
  private stopController?: AbortController

  public override async init(): Promise<void> {
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
      controller.abort(new Error(signal))
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

  public abstract override run(): Promise<T>

  protected override async catch(error: Error & {oclif?: {exit?: number}}): Promise<unknown> {
    if (error instanceof Errors.ExitError) throw error
    let exitCode: ExitCode
    if (error instanceof CisternError) {
      exitCode = error.exitCode
      this.jsonError(error.name, error.message, exitCode, error.fix)
      this.stderr(`Error: ${error.oneLine}`)
      if (this.debugEnabled && error.stack) this.stderr(error.stack)
    } else if (error instanceof Errors.CLIError) {
      // oclif's own errors (unknown flag, missing arg, bad option value) are usage errors: exit 2.
      exitCode = error.oclif?.exit && error.oclif.exit > 1 ? (error.oclif.exit as ExitCode) : ExitCode.usage
      const message = parseErrorLine(errorMessage(error))
      const fix = this.id ? `see ${this.config.bin} ${this.id.replaceAll(':', ' ')} --help` : undefined
      this.jsonError('UsageError', message, exitCode, fix)
      this.stderr(`Error: ${message}${fix ? ` — ${fix}` : ''}`)
      if (this.debugEnabled && error.stack) this.stderr(error.stack)
    } else {
      // Anything else is a bug: one line, and the stack only with --debug.
      exitCode = ExitCode.failure
      this.jsonError(error?.name ?? 'Error', errorMessage(error), exitCode)
      if (this.debugEnabled) this.stderr(error?.stack ?? String(error))
      else this.stderr(`Error: ${firstLine(errorMessage(error))} (unexpected; run with --debug for the stack)`)
    }
    return this.exit(exitCode)
  }

  /** With --json the error is also the output: {error: {name, message, fix?, exitCode}} on stdout. */
  private jsonError(name: string, message: string, exitCode: ExitCode, fix?: string): void {
    if (!this.jsonEnabled()) return
    this.logJson(redact({error: {name, message, ...(fix ? {fix} : {}), exitCode}}))
  }
}

/** oclif's parse errors span lines ("Missing 1 required arg:\nfile  The file…\nSee more help…"): make one. */
function parseErrorLine(text: string): string {
  const lines = text
    .split('\n')
    .map((line) => line.trim().replace(/\s+/g, ' '))
    .filter((line) => line && !/^See more help with/.test(line) && !/^The following errors? occurred:?$/.test(line))
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
