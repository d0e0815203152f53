import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {UsageError} from '../../core/errors.js'
import {queueArg, queueTargetFlags} from '../../core/queue/flags.js'
import {type MessageView, messageView, operatorQueue, renderMessages} from '../../core/queue/operator.js'

export default class QueuePeek extends CisternCommand<MessageView[]> {
  static override summary = 'Look at waiting messages without receiving them'

  static override description = `Shows messages that are waiting (visible or delayed) without hiding them or counting a receive. --dead shows dead messages instead, with the reason they died (attribute cistern.deadReason): the embedded queue's, and the API Gateway facade's (kept in its embedded dead-letter store). Only the embedded queue can peek at waiting messages: SQS and the facade cannot look without receiving (use "queue receive" there; an SQS queue's dead letters are in its dead-letter queue, which "queue receive" reads). --json prints an array of {id, body, receiveCount, attempts, sentAt, groupId, attributes}.

Exit codes: 0, 1 the queue failed, 2 bad URL, missing queue, or a backend that cannot peek.`

  static override examples = [
    {description: 'The next five messages of the embedded queue', command: '<%= config.bin %> <%= command.id %> sqlite:./cistern.db#jobs --max 5'},
    {description: 'Dead messages and why they died', command: '<%= config.bin %> <%= command.id %> sqlite:./cistern.db#jobs --dead --json'},
    {description: 'What status-queue set aside from the API Gateway facade', command: 'API_KEY=… <%= config.bin %> <%= command.id %> apigw+https://abc123.execute-api.us-east-1.amazonaws.com/prod/ --dead'},
  ]

  static override args = queueArg

  static override flags = {
    ...queueTargetFlags,
    max: Flags.integer({char: 'n', summary: 'Messages to show.', default: 10, min: 1, max: 1000}),
    dead: Flags.boolean({summary: 'Show dead messages instead.', default: false}),
  }

  async run(): Promise<MessageView[]> {
    const {args, flags} = await this.parse(QueuePeek)
    const queue = await operatorQueue({url: args.url ?? flags.queue, region: flags.region, profile: flags.profile, log: this.logger}, 'existing')
    try {
      if (flags.dead ? !queue.peekDead : !queue.capabilities.peek) {
        throw new UsageError(`${queue.kind} queues cannot be looked at without receiving`, 'use "cistern queue receive" (messages come back after the visibility timeout)')
      }
      const messages = flags.dead ? await queue.peekDead!(flags.max) : await queue.peek(flags.max)
      const views = messages.map(messageView)
      this.print(renderMessages(views))
      return views
    } finally {
      await queue.close()
    }
  }
}
