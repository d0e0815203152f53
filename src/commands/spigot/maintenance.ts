import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {UsageError} from '../../core/errors.js'
import {commenterFrom, drainFlags, drainTuningFrom, jenkinsFlags, openSpigotQueue, openStateFrom, stateFlags} from '../../spigot/command-options.js'
import {resolveSpigotConfig} from '../../spigot/config.js'
import {closeJenkinsAgents} from '../../spigot/jenkins.js'
import {MaintenanceCommandFailed, type MaintenanceResult, runMaintenance} from '../../spigot/maintenance.js'

export default class SpigotMaintenance extends CisternCommand<MaintenanceResult> {
  static override summary = 'Run a Jenkins maintenance command with the spigot OFF, then turn it ON and drain'

  static override description = `For CI scripts around Jenkins maintenance: sets the spigot OFF (webhooks are queued), runs CMD with
its output on this terminal, waits until every Jenkins target is healthy (bounded by --timeout), sets the
spigot ON and drains the queue. Shown as steps on a TTY, log lines otherwise.

If CMD fails, the spigot stays OFF (webhooks keep queueing) and the command exits with CMD's exit code;
with --restore-on-failure the spigot is put back to its state before maintenance.

Exit codes: 0 done, CMD's code when CMD failed, 1 some messages were dead-lettered, 2 bad flag or config,
3 Jenkins was not healthy within --timeout (the spigot stays OFF) or went down during the drain.`

  static override examples = [
    {description: 'Restart Jenkins for a plugin upgrade', command: '<%= config.bin %> <%= command.id %> --timeout 600 -- sudo systemctl restart jenkins'},
    {description: 'An upgrade script; turn the spigot back ON even if it fails', command: '<%= config.bin %> <%= command.id %> --restore-on-failure -- ./upgrade-jenkins.sh 2.462.3'},
  ]

  /** CMD and its arguments: everything after `--`, never parsed as cistern flags. */
  private passThrough: string[] = []

  public override async init(): Promise<void> {
    const separator = this.argv.indexOf('--')
    if (separator >= 0) {
      this.passThrough = this.argv.slice(separator + 1)
      this.argv = this.argv.slice(0, separator)
    }
    await super.init()
  }

  static override flags = {
    ...jenkinsFlags,
    ...stateFlags,
    ...drainFlags,
    timeout: Flags.integer({default: 900, min: 1, summary: 'Seconds to wait for Jenkins to be healthy after CMD.'}),
    'poll-interval': Flags.integer({default: 2000, min: 50, summary: 'Milliseconds between health checks while waiting.', hidden: true}),
    'restore-on-failure': Flags.boolean({default: false, summary: "When CMD fails, put the spigot back to its state before maintenance."}),
  }

  async run(): Promise<MaintenanceResult> {
    const {flags} = await this.parse(SpigotMaintenance)
    const command = this.passThrough
    if (command.length === 0) throw new UsageError('no maintenance command', 'put it after --, e.g. cistern spigot maintenance -- ./upgrade-jenkins.sh')
    const config = await resolveSpigotConfig(flags)
    const commenter = commenterFrom(flags, this.logger)
    const state = await openStateFrom(flags, this.logger)
    const queue = await openSpigotQueue(config, {region: flags.region, profile: flags.profile, log: this.logger})
    try {
      const result = await runMaintenance({
        state,
        command,
        timeoutMs: flags.timeout * 1000,
        pollMs: flags['poll-interval'],
        restoreOnFailure: flags['restore-on-failure'],
        tty: Boolean(process.stdout.isTTY) && !this.jsonEnabled(),
        signal: this.stopSignal(),
        log: this.logger,
        drain: {
          queue,
          config,
          ...drainTuningFrom(flags),
          commenter,
        },
      })
      if (result.drain && result.drain.dead > 0) process.exitCode = 1
      return result
    } catch (error) {
      if (error instanceof MaintenanceCommandFailed) {
        if (this.jsonEnabled()) this.logJson({...error.result, error: {name: error.name, message: error.message, fix: error.fix}})
        process.stderr.write(`Error: ${error.oneLine}\n`)
        this.exit(error.result.command.exitCode > 0 ? Math.min(error.result.command.exitCode, 255) : 1)
      }
      throw error
    } finally {
      await queue.close()
      await state.close()
      closeJenkinsAgents()
    }
  }
}
