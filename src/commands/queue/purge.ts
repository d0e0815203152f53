import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {UsageError} from '../../core/errors.js'
import {queueArg, queueTargetFlags} from '../../core/queue/flags.js'
import {confirm, operatorQueue} from '../../core/queue/operator.js'

export interface QueuePurgeResult {
  /** Messages deleted; -1 when the backend does not say (SQS PurgeQueue). */
  purged: number
}

export default class QueuePurge extends CisternCommand<QueuePurgeResult> {
  static override summary = 'Delete every message of a queue (not the dead ones)'

  static override description = `Asks for confirmation on a terminal; anywhere else (cron, CI, pipes) it needs --yes. Dead messages stay (redrive or inspect them with "queue peek --dead"). On SQS this is PurgeQueue (at most once a minute, and it may take up to 60 s).

Exit codes: 0 purged (or not confirmed), 1 the queue failed, 2 bad URL, missing queue, or no --yes off a terminal.`

  static override examples = [
    {description: 'Purge the embedded queue from a script', command: '<%= config.bin %> <%= command.id %> sqlite:./cistern.db#jobs --yes'},
  ]

  static override args = queueArg
  static override flags = {...queueTargetFlags, yes: Flags.boolean({char: 'y', summary: 'Do not ask for confirmation.', default: false})}

  async run(): Promise<QueuePurgeResult> {
    const {args, flags} = await this.parse(QueuePurge)
    const queue = await operatorQueue({url: args.url ?? flags.queue, region: flags.region, profile: flags.profile, log: this.logger}, 'existing')
    try {
      if (!flags.yes) {
        if (!process.stdin.isTTY || !process.stderr.isTTY) throw new UsageError('purge deletes every message', 'add --yes when not running on a terminal')
        if (!(await confirm(`Delete every message in ${queue.url}?`))) {
          this.print('not purged')
          return {purged: 0}
        }
      }
      const purged = await queue.purge()
      this.print(purged < 0 ? 'purge requested' : `purged ${purged} message${purged === 1 ? '' : 's'}`)
      return {purged}
    } finally {
      await queue.close()
    }
  }
}
