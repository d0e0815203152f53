import {Flags} from '@oclif/core'

import {CisternCommand, sharedFlags} from '../../core/command.js'
import {loadConfig} from '../../core/config.js'
import {ExitCode} from '../../core/errors.js'
import {cisternFileSchema, resolveSettings} from '../../status-queue/config.js'
import {type StatusQueueSummary, runStatusQueue} from '../../status-queue/worker.js'

export default class StatusQueueWork extends CisternCommand<StatusQueueSummary> {
  static override summary = 'Post GitHub commit statuses for the Buildkite build events in a queue'

  static override description = [
    'Reads Buildkite build events (the EventBridge "detail", or the whole envelope) from a queue and posts one GitHub commit status per event: passed → success, failed → failure, canceled/canceling/not_run/skipped → error, scheduled/running/blocked → pending. Many statuses are in flight at once. A message that can never succeed (malformed, HEAD commit, repository URL without owner, 404/422) goes to the dead-letter queue at once; one that keeps failing goes there after --max-attempts receives, so it never blocks the rest of its FIFO group.',
    'The queue is --queue (or CISTERN_QUEUE); else the original worker\'s API_URL + API_KEY select the API Gateway facade; else the embedded queue. GITHUB_URL is the API base (default https://api.github.com; GitHub Enterprise: https://<host>/api/v3) and GITHUB_ACCESS_TOKEN the token. For a GitHub Enterprise with a private CA, point NODE_EXTRA_CA_CERTS at the CA bundle.',
    'Exit codes: 0 done (or stopped by SIGINT/SIGTERM); 1 with --once when some messages were dead-lettered or left for a retry; 2 bad usage, or GitHub refused GITHUB_ACCESS_TOKEN (401/403), or GITHUB_URL is not the API.',
  ].join('\n\n')

  static override examples = [
    {
      description: 'Work the API Gateway facade of the original service until stopped',
      command: 'API_URL=https://abc123.execute-api.us-east-1.amazonaws.com/prod API_KEY=… GITHUB_ACCESS_TOKEN=… <%= config.bin %> <%= command.id %>',
    },
    {
      description: 'Drain an SQS FIFO queue once into GitHub Enterprise',
      command:
        'GITHUB_URL=https://ghe.example.com/api/v3 GITHUB_ACCESS_TOKEN=… <%= config.bin %> <%= command.id %> --once --queue https://sqs.us-east-1.amazonaws.com/123456789012/buildkite-status.fifo',
    },
  ]

  static override flags = {
    queue: sharedFlags.queue(),
    config: sharedFlags.config,
    region: sharedFlags.region,
    profile: sharedFlags.profile,
    once: Flags.boolean({summary: 'Process what is in the queue, then exit (else run until SIGINT/SIGTERM).', default: false}),
    concurrency: Flags.integer({summary: 'Statuses in flight at once (default 16).', min: 1, max: 100}),
    'any-host': Flags.boolean({summary: 'Accept repositories on any host, not only the GitHub host of GITHUB_URL.', default: false}),
    'github-url': Flags.string({env: 'GITHUB_URL', summary: 'GitHub API base URL (default https://api.github.com; GHE: https://<host>/api/v3).'}),
    'github-token-file': Flags.string({summary: 'Read the GitHub token from this file instead of GITHUB_ACCESS_TOKEN.'}),
    'buildkite-url': Flags.string({summary: 'Buildkite web base for target_url (default https://buildkite.com).'}),
    context: Flags.string({summary: 'Status context template (default "buildkite/{pipeline}").'}),
    'max-attempts': Flags.integer({summary: 'Dead-letter a message still failing after this many receives; 0 leaves it to the queue (default 10).', min: 0}),
  }

  async run(): Promise<StatusQueueSummary> {
    const {flags} = await this.parse(StatusQueueWork)
    const file = flags.config ? (await loadConfig(flags.config, cisternFileSchema))['status-queue'] : undefined
    const settings = resolveSettings({flags, env: process.env, file})
    const summary = await runStatusQueue(settings, {
      once: flags.once,
      signal: this.stopSignal(),
      log: this.logger,
      region: flags.region,
      profile: flags.profile,
    })
    this.print(
      `posted ${summary.delivered}, retried ${summary.retried}, dead-lettered ${summary.dead}, released ${summary.released} (queue ${summary.queue})`,
    )
    if (flags.once && (summary.dead > 0 || summary.retried > 0 || summary.errors > 0)) process.exitCode = ExitCode.failure
    return summary
  }
}
