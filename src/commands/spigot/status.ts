import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {jenkinsFlags, openSpigotQueue, openStateFrom, stateFlags} from '../../spigot/command-options.js'
import {resolveSpigotConfig} from '../../spigot/config.js'
import {type SpigotStatus, renderStatus, spigotStatus} from '../../spigot/status.js'

export default class SpigotStatusCommand extends CisternCommand<SpigotStatus> {
  static override summary = 'Show the spigot state, the queued backlog and Jenkins health'

  static override description = `Reads only: the state (ON/OFF and where it lives), the queue's backlog (visible, in flight,
delayed, dead) and each Jenkins target's health (up, quieting down, down) with its response time.

Exit codes: 0 shown (whatever the health), 1 the queue or the state could not be read, 2 bad flag or config.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --jenkins-url http://jenkins.internal:8080/',
    '<%= config.bin %> <%= command.id %> --json',
  ]

  static override flags = {
    ...jenkinsFlags,
    ...stateFlags,
    'health-timeout': Flags.integer({default: 5000, min: 1, summary: 'Milliseconds per health check.'}),
  }

  async run(): Promise<SpigotStatus> {
    const {flags} = await this.parse(SpigotStatusCommand)
    const config = await resolveSpigotConfig(flags, process.env, {jenkinsOptional: true})
    const state = await openStateFrom(flags, this.logger)
    try {
      const queue = await openSpigotQueue(config, {region: flags.region, profile: flags.profile, log: this.logger})
      try {
        const status = await spigotStatus({state, queue, config, healthTimeoutMs: flags['health-timeout']})
        this.print(renderStatus(status))
        return status
      } finally {
        await queue.close()
      }
    } finally {
      await state.close()
    }
  }
}
