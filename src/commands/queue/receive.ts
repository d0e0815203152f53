import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {queueArg, queueTargetFlags} from '../../core/queue/flags.js'
import {type MessageView, messageView, operatorQueue, renderMessages} from '../../core/queue/operator.js'

export default class QueueReceive extends CisternCommand<MessageView[]> {
  static override summary = 'Receive messages (hidden for the visibility timeout; deleted only with --delete)'

  static override description = `Receives like a consumer would: the messages are hidden for --visibility seconds and come back after that unless --delete is given. Use "queue peek" to look without hiding anything. --json prints an array of {id, body, receiveCount, receiptHandle, sentAt, groupId, attributes}.

Exit codes: 0 (also when the queue is empty), 1 the queue failed, 2 bad URL or missing queue.`

  static override examples = [
    {description: 'Take one message off the embedded queue', command: '<%= config.bin %> <%= command.id %> sqlite:./cistern.db#jobs --delete'},
    {description: 'Long-poll SQS for up to 10 messages as JSON', command: '<%= config.bin %> <%= command.id %> sqs://builds --max 10 --wait 20 --json'},
  ]

  static override args = queueArg

  static override flags = {
    ...queueTargetFlags,
    max: Flags.integer({char: 'n', summary: 'Messages to receive (1–10).', default: 1, min: 1, max: 10}),
    wait: Flags.integer({summary: 'Long-poll up to this many seconds for a first message (0–20).', default: 0, min: 0, max: 20}),
    visibility: Flags.integer({summary: 'Seconds the received messages stay hidden (default: the queue\'s).', min: 0, max: 43_200}),
    delete: Flags.boolean({summary: 'Delete the messages after printing them.', default: false}),
  }

  async run(): Promise<MessageView[]> {
    const {args, flags} = await this.parse(QueueReceive)
    const queue = await operatorQueue({url: args.url ?? flags.queue, region: flags.region, profile: flags.profile, log: this.logger}, 'existing')
    try {
      const messages = await queue.receive({
        maxMessages: flags.max,
        waitSeconds: flags.wait,
        visibilityTimeout: flags.visibility,
        signal: this.stopSignal(),
      })
      const views = messages.map(messageView)
      if (flags.delete && messages.length > 0) {
        await queue.deleteBatch(messages.map((m) => m.receiptHandle))
        for (const view of views) view.deleted = true
      }
      this.print(renderMessages(views))
      return views
    } finally {
      await queue.close()
    }
  }
}
