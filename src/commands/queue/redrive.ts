import {CisternCommand} from '../../core/command.js'
import {queueArg, queueTargetFlags} from '../../core/queue/flags.js'
import {operatorQueue} from '../../core/queue/operator.js'

export interface QueueRedriveResult {
  /** Messages moved back; -1 when the backend moves them asynchronously (SQS move task). */
  redriven: number
}

export default class QueueRedrive extends CisternCommand<QueueRedriveResult> {
  static override summary = 'Move dead-letter messages back to the queue'

  static override description = `Embedded queue: dead messages become visible again with their receive count reset. SQS: starts a message move task from the queue's dead-letter queue (RedrivePolicy) back to it.

Exit codes: 0, 1 the queue failed, 2 bad URL or missing queue.`

  static override examples = [
    {description: 'Give the dead messages another go', command: '<%= config.bin %> <%= command.id %> sqlite:./cistern.db#jobs'},
  ]

  static override args = queueArg
  static override flags = {...queueTargetFlags}

  async run(): Promise<QueueRedriveResult> {
    const {args, flags} = await this.parse(QueueRedrive)
    const queue = await operatorQueue({url: args.url ?? flags.queue, region: flags.region, profile: flags.profile, log: this.logger}, 'existing')
    try {
      const redriven = await queue.redrive()
      this.print(redriven < 0 ? 'redrive started' : `redrove ${redriven} message${redriven === 1 ? '' : 's'}`)
      return {redriven}
    } finally {
      await queue.close()
    }
  }
}
