import {CisternCommand} from '../../core/command.js'
import {loadConfig} from '../../core/config.js'
import {statusQueueFlags} from '../../flags/status-queue.js'
import {cisternFileSchema, resolveSettings} from '../../status-queue/config.js'
import {type StatusQueueSummary, describeSummary, runStatusQueue} from '../../status-queue/worker.js'

export default class StatusQueueWork extends CisternCommand<StatusQueueSummary> {
  static override summary = 'Post GitHub commit statuses for the Buildkite build events in a queue'

  static override description = [
    'Reads Buildkite build events (the EventBridge "detail", or the whole envelope) from a queue and posts one GitHub commit status per event: passed → success, failed → failure, canceled/canceling/not_run/skipped → error, scheduled/running/blocked → pending. Many statuses are in flight at once; each commit\'s events are posted in order.',
    'GitHub failing, down, slow or rate-limiting is never a message\'s fault: its statuses wait (nothing is received meanwhile) and are posted when GitHub is back. A 403 from one organisation holds only that organisation\'s statuses. A message that can never succeed (malformed, HEAD commit, repository URL without owner, a 4xx GitHub gives it again while it accepts others) is dead-lettered, loudly.',
    'The queue is --queue (or CISTERN_QUEUE); else the original worker\'s API_URL + API_KEY select the API Gateway facade; else the embedded queue. GITHUB_URL is the API base (default https://api.github.com; GitHub Enterprise: https://<host>/api/v3) and GITHUB_ACCESS_TOKEN the token. For a GitHub Enterprise with a private CA, point NODE_EXTRA_CA_CERTS at the CA bundle.',
    'Exit codes: 0 done (--once: the queue is empty and nothing went dead), or stopped by SIGINT/SIGTERM; 1 something went dead, or work remains that is not GitHub\'s fault; 2 bad usage or config, or GITHUB_URL is not the API; 3 GitHub was down, rate-limited or refused the token (401), and work remains because of it.',
  ].join('\n\n')

  static override examples = [
    {
      description: 'Work the API Gateway facade of the original service until stopped',
      command: 'API_URL=https://abc123.execute-api.us-east-1.amazonaws.com/prod API_KEY=… GITHUB_ACCESS_TOKEN=… <%= config.bin %> <%= command.id %>',
    },
    {
      description: 'Drain an SQS FIFO queue once into GitHub Enterprise, giving up after two minutes',
      command:
        'GITHUB_URL=https://ghe.example.com/api/v3 GITHUB_ACCESS_TOKEN=… <%= config.bin %> <%= command.id %> --once --deadline 2m --queue https://sqs.us-east-1.amazonaws.com/123456789012/buildkite-status.fifo',
    },
  ]

  static override flags = statusQueueFlags

  async run(): Promise<StatusQueueSummary> {
    const {flags} = await this.parse(StatusQueueWork)
    const file = flags.config ? (await loadConfig(flags.config, cisternFileSchema))['status-queue'] : undefined
    const summary = await runStatusQueue(resolveSettings({flags, env: process.env, file}), {
      once: flags.once,
      signal: this.stopSignal(),
      log: this.logger,
      region: flags.region,
      profile: flags.profile,
    })
    this.print(describeSummary(summary))
    return summary
  }
}
