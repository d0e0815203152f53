import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {commentFlags, jenkinsFlags, stateFlags} from '../../flags/spigot.js'
import {UNROUTED} from '../../spigot/config.js'
import {type ServeSummary, serveSpigot} from '../../spigot/serve.js'

export default class SpigotServe extends CisternCommand<ServeSummary> {
  static override summary = 'Receive GitHub webhooks: forward them to Jenkins, or queue them while it is down or the spigot is OFF'

  static override description = `The HTTP intake for sites without API Gateway. Point the GitHub webhook (or the one that pointed at Jenkins) at http://<host>:8090/. Any of /, /webhook, /webhooks, /github-webhook/ and /ghprbhook/ works: routing is by the X-GitHub-Event header.

With a secret (GITHUB_WEBHOOK_SECRET or --webhook-secret-file), X-Hub-Signature-256 is verified over the raw bytes: a wrong or missing signature gets 401 and nothing is queued. No X-GitHub-Event gets 400, a payload that is not JSON (or form-encoded payload=…) gets 400, a ping gets 200.

Events are routed: push to github-webhook/, pull_request and issue_comment to ghprbhook/, more in the config file's spigot.routes. An event with no rule of its own goes to the "*" rule, by default github-webhook/ where Jenkins got every event before (--unrouted accept answers 202 and drops it with a warning, reject answers 400).

Spigot ON: the raw bytes and GitHub's headers are forwarded with a short timeout (--forward-timeout). If Jenkins refuses, times out or answers an error, the webhook is queued and answered 202; for a back-off after such a failure, webhooks are queued at once. While a repository has webhooks queued, its new ones are queued behind them, so Jenkins gets each repository's webhooks in order. Spigot OFF: every webhook is queued (202).

A 2xx answer is given only once Jenkins accepted the webhook or the queue holds it. A delivery still waiting in the queue is not queued twice. Payloads too large for the queue go to S3 (--large-payload-bucket) or get 413.

GET /healthz (state, backlog) and GET /metrics (Prometheus) are served too. On SIGTERM or SIGINT serve stops accepting connections, answers what is in flight, closes keep-alive connections and exits 0.

Exit codes: 0 stopped by a signal, 1 failure, 2 bad flag, config or port in use.`

  static override examples = [
    {description: 'Embedded queue and state, Jenkins on this host', command: 'JENKINS_URL=http://127.0.0.1:8080/ GITHUB_WEBHOOK_SECRET=… <%= config.bin %> <%= command.id %>'},
    {
      description: 'SQS FIFO queue, S3 for big payloads, state from the original API Gateway stage',
      command:
        '<%= config.bin %> <%= command.id %> --jenkins-url https://jenkins.example.com/ --queue sqs://spigot.fifo --large-payload-bucket spigot-overflow --api-name spigot',
    },
  ]

  static override flags = {
    port: Flags.integer({char: 'p', env: 'PORT', default: 8090, min: 0, max: 65_535, summary: "Port to listen on (8090: not Jenkins' 8080)."}),
    host: Flags.string({
      env: 'CISTERN_HOST',
      default: '0.0.0.0',
      summary: 'Address to bind: 0.0.0.0 (all interfaces, so GitHub can reach it) or 127.0.0.1 behind a reverse proxy.',
    }),
    ...jenkinsFlags,
    'webhook-secret-file': Flags.string({summary: 'File holding the GitHub webhook secret (else GITHUB_WEBHOOK_SECRET).'}),
    'forward-timeout': Flags.integer({
      env: 'CISTERN_FORWARD_TIMEOUT',
      min: 100,
      max: 60_000,
      summary: 'Milliseconds to wait for Jenkins before queueing instead (default 3000; GitHub waits 10 s).',
    }),
    unrouted: Flags.option({
      options: UNROUTED,
      env: 'CISTERN_SPIGOT_UNROUTED',
      summary: 'An event with no rule of its own: forward it by the "*" rule (default: github-webhook/), accept (202, dropped with a warning) or reject (400).',
    })(),
    'large-payload-bucket': Flags.string({
      env: 'CISTERN_LARGE_PAYLOAD_BUCKET',
      summary: 'S3 bucket for payloads larger than the queue allows (else they get 413).',
    }),
    ...stateFlags,
    ...commentFlags,
    comment: Flags.boolean({default: false, summary: 'Comment on pull requests whose webhooks are queued (token from GITHUB_TOKEN).'}),
  }

  async run(): Promise<ServeSummary> {
    const {flags} = await this.parse(SpigotServe)
    return serveSpigot(flags, {log: this.logger, signal: this.stopSignal(), announce: (line) => this.print(line)})
  }
}
