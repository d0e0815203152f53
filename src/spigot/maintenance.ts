import {CisternError, TargetUnhealthyError, UsageError} from '../core/errors.js'
import {type Logger, silentLogger} from '../core/log.js'
import {type DrainOptions, type DrainSummary, drain, renderSummary, unhealthyError} from './drain.js'
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
  drain: Omit<DrainOptions, 'state' | 'watch' | 'dryRun' | 'onlyWhenOn' | 'signal' | 'log'>
  /** listr2 steps (a TTY), else plain log lines. */
  tty?: boolean
  signal?: AbortSignal
  log?: Logger
}

export interface MaintenanceResult {
  outcome: 'ok' | 'command-failed' | 'unhealthy'
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

/** CMD exited non-zero: the command exits with CMD's code. */
export class MaintenanceCommandFailed extends CisternError {
  constructor(
    readonly result: MaintenanceResult,
    restored: boolean,
  ) {
    const code = result.command.exitCode
    super(
      `maintenance command failed (${result.command.signal ? `killed by ${result.command.signal}` : `exit ${code}`}): ${result.command.argv.join(' ')}`,
      {
        fix: restored
          ? `the spigot was restored to ${result.state}`
          : 'the spigot stays OFF and webhooks keep queueing; fix Jenkins, then `cistern spigot toggle --state ON && cistern spigot drain`',
      },
    )
    this.name = 'MaintenanceCommandFailed'
  }
}

interface Step {
  title: string
  run(setTitle: (title: string) => void): Promise<void>
}

export async function runMaintenance(options: MaintenanceOptions): Promise<MaintenanceResult> {
  if (options.command.length === 0) throw new UsageError('no maintenance command', 'put it after --, e.g. cistern spigot maintenance -- ./upgrade-jenkins.sh')
  const log = (options.log ?? silentLogger).child({component: 'maintenance'})
  const pollMs = options.pollMs ?? 2000
  const result: MaintenanceResult = {
    outcome: 'ok',
    before: 'ON',
    state: 'OFF',
    command: {argv: options.command, exitCode: -1, ms: 0},
  }
  const shown = options.command.join(' ')

  const steps: Step[] = [
    {
      title: 'Turn the spigot OFF',
      async run(setTitle) {
        const {before, after} = await options.state.set('OFF')
        result.before = before
        result.state = after
        setTitle(`Spigot OFF (was ${before}): webhooks are queued`)
      },
    },
    {
      title: `Run ${shown}`,
      async run(setTitle) {
        const started = performance.now()
        const {execa} = await import('execa')
        const child = await execa(options.command[0]!, options.command.slice(1), {
          stdio: 'inherit',
          reject: false,
          cancelSignal: options.signal,
        })
        result.command = {
          argv: options.command,
          exitCode: child.exitCode ?? (child.failed ? 1 : 0),
          ...(child.signal ? {signal: child.signal} : {}),
          ms: Math.round(performance.now() - started),
        }
        if (child.failed && child.exitCode === undefined && !child.signal) {
          // Could not start (ENOENT, EACCES): execa's message names the reason.
          log.error(`could not run ${shown}: ${child.shortMessage}`)
          result.command.exitCode = 127
        }
        if (result.command.exitCode === 0 && !child.signal) {
          setTitle(`Ran ${shown} (${(result.command.ms / 1000).toFixed(1)} s)`)
          return
        }
        result.outcome = 'command-failed'
        if (options.restoreOnFailure) {
          const {after} = await options.state.set(result.before)
          result.state = after
          result.restored = true
        }
        throw new MaintenanceCommandFailed(result, Boolean(result.restored))
      },
    },
    {
      title: `Wait for Jenkins to be healthy (up to ${Math.round(options.timeoutMs / 1000)} s)`,
      async run(setTitle) {
        const started = performance.now()
        const deadline = started + options.timeoutMs
        for (let attempt = 1; ; attempt++) {
          result.health = await targetsHealth(options.drain.config, {timeoutMs: Math.min(options.drain.healthTimeoutMs ?? 5000, options.timeoutMs)})
          const down = result.health.find((health) => !isUp(health))
          result.waitedMs = Math.round(performance.now() - started)
          if (!down) {
            setTitle(`Jenkins is healthy (after ${(result.waitedMs / 1000).toFixed(1)} s)`)
            return
          }
          if (performance.now() + pollMs > deadline || options.signal?.aborted) {
            result.outcome = 'unhealthy'
            const error = unhealthyError(down)
            throw new TargetUnhealthyError(
              `Jenkins was not healthy within ${Math.round(options.timeoutMs / 1000)} s: ${describeHealth(down)}`,
              'the spigot stays OFF and webhooks keep queueing; when Jenkins is up: cistern spigot toggle --state ON && cistern spigot drain',
              error,
            )
          }
          if (attempt === 1 || attempt % 5 === 0) log.info(`waiting for Jenkins: ${describeHealth(down)}`)
          setTitle(`Wait for Jenkins to be healthy: ${describeHealth(down)}`)
          await sleep(pollMs, options.signal)
        }
      },
    },
    {
      title: 'Turn the spigot ON',
      async run(setTitle) {
        const {after} = await options.state.set('ON')
        result.state = after
        setTitle('Spigot ON: webhooks go to Jenkins')
      },
    },
    {
      title: 'Drain the queue',
      async run(setTitle) {
        result.drain = await drain({...options.drain, state: options.state, signal: options.signal, log})
        result.state = await options.state.get()
        setTitle(renderSummary(result.drain))
        if (result.drain.stoppedBy === 'unhealthy') {
          result.outcome = 'unhealthy'
          throw unhealthyError(result.drain.unhealthy!)
        }
      },
    },
  ]

  await (options.tty ? runWithListr(steps) : runPlain(steps, log))
  return result
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

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(finish, ms)
    function finish() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', finish)
      resolve()
    }
    signal?.addEventListener('abort', finish, {once: true})
  })
}
