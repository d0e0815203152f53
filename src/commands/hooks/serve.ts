import {Flags} from '@oclif/core'

import {CisternCommand, sharedFlags} from '../../core/command.js'
import {UsageError} from '../../core/errors.js'
import {readToken} from '../../hooks/client.js'
import type {JobsConfig} from '../../core/jobs.js'
import type {HooksConfig} from '../../hooks/config.js'

export interface HooksServeResult {
  url: string
  store: string
  stopped: true
}

export default class HooksServe extends CisternCommand<HooksServeResult> {
  static override summary = 'Run the hooks service: webhook and cron tasks, their executions, retries and maintenance mode'

  static override description = `The replacement for the CDS hooks µService. Tasks are webhooks (POST|GET|PUT|DELETE
/webhook/<uuid>, no auth: the uuid is the secret; answered 202 with the execution id once stored) or
cron schedules (5 fields or 6 with seconds, IANA time zone). Each execution runs the task's action:
forward the request (or the JSON payload) over HTTP, put a message on a queue, or run a job of
--jobs. A failed attempt is retried with exponential back-off (--retry-delay doubling) until
--retry-max attempts, then it is DONE with last_error. The newest --keep executions of each task
are kept.

Store: --store redis://host:port/db (several instances may share it: an execution is processed
once) or sqlite:<path> (default: the embedded db file). The task API (/task…, /admin/maintenance)
needs the token from CISTERN_HOOKS_TOKEN or --token-file, sent as "Authorization: Bearer <token>"
or as the original's "X_AUTH_HEADER: base64(<token>)". GET /mon/status, /healthz and /metrics
are open.

Maintenance (POST /admin/maintenance?enable=true, or cistern hooks maintenance on): intake and
scheduling continue, processing pauses; off drains the backlog in order. On Redis every instance
follows the flag. SIGTERM/SIGINT stop intake, let running executions finish for --stop-timeout
seconds (those still running go back to the queue) and exit 0.

Flags > environment > the hooks: section of --config > defaults.
Exit codes: 0 stopped by a signal, 1 failure, 2 bad flag, config, store URL or port in use.`

  static override examples = [
    {description: 'Embedded SQLite store on port 8091', command: 'CISTERN_HOOKS_TOKEN=$(cat /etc/cistern/hooks.token) <%= config.bin %> <%= command.id %>'},
    {
      description: 'Redis store, 8 executions at a time, jobs from jobs.yml',
      command: '<%= config.bin %> <%= command.id %> --store redis://127.0.0.1:6379/0 --concurrency 8 --jobs /etc/cistern/jobs.yml --token-file /etc/cistern/hooks.token',
    },
  ]

  static override flags = {
    store: Flags.string({env: 'CISTERN_HOOKS_STORE', summary: 'redis://host:port/db or sqlite:<path> (default: the embedded db file).'}),
    port: Flags.integer({char: 'p', env: 'CISTERN_HOOKS_PORT', min: 0, max: 65_535, summary: 'Port to listen on (default 8091).'}),
    host: Flags.string({env: 'CISTERN_HOST', summary: 'Address to bind (default 0.0.0.0; 127.0.0.1 behind a reverse proxy).'}),
    'token-file': Flags.string({summary: 'File holding the API token (else CISTERN_HOOKS_TOKEN).'}),
    concurrency: Flags.integer({env: 'CISTERN_HOOKS_CONCURRENCY', min: 1, max: 256, summary: 'Executions processed at the same time (default 4).'}),
    'retry-max': Flags.integer({min: 1, max: 100, summary: 'Failed attempts before an execution is DONE with last_error (default 3).'}),
    'retry-delay': Flags.integer({min: 0, summary: 'Milliseconds before the first retry; doubles each time (default 1000).'}),
    lease: Flags.integer({min: 1, summary: 'Seconds an execution may run without a heartbeat before another instance takes it over (default 60).'}),
    keep: Flags.integer({min: 0, summary: 'Finished executions kept per task (default 10).'}),
    'body-limit': Flags.integer({min: 1, summary: 'Largest webhook body in bytes; larger gets 413 (default 1048576).'}),
    jobs: Flags.string({env: 'CISTERN_JOBS', summary: 'jobs.yml for job actions (else the jobs: section of --config).'}),
    'stop-timeout': Flags.integer({default: 30, min: 0, summary: 'Seconds running executions get to finish on SIGTERM.'}),
    config: sharedFlags.config,
  }

  async run(): Promise<HooksServeResult> {
    const {flags} = await this.parse(HooksServe)
    const log = this.logger
    const {hooks: config = {}, jobs} = await loadHooksConfig(flags.config)
    const token = readToken(flags['token-file'] ?? config.tokenFile)
    if (!token) throw new UsageError('no API token for the task API', 'set CISTERN_HOOKS_TOKEN or --token-file (e.g. openssl rand -hex 32 > /etc/cistern/hooks.token)')
    const {startHooksService, DEFAULT_PORT} = await import('../../hooks/service.js')
    const stop = this.stopSignal()
    const service = await startHooksService({
      store: flags.store ?? config.store,
      port: flags.port ?? config.port ?? DEFAULT_PORT,
      host: flags.host ?? config.host ?? '0.0.0.0',
      token,
      concurrency: flags.concurrency ?? config.concurrency,
      retryMax: flags['retry-max'] ?? config.retryMax,
      retryDelayMs: flags['retry-delay'] ?? config.retryDelayMs,
      leaseMs: (flags.lease ?? config.lease ?? 60) * 1000,
      keep: flags.keep ?? config.keep,
      bodyLimit: flags['body-limit'] ?? config.bodyLimit,
      jobsFile: flags.jobs ?? config.jobs,
      jobs,
      log: log.child({component: 'hooks'}),
    })
    this.print(`hooks service listening on ${service.url} (store ${service.store.location})`)
    await new Promise<void>((resolve) => {
      if (stop.aborted) resolve()
      else stop.addEventListener('abort', () => resolve(), {once: true})
    })
    await service.stop(flags['stop-timeout'] * 1000)
    return {url: service.url, store: service.store.location, stopped: true}
  }
}

async function loadHooksConfig(path: string | undefined): Promise<{hooks?: HooksConfig; jobs?: JobsConfig}> {
  if (!path) return {}
  const [{loadConfig}, {cisternFileSchema}] = await Promise.all([import('../../core/config.js'), import('../../hooks/config.js')])
  return loadConfig(path, cisternFileSchema)
}
