import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {queueArg, queueTargetFlags} from '../../core/queue/flags.js'
import {operatorQueue, parseAttributes, readBody, sendMessages} from '../../core/queue/operator.js'
import type {SendResult} from '../../core/queue/types.js'

export type QueueSendResult = SendResult | {count: number; messages: SendResult[]}

export default class QueueSend extends CisternCommand<QueueSendResult> {
  static override summary = 'Send a message to a queue'

  static override description = `The body comes from --body, --file (- for stdin) or piped stdin, byte for byte (a trailing newline from echo is kept). With --lines every non-empty line is its own message, sent in batches of 10. An embedded queue (sqlite:) is created on first send.

Exit codes: 0 sent, 1 the queue refused it, 2 bad URL, flag or body.`

  static override examples = [
    {description: 'Send a JSON body to the embedded queue', command: `<%= config.bin %> <%= command.id %> sqlite:./cistern.db#jobs --body '{"job":"build"}'`},
    {description: 'Send a file to a FIFO SQS queue', command: '<%= config.bin %> <%= command.id %> https://sqs.eu-west-1.amazonaws.com/123456789012/builds.fifo --file event.json --group-id acme/app'},
    {description: 'One message per line from stdin', command: 'cat ids.txt | <%= config.bin %> <%= command.id %> sqlite:./cistern.db#jobs --lines --json'},
  ]

  static override args = queueArg

  static override flags = {
    ...queueTargetFlags,
    body: Flags.string({char: 'b', summary: 'Message body.'}),
    file: Flags.string({char: 'f', summary: 'Read the body from this file (- for stdin).'}),
    lines: Flags.boolean({summary: 'Send each non-empty line of the body as its own message.', default: false}),
    'group-id': Flags.string({summary: 'Message group: its messages are delivered in order, one in flight at a time (every embedded queue; SQS FIFO queues).'}),
    'dedup-id': Flags.string({summary: 'Deduplication id (not stored again while a message with it is queued).'}),
    delay: Flags.integer({summary: 'Seconds before the message becomes visible (0–900).', min: 0, max: 900}),
    attribute: Flags.string({char: 'a', summary: 'String message attribute key=value (repeatable).', multiple: true}),
  }

  async run(): Promise<QueueSendResult> {
    const {args, flags} = await this.parse(QueueSend)
    const body = await readBody({body: flags.body, file: flags.file})
    const queue = await operatorQueue({url: args.url ?? flags.queue, region: flags.region, profile: flags.profile, log: this.logger}, 'create')
    try {
      const template = {
        groupId: flags['group-id'],
        deduplicationId: flags['dedup-id'],
        delaySeconds: flags.delay,
        attributes: parseAttributes(flags.attribute),
      }
      const results = await sendMessages(queue, body, template, flags.lines)
      for (const r of results) this.print(r.duplicate ? `${r.id} (duplicate: already queued)` : r.id)
      return flags.lines ? {count: results.length, messages: results} : results[0]!
    } finally {
      await queue.close()
    }
  }
}
