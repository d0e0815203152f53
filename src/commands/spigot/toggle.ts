import {Flags} from '@oclif/core'

import {CisternCommand, sharedFlags} from '../../core/command.js'
import {drainRuleFlags, stateFlags} from '../../flags/spigot.js'
import {type ToggleResult, describeToggle, toggleSpigot} from '../../spigot/toggle.js'

export default class SpigotToggle extends CisternCommand<ToggleResult> {
  static override summary = 'Turn the spigot ON (webhooks go to Jenkins) or OFF (webhooks are queued)'

  static override description = `Sets the spigot state and prints it before → after.

Backend local (the default): the state lives in the embedded database file (<data dir>/cistern.db), where \`spigot serve\` and \`spigot drain --watch\` on this machine read it. A fresh install is ON.

Backend apigw: the state is the API Gateway stage variable spigot_state of the original spigot (--api-id or --api-name, --stage, default prod), changed with UpdateStage replace /variables/spigot_state, exactly as toggle_spigot.py did. It is chosen by itself when an API is named.

With --drain-rule NAME, ON enables and OFF disables that EventBridge rule (the original scheduled drain).

Exit codes: 0 done, 1 AWS refused or failed, 2 bad flag.`

  static override examples = [
    {description: 'Queue webhooks while Jenkins is upgraded (local state)', command: '<%= config.bin %> <%= command.id %> --state OFF'},
    {
      description: 'The original AWS setup: stage variable and scheduled drain rule',
      command: '<%= config.bin %> <%= command.id %> --state ON --api-name spigot --stage prod --drain-rule spigot-send-from-queue',
    },
  ]

  static override flags = {
    state: Flags.string({char: 's', required: true, summary: 'ON or OFF (any case).'}),
    ...stateFlags,
    ...drainRuleFlags,
    region: sharedFlags.region,
    profile: sharedFlags.profile,
  }

  async run(): Promise<ToggleResult> {
    const {flags} = await this.parse(SpigotToggle)
    const result = await toggleSpigot(flags, this.logger)
    this.print(describeToggle(result))
    return result
  }
}
