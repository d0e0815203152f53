import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {duration} from '../../core/flags.js'
import {healthFlags, jenkinsFlags, stateFlags} from '../../flags/spigot.js'
import {statusFromFlags} from '../../spigot/from-flags.js'
import {type SpigotStatus, renderStatus} from '../../spigot/status.js'

export default class SpigotStatusCommand extends CisternCommand<SpigotStatus> {
  static override summary = 'Show the spigot state, the queued backlog and Jenkins health'

  static override description = `Reads only: the state (ON/OFF and where it lives), the queue's backlog (visible, in flight,
delayed, dead, the oldest message's age) and each Jenkins target's health (up, quieting down, down)
with its response time.

--watch looks again every --interval until SIGINT/SIGTERM, with how fast the backlog shrinks or grows:
redrawn in place on a terminal, one JSON line per look otherwise.

Exit codes: 0 shown (whatever the health), 1 the queue or the state could not be read, 2 bad flag or config.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --jenkins-url http://jenkins.internal:8080/',
    '<%= config.bin %> <%= command.id %> --json',
    {description: 'Watch a drain from another terminal', command: '<%= config.bin %> <%= command.id %> --watch --interval 5s'},
  ]

  static override flags = {
    ...jenkinsFlags,
    ...stateFlags,
    ...healthFlags,
    watch: Flags.boolean({default: false, summary: 'Look again every --interval until SIGINT/SIGTERM.', exclusive: ['json']}),
    interval: duration({unit: 's', default: 2000, defaultHelp: async () => '2s', summary: 'Time between looks with --watch (2s, 1m; a bare number is seconds).'}),
  }

  async run(): Promise<SpigotStatus> {
    const {flags} = await this.parse(SpigotStatusCommand)
    const status = await statusFromFlags(flags, {log: this.logger, signal: this.stopSignal(), out: process.stdout})
    if (!flags.watch) this.print(renderStatus(status))
    return status
  }
}
