import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {commentFlags, jenkinsFlags, stateFlags} from '../../flags/spigot.js'
import {commenterFrom, openSpigotQueue, openStateFrom} from '../../spigot/command-options.js'
import {resolveSpigotConfig} from '../../spigot/config.js'

export interface ServeResult {
  url: string
  queue: string
  stateBackend: 'local' | 'apigw'
  answered: {accepted: number; forwarded: number; queued: number; rejected: number}
}

export default class SpigotServe extends CisternCommand<ServeResult> {
  static override summary = 'Receive GitHub webhooks: forward them to Jenkins, or queue them while it is down or the spigot is OFF'

  static override description = `The HTTP intake for sites without API Gateway. Point the GitHub webhook (or the one that
pointed at Jenkins) at http://<host>:8090/ — any of /, /webhook, /webhooks, /github-webhook/,
/ghprbhook/ works: routing is by the X-GitHub-Event header.

Per request: with a secret (GITHUB_WEBHOOK_SECRET or --webhook-secret-file) X-Hub-Signature-256 is
verified over the raw bytes (401, nothing queued); no X-GitHub-Event → 400; a payload that is
not JSON (or form-encoded payload=…) → 400; ping → 200. Events are routed (push → github-webhook/,
pull_request and issue_comment → ghprbhook/; more in the config file's spigot.routes); an event
with no route → 202 (or 400 with --unrouted reject). Spigot ON: the raw bytes and GitHub headers are
forwarded with a short timeout (--forward-timeout); if Jenkins refuses, times out or answers an
error, the webhook is queued → 202. Spigot OFF: queued → 202. A 2xx answer is given only once
Jenkins accepted the webhook or the queue holds it. A delivery still waiting in the queue is not
queued twice. Payloads too large for the queue go to S3 (--large-payload-bucket) or get 413.

GET /healthz (state, backlog) and GET /metrics (Prometheus) are served too. SIGTERM/SIGINT stop
accepting, let in-flight requests finish and exit 0.

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
    port: Flags.integer({char: 'p', env: 'PORT', default: 8090, min: 0, max: 65_535, summary: 'Port to listen on (8090: not Jenkins\' 8080).'}),
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
    unrouted: Flags.option({options: ['accept', 'reject'] as const, summary: 'An event with no route: accept (202, logged; default) or reject (400).'})(),
    'large-payload-bucket': Flags.string({
      env: 'CISTERN_LARGE_PAYLOAD_BUCKET',
      summary: 'S3 bucket for payloads larger than the queue allows (else they get 413).',
    }),
    ...stateFlags,
    ...commentFlags,
    comment: Flags.boolean({default: false, summary: 'Comment on pull requests whose webhooks are queued (token from GITHUB_TOKEN).'}),
  }

  async run(): Promise<ServeResult> {
    const {flags} = await this.parse(SpigotServe)
    const log = this.logger
    const config = await resolveSpigotConfig(flags)
    const commenter = commenterFrom(flags, log)
    const state = await openStateFrom(flags, log)
    try {
      const queue = await openSpigotQueue(config, {region: flags.region, profile: flags.profile, log})
      try {
        const {createSpigotServer} = await import('../../spigot/serve.js')
        const largePayloads = config.largePayloadBucket
          ? (await import('../../spigot/large-payload.js')).s3LargePayloadStore({bucket: config.largePayloadBucket, region: flags.region, profile: flags.profile})
          : undefined
        const server = await createSpigotServer({config, queue, state, log, commenter, largePayloads})
        const stop = this.stopSignal()
        const url = await server.listen(flags.port, flags.host)
        if (!config.webhookSecret) log.warn('no webhook secret: anyone who can reach this port can queue webhooks (set GITHUB_WEBHOOK_SECRET)')
        log.info('spigot intake listening', {
          url,
          queue: queue.url,
          state: state.backend,
          jenkins: config.targets.map((t) => t.url),
          forwardTimeoutMs: config.forwardTimeoutMs,
        })
        this.print(`spigot intake listening on ${url} → ${config.targets.map((t) => t.url).join(', ')} (queue ${queue.url})`)
        await new Promise<void>((resolve) => {
          if (stop.aborted) resolve()
          else stop.addEventListener('abort', () => resolve(), {once: true})
        })
        await server.close()
        log.info('spigot intake stopped', {...server.counts})
        return {url, queue: queue.url, stateBackend: state.backend, answered: {...server.counts}}
      } finally {
        await queue.close()
      }
    } finally {
      await state.close()
    }
  }
}
