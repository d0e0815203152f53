import {Flags} from '@oclif/core'

import {CisternCommand, sharedFlags} from '../../core/command.js'
import {drainRuleFlags, stateFlags} from '../../flags/spigot.js'
import {openStateFrom} from '../../spigot/command-options.js'
import {type SpigotState, parseState} from '../../spigot/state.js'

export interface ToggleResult {
  backend: 'local' | 'apigw'
  where: string
  before: SpigotState
  after: SpigotState
  drainRule?: string
}

export default class SpigotToggle extends CisternCommand<ToggleResult> {
  static override summary = 'Turn the spigot ON (webhooks go to Jenkins) or OFF (webhooks are queued)'

  static override description = `Sets the spigot state and prints it before → after.

Backends:
  local   (default) the state lives in the embedded database file (<data dir>/cistern.db), read by
          \`spigot serve\` and \`spigot drain --watch\` on this machine. A fresh install is ON.
  apigw   the API Gateway stage variable spigot_state of the original spigot (--api-id or --api-name,
          --stage, default prod), changed with UpdateStage replace /variables/spigot_state, exactly as
          toggle_spigot.py did. Chosen automatically when an API is named.

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
    const wanted = parseState(flags.state)
    const store = await openStateFrom(flags, this.logger)
    try {
      const {before, after} = await store.set(wanted)
      const result: ToggleResult = {backend: store.backend, where: store.where, before, after, ...(flags['drain-rule'] ? {drainRule: flags['drain-rule']} : {})}
      this.print(
        `spigot: ${before} → ${after}  (${store.backend}: ${store.where})${flags['drain-rule'] ? `; drain rule ${flags['drain-rule']} ${after === 'ON' ? 'enabled' : 'disabled'}` : ''}`,
      )
      return result
    } finally {
      await store.close()
    }
  }
}
