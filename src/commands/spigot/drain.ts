import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {ExitCode} from '../../core/errors.js'
import {commenterFrom, drainFlags, drainTuningFrom, jenkinsFlags, openSpigotQueue, openStateFrom, stateFlags} from '../../spigot/command-options.js'
import {resolveSpigotConfig} from '../../spigot/config.js'
import {type DrainProgress, type DrainSummary, drain, renderSummary, unhealthyError} from '../../spigot/drain.js'
import {closeJenkinsAgents} from '../../spigot/jenkins.js'

export default class SpigotDrain extends CisternCommand<DrainSummary> {
  static override summary = 'Replay queued webhooks to Jenkins once it is healthy'

  static override description = `First checks every Jenkins target (health path, then /api/json?tree=quietingDown). If one is down
or quieting down, nothing is touched and the command exits 3 (with --auto-off the spigot is set OFF).
Otherwise it replays the queue: the raw bytes GitHub sent (so X-Hub-Signature-256 still verifies) with the
kept GitHub headers, routed by X-GitHub-Event; messages queued by the original Lambda are re-serialised.
2xx deletes the message; refused, timeout and 5xx retry it later and re-check Jenkins (stop, exit 3, when it
went down); 408/429 retry; any other 4xx dead-letters it with the reason. A message is deleted only after
Jenkins accepted it, so a killed drain loses nothing (it is replayed by the next one).

One pass until the queue is empty (cron, systemd timer) unless --watch, which keeps going until SIGTERM and
pauses while the spigot is OFF. --only-when-on makes a one-pass drain do nothing while the spigot is OFF.

Exit codes: 0 drained (or stopped by a signal), 1 some messages were dead-lettered, 2 bad flag or config,
3 a Jenkins target is unhealthy.`

  static override examples = [
    {description: 'One pass, e.g. from a systemd timer', command: '<%= config.bin %> <%= command.id %> --jenkins-url http://jenkins.internal:8080/ --only-when-on'},
    {description: 'Keep draining, gently', command: '<%= config.bin %> <%= command.id %> --watch --concurrency 2 --rate 5'},
    {description: 'What would be sent', command: '<%= config.bin %> <%= command.id %> --dry-run'},
  ]

  static override flags = {
    ...jenkinsFlags,
    ...stateFlags,
    ...drainFlags,
    watch: Flags.boolean({default: false, summary: 'Keep draining in the foreground until SIGINT/SIGTERM.'}),
    'dry-run': Flags.boolean({default: false, summary: 'List what would be sent; touch nothing.', exclusive: ['watch']}),
    'only-when-on': Flags.boolean({default: false, summary: 'Do nothing while the spigot is OFF (for cron and timers).'}),
  }

  async run(): Promise<DrainSummary> {
    const {flags} = await this.parse(SpigotDrain)
    const config = await resolveSpigotConfig(flags)
    const commenter = commenterFrom(flags, this.logger)
    const needState = flags['auto-off'] || flags['only-when-on'] || flags.watch
    const state = needState ? await openStateFrom(flags, this.logger) : undefined
    const queue = await openSpigotQueue(config, {region: flags.region, profile: flags.profile, log: this.logger})
    const progress = this.progressLine()
    let summary: DrainSummary
    try {
      summary = await drain({
        queue,
        config,
        state,
        ...drainTuningFrom(flags),
        watch: flags.watch,
        onlyWhenOn: flags['only-when-on'],
        dryRun: flags['dry-run'],
        commenter,
        signal: this.stopSignal(),
        log: this.logger,
        onProgress: progress?.update,
      })
    } finally {
      progress?.clear()
      await queue.close()
      await state?.close()
      closeJenkinsAgents()
    }

    if (summary.stoppedBy === 'unhealthy') {
      const error = unhealthyError(summary.unhealthy!)
      if (this.jsonEnabled()) {
        this.logJson({...summary, error: {name: error.name, message: error.message, fix: error.fix, exitCode: error.exitCode}})
        process.stderr.write(`Error: ${error.oneLine}\n`)
        this.exit(ExitCode.unhealthy)
      }
      this.print(renderSummary(summary))
      throw error
    }
    this.print(renderSummary(summary))
    if (summary.dead > 0) process.exitCode = ExitCode.failure
    return summary
  }

  /** A single redrawn line on a TTY (stderr), nothing otherwise. */
  private progressLine(): {update: (progress: DrainProgress) => void; clear: () => void} | undefined {
    if (!process.stderr.isTTY || this.jsonEnabled()) return undefined
    let last = 0
    let shown = false
    return {
      update(progress) {
        const now = performance.now()
        if (now - last < 100) return
        last = now
        shown = true
        process.stderr.write(`\r\u001B[2Kdraining: ${progress.delivered} delivered, ${progress.retried} retried, ${progress.dead} dead, ${progress.inFlight} in flight`)
      },
      clear() {
        if (shown) process.stderr.write('\r\u001B[2K')
      },
    }
  }
}
