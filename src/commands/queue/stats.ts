import {CisternCommand} from '../../core/command.js'
import {queueArg, queueTargetFlags} from '../../core/queue/flags.js'
import {operatorQueue, renderStats} from '../../core/queue/operator.js'
import type {QueueStats} from '../../core/queue/types.js'

export default class QueueStatsCommand extends CisternCommand<QueueStats> {
  static override summary = 'Count visible, in-flight, delayed and dead messages'

  static override description = `--json prints {visible, inFlight, delayed, dead, oldestAgeSeconds, nextVisibleAt}; -1 means the backend cannot tell (SQS without a known dead-letter queue; the API Gateway facade, which knows only the dead letters it kept). oldestAgeSeconds (the oldest live message) and nextVisibleAt (when the next in-flight or delayed message shows) are given by the embedded queue, and left out when there is none. On SQS the counts are approximate.

Exit codes: 0, 1 the queue failed, 2 bad URL or missing queue (nothing is created).`

  static override examples = [
    {description: 'Counts of the embedded queue', command: '<%= config.bin %> <%= command.id %> sqlite:./cistern.db#jobs'},
    {description: 'Counts of an SQS queue as JSON', command: '<%= config.bin %> <%= command.id %> https://sqs.us-east-1.amazonaws.com/123456789012/builds --json'},
  ]

  static override args = queueArg
  static override flags = {...queueTargetFlags}

  async run(): Promise<QueueStats> {
    const {args, flags} = await this.parse(QueueStatsCommand)
    const queue = await operatorQueue({url: args.url ?? flags.queue, region: flags.region, profile: flags.profile, log: this.logger}, 'existing')
    try {
      const stats = await queue.stats()
      this.print(renderStats(stats))
      return stats
    } finally {
      await queue.close()
    }
  }
}
