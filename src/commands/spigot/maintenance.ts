import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {integer} from '../../core/flags.js'
import {drainFlags, jenkinsFlags, stateFlags} from '../../flags/spigot.js'
import {maintenanceFromFlags} from '../../spigot/from-flags.js'
import type {MaintenanceResult} from '../../spigot/maintenance.js'

export default class SpigotMaintenance extends CisternCommand<MaintenanceResult> {
  static override summary = 'Run a Jenkins maintenance command with the spigot OFF, then turn it ON and drain'

  static override description = `For CI scripts around Jenkins maintenance: sets the spigot OFF (webhooks are queued), runs CMD with
its output on this terminal, waits until every Jenkins target is healthy (bounded by --timeout), sets the
spigot ON and drains the queue as \`spigot drain\` does. Shown as steps on a TTY, log lines otherwise.

If CMD fails, the spigot stays OFF (webhooks keep queueing) and the command exits with CMD's exit code;
with --restore-on-failure the spigot is put back to its state before maintenance. The outcome is "ok"
only when the drain left nothing behind; otherwise the lines on stderr say what remains and why.

Exit codes: 0 done and drained, CMD's code when CMD failed, 1 the drain dead-lettered some or left work
that is not Jenkins' fault, 2 bad flag or config, 3 Jenkins was not healthy within --timeout (the
spigot stays OFF) or went down during the drain.`

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
    timeout: integer({default: 900, min: 1, summary: 'Seconds to wait for Jenkins to be healthy after CMD.'}),
    'poll-interval': integer({default: 2000, min: 50, summary: 'Milliseconds between health checks while waiting.', hidden: true}),
    'restore-on-failure': Flags.boolean({default: false, summary: 'When CMD fails, put the spigot back to its state before maintenance.'}),
  }

  async run(): Promise<MaintenanceResult> {
    const {flags} = await this.parse(SpigotMaintenance)
    return maintenanceFromFlags(flags, this.passThrough, {log: this.logger, signal: this.stopSignal(), interactive: !this.jsonEnabled()})
  }
}
