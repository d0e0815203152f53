import {CisternCommand} from '../../core/command.js'
import {serveFlags} from '../../flags/hooks.js'
import {type HooksServeResult, serveHooks} from '../../hooks/serve.js'
import {serveSettings} from '../../hooks/settings.js'

export default class HooksServe extends CisternCommand<HooksServeResult> {
  static override summary = 'Run the hooks service: webhook and cron tasks, their executions, retries and maintenance mode'

  static override description = `The replacement for the CDS hooks µService. Tasks are webhooks (POST|GET|PUT|DELETE
/webhook/<uuid>, no auth: the uuid is the secret; answered 202 with the execution id once stored,
503 when the store does not answer within --intake-timeout — and then not stored) or cron
schedules (5 fields or 6 with seconds, IANA time zone). Each execution runs the task's action:
forward the request (or the JSON payload) over HTTP, put a message on a queue, or run a job of
--jobs (read and checked at start).

Delivery (docs/delivery.md): a target that is down (refused, timed out, 5xx, 429, 401/403) is left
alone for a back-off and its executions wait without an attempt counted; a failure of the execution
itself (a 4xx for this payload, a failing job) is retried with back-off (--retry-delay doubling)
until --retry-max attempts, then it is dead: DONE with last_error, a warn line, counted in
/mon/status and the metrics. The newest --keep executions of each task are kept. Secret headers of
a webhook (Authorization, Cookie, X-Hub-Signature*, X-Api-Key…) are stored as [redacted].

Store: --store redis://host:port/db (several instances may share it: an execution is processed
once) or sqlite:<path> (default: the embedded db file). The task API (/task…, /admin/maintenance)
needs the token from CISTERN_HOOKS_TOKEN or --token-file, sent as "Authorization: Bearer <token>"
or as the original's "X_AUTH_HEADER: base64(<token>)". GET /mon/status, /healthz and /metrics
are open; they answer 503 within 2 s when the store is unreachable.

Maintenance (POST /admin/maintenance?enable=true, or cistern hooks maintenance on): intake and
scheduling continue, processing pauses; off drains the backlog in order. On Redis every instance
follows the flag. SIGTERM/SIGINT stop intake, let running executions finish (those still running
near the end go back to the queue, their jobs stopped) and exit 0 within --stop-timeout, whatever
the store does. The job of an instance that died (kill -9) is stopped before its execution runs
again on the same host.

Flags > environment > the hooks: section of --config > defaults.
Exit codes: 0 stopped by a signal, 1 failure, 2 bad flag, config, jobs file, store URL or port in
use, 3 the store (Redis) is unreachable at start.`

  static override examples = [
    {description: 'Embedded SQLite store on port 8091', command: 'CISTERN_HOOKS_TOKEN=$(cat /etc/cistern/hooks.token) <%= config.bin %> <%= command.id %>'},
    {
      description: 'Redis store, 8 executions at a time, jobs from jobs.yml',
      command: '<%= config.bin %> <%= command.id %> --store redis://127.0.0.1:6379/0 --concurrency 8 --jobs /etc/cistern/jobs.yml --token-file /etc/cistern/hooks.token',
    },
  ]

  static override flags = serveFlags

  async run(): Promise<HooksServeResult> {
    const {flags} = await this.parse(HooksServe)
    return serveHooks(await serveSettings(flags), {signal: this.stopSignal(), log: this.logger.child({component: 'hooks'}), listening: (line) => this.print(line)})
  }
}
