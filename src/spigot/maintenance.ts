import {CisternError, ExitCode, type RunOutcome, TargetUnhealthyError, UsageError} from '../core/errors.js'
import {type Logger, silentLogger} from '../core/log.js'
import {sleep} from '../core/loop.js'
import {type DrainOptions, type DrainSummary, drain, renderSummary, unhealthyError} from './drain.js'
import {JenkinsClient} from './jenkins.js'
import type {SpigotState, StateStore} from './state.js'
import {type TargetHealth, describeHealth, isUp, targetsHealth} from './status.js'

/**
 * `spigot maintenance -- CMD…` for CI scripts around Jenkins maintenance:
 * OFF → run CMD (stdio inherited) → wait until every Jenkins is healthy → ON → drain.
 * CMD failing leaves the spigot OFF (webhooks keep queueing) unless restoreOnFailure.
 */
export interface MaintenanceOptions {
  state: StateStore
  /** The command and its arguments (run without a shell). */
  command: string[]
  /** How long to wait for Jenkins to be healthy after CMD (ms). */
  timeoutMs: number
  /** CMD failed: put the spigot back to its state before maintenance (else it stays OFF). */
  restoreOnFailure?: boolean
  /** Between health checks while waiting (default 2 s). */
  pollMs?: number
  /** The drain after ON (queue, config, concurrency, …). */
  drain: Omit<DrainOptions, 'state' | 'watch' | 'dryRun' | 'onlyWhenOn' | 'signal' | 'log' | 'progress'>
  /** listr2 steps and a live drain line (a TTY), else plain log lines. */
  tty?: boolean
  signal?: AbortSignal
  log?: Logger
}

export interface MaintenanceResult extends RunOutcome {
  /** ok only when the drain left nothing behind: never "ok" with work left (its problems say what remains). */
  outcome: 'ok' | 'command-failed' | 'unhealthy' | 'incomplete'
  /** The spigot state before maintenance and at the end. */
  before: SpigotState
  state: SpigotState
  command: {argv: string[]; exitCode: number; signal?: string; ms: number}
  /** Waiting for Jenkins after CMD. */
  waitedMs?: number
  health?: TargetHealth[]
  restored?: boolean
  drain?: DrainSummary
}

/** CMD exited non-zero: cistern exits with CMD's own code (1–255), not one of its own. */
export class MaintenanceCommandFailed extends CisternError {
  constructor(
    readonly result: MaintenanceResult,
    restored: boolean,
  ) {
    const code = result.command.exitCode
    super(`maintenance command failed (${result.command.signal ? `killed by ${result.command.signal}` : `exit ${code}`}): ${result.command.argv.join(' ')}`, {
      fix: restored
        ? `the spigot was restored to ${result.state}`
        : 'the spigot stays OFF and webhooks keep queueing; fix Jenkins, then `cistern spigot toggle --state ON && cistern spigot drain`',
      // CMD's code passes through (docs/spigot.md); a signal or a failure to start is 1 or 127.
      exitCode: (code > 0 ? Math.min(code, 255) : ExitCode.failure) as ExitCode,
    })
    this.name = 'MaintenanceCommandFailed'
  }
}

interface Step {
  title: string
  run(setTitle: (title: string) => void): Promise<void>
}

export async function runMaintenance(options: MaintenanceOptions): Promise<MaintenanceResult> {
  if (options.command.length === 0) throw new UsageError('no maintenance command', 'put it after --, e.g. cistern spigot maintenance -- ./upgrade-jenkins.sh')
  const window = new MaintenanceWindow(options)
  try {
    return await window.run()
  } finally {
    await window.close()
  }
}

/** The five steps of a maintenance window, in order; each a method. */
class MaintenanceWindow {
  private readonly log: Logger
  private readonly jenkins: JenkinsClient
  private readonly shown: string
  readonly result: MaintenanceResult

  constructor(private readonly options: MaintenanceOptions) {
    this.log = (options.log ?? silentLogger).child({component: 'maintenance'})
    this.jenkins = options.drain.jenkins ?? new JenkinsClient({connections: Math.max(4, options.drain.concurrency ?? 4)})
    this.shown = options.command.join(' ')
    this.result = {outcome: 'ok', before: 'ON', state: 'OFF', command: {argv: options.command, exitCode: -1, ms: 0}, exitCode: ExitCode.ok, problems: []}
  }

  async run(): Promise<MaintenanceResult> {
    const steps: Step[] = [
      {title: 'Turn the spigot OFF', run: (setTitle) => this.turnOff(setTitle)},
      {title: `Run ${this.shown}`, run: (setTitle) => this.runCommand(setTitle)},
      {title: `Wait for Jenkins to be healthy (up to ${Math.round(this.options.timeoutMs / 1000)} s)`, run: (setTitle) => this.waitForJenkins(setTitle)},
      {title: 'Turn the spigot ON', run: (setTitle) => this.turnOn(setTitle)},
      {title: 'Drain the queue', run: (setTitle) => this.drainQueue(setTitle)},
    ]
    await (this.options.tty ? runWithListr(steps) : runPlain(steps, this.log))
    return this.result
  }

  async close(): Promise<void> {
    if (!this.options.drain.jenkins) await this.jenkins.close()
  }

  private async turnOff(setTitle: (title: string) => void): Promise<void> {
    const {before, after} = await this.options.state.set('OFF')
    this.result.before = before
    this.result.state = after
    setTitle(`Spigot OFF (was ${before}): webhooks are queued`)
  }

  private async runCommand(setTitle: (title: string) => void): Promise<void> {
    const {command, signal, restoreOnFailure, state} = this.options
    const [program = '', ...args] = command
    const started = performance.now()
    const {execa} = await import('execa')
    const child = await execa(program, args, {stdio: 'inherit', reject: false, cancelSignal: signal})
    this.result.command = {
      argv: command,
      exitCode: child.exitCode ?? (child.failed ? 1 : 0),
      ...(child.signal ? {signal: child.signal} : {}),
      ms: Math.round(performance.now() - started),
    }
    if (child.failed && child.exitCode === undefined && !child.signal) {
      // Could not start (ENOENT, EACCES): execa's message names the reason.
      this.log.error(`could not run ${this.shown}: ${child.shortMessage}`)
      this.result.command.exitCode = 127
    }
    if (this.result.command.exitCode === 0 && !child.signal) {
      setTitle(`Ran ${this.shown} (${(this.result.command.ms / 1000).toFixed(1)} s)`)
      return
    }
    this.result.outcome = 'command-failed'
    if (restoreOnFailure) {
      const {after} = await state.set(this.result.before)
      this.result.state = after
      this.result.restored = true
    }
    throw new MaintenanceCommandFailed(this.result, Boolean(this.result.restored))
  }

  private async waitForJenkins(setTitle: (title: string) => void): Promise<void> {
    const {timeoutMs, signal} = this.options
    const pollMs = this.options.pollMs ?? 2000
    const started = performance.now()
    const deadline = started + timeoutMs
    for (let attempt = 1; ; attempt++) {
      this.result.health = await targetsHealth(this.jenkins, this.options.drain.config, {timeoutMs: Math.min(this.options.drain.healthTimeoutMs ?? 5000, timeoutMs)})
      const down = this.result.health.find((health) => !isUp(health))
      this.result.waitedMs = Math.round(performance.now() - started)
      if (!down) {
        setTitle(`Jenkins is healthy (after ${(this.result.waitedMs / 1000).toFixed(1)} s)`)
        return
      }
      if (performance.now() + pollMs > deadline || signal?.aborted) {
        this.result.outcome = 'unhealthy'
        throw new TargetUnhealthyError(
          `Jenkins was not healthy within ${Math.round(timeoutMs / 1000)} s: ${describeHealth(down)}`,
          'the spigot stays OFF and webhooks keep queueing; when Jenkins is up: cistern spigot toggle --state ON && cistern spigot drain',
          unhealthyError(down),
        )
      }
      if (attempt === 1 || attempt % 5 === 0) this.log.info(`waiting for Jenkins: ${describeHealth(down)}`)
      setTitle(`Wait for Jenkins to be healthy: ${describeHealth(down)}`)
      await sleep(pollMs, signal)
    }
  }

  private async turnOn(setTitle: (title: string) => void): Promise<void> {
    const {after} = await this.options.state.set('ON')
    this.result.state = after
    setTitle('Spigot ON: webhooks go to Jenkins')
  }

  /** The drain's outcome is the window's: what it could not deliver is reported, never "ok". */
  private async drainQueue(setTitle: (title: string) => void): Promise<void> {
    const {state, signal, tty} = this.options
    const summary = await drain({...this.options.drain, jenkins: this.jenkins, state, signal, log: this.log, ...(tty ? {progress: 'tty' as const} : {progress: 'log' as const})})
    this.result.drain = summary
    this.result.state = await state.get()
    this.result.exitCode = summary.exitCode
    this.result.problems = summary.problems
    if (summary.exitCode !== ExitCode.ok) this.result.outcome = summary.exitCode === ExitCode.unhealthy ? 'unhealthy' : 'incomplete'
    // Off a terminal the drain logged its summary already.
    setTitle(tty ? renderSummary(summary) : 'Drained the queue')
  }
}

async function runPlain(steps: Step[], log: Logger): Promise<void> {
  for (const step of steps) {
    log.info(`${step.title}…`)
    let title = step.title
    await step.run((next) => {
      title = next
    })
    log.info(title)
  }
}

async function runWithListr(steps: Step[]): Promise<void> {
  const {Listr} = await import('listr2')
  // The simple renderer prints a line per step and never redraws, so CMD's inherited output stays readable.
  const list = new Listr(
    steps.map((step) => ({
      title: step.title,
      task: async (_ctx: unknown, task: {title: string | undefined}) => {
        await step.run((title) => {
          task.title = title
        })
      },
    })),
    {renderer: 'simple', exitOnError: true, collectErrors: false, registerSignalListeners: false},
  )
  await list.run()
}
