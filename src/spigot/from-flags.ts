import type {Logger} from '../core/log.js'
import {type DrainTuningFlagValues, type StateFlagValues, commenterFrom, drainTuningFrom, openSpigotQueue, openStateFrom} from './command-options.js'
import {type SpigotFlags, resolveSpigotConfig} from './config.js'
import type {DrainSummary} from './drain.js'
import type {ProgressMode} from './drain-progress.js'
import {JenkinsClient} from './jenkins.js'
import type {MaintenanceResult} from './maintenance.js'
import {type SpigotStatus, spigotStatus, watchStatus} from './status.js'

/**
 * What `spigot drain`, `maintenance` and `status` do with their parsed flags (src/flags/spigot.ts):
 * resolve the configuration, open the queue, the state and the clients, run, close what was
 * opened. The commands stay one call. The drain and maintenance modules (the consumer, p-queue, the
 * replay) are imported by the functions that run them, so that `spigot status` does not load them.
 */

/** The parsed values of src/flags/spigot.ts drainFlags. */
export interface DrainFlagValues extends SpigotFlags, StateFlagValues, DrainTuningFlagValues {
  'dead-letter-queue'?: string
  comment?: boolean
  'github-url'?: string
}

export interface RunContext {
  log: Logger
  signal: AbortSignal
  /** Not --json: progress may be drawn on the terminal (when there is one). */
  interactive: boolean
}

/** A live line when a person watches (a terminal, not --json); log lines otherwise. */
function progressMode(interactive: boolean): ProgressMode {
  return interactive && process.stderr.isTTY && process.stdout.isTTY ? 'tty' : 'log'
}

export async function drainFromFlags(
  flags: DrainFlagValues & {watch: boolean; 'only-when-on': boolean; 'dry-run': boolean},
  {log, signal, interactive}: RunContext,
): Promise<DrainSummary> {
  const {drain} = await import('./drain.js')
  const config = await resolveSpigotConfig(flags)
  const commenter = await commenterFrom(flags, log)
  const needState = flags['auto-off'] || flags['only-when-on'] || flags.watch
  const state = needState ? await openStateFrom(flags, log) : undefined
  try {
    const queue = await openSpigotQueue(config, {
      region: flags.region,
      profile: flags.profile,
      // A dry run only looks; a drain dead-letters, so an SQS queue without a dead-letter queue is refused (exit 2).
      consumer: !flags['dry-run'],
      deadLetterUrl: flags['dead-letter-queue'],
      log,
    })
    try {
      return await drain({
        queue,
        config,
        state,
        ...drainTuningFrom(flags),
        watch: flags.watch,
        onlyWhenOn: flags['only-when-on'],
        dryRun: flags['dry-run'],
        commenter,
        signal,
        log,
        progress: progressMode(interactive),
      })
    } finally {
      await queue.close()
    }
  } finally {
    await state?.close()
  }
}

export async function maintenanceFromFlags(
  flags: DrainFlagValues & {timeout: number; 'poll-interval': number; 'restore-on-failure': boolean},
  command: string[],
  {log, signal, interactive}: RunContext,
): Promise<MaintenanceResult> {
  const {runMaintenance} = await import('./maintenance.js')
  const config = await resolveSpigotConfig(flags)
  const commenter = await commenterFrom(flags, log)
  const state = await openStateFrom(flags, log)
  try {
    const queue = await openSpigotQueue(config, {region: flags.region, profile: flags.profile, consumer: true, deadLetterUrl: flags['dead-letter-queue'], log})
    try {
      return await runMaintenance({
        state,
        command,
        timeoutMs: flags.timeout * 1000,
        pollMs: flags['poll-interval'],
        restoreOnFailure: flags['restore-on-failure'],
        tty: progressMode(interactive) === 'tty',
        signal,
        log,
        drain: {queue, config, ...drainTuningFrom(flags), commenter},
      })
    } finally {
      await queue.close()
    }
  } finally {
    await state.close()
  }
}

export async function statusFromFlags(
  flags: SpigotFlags & StateFlagValues & {'health-timeout': number; watch: boolean; interval: number},
  {log, signal, out}: Omit<RunContext, 'interactive'> & {out: NodeJS.WritableStream & {isTTY?: boolean}},
): Promise<SpigotStatus> {
  const config = await resolveSpigotConfig(flags, process.env, {jenkinsOptional: true})
  const state = await openStateFrom(flags, log)
  const jenkins = new JenkinsClient({connections: 4})
  try {
    const queue = await openSpigotQueue(config, {region: flags.region, profile: flags.profile, log})
    try {
      const options = {state, queue, config, jenkins, healthTimeoutMs: flags['health-timeout']}
      return flags.watch ? await watchStatus({...options, intervalMs: flags.interval, signal, out}) : await spigotStatus(options)
    } finally {
      await queue.close()
    }
  } finally {
    await jenkins.close()
    await state.close()
  }
}
