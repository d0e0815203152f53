/**
 * The hooks commands' flags (oclif stays out of src/hooks/). Values are parsed here; what they mean
 * is resolved in src/hooks (settings.ts for serve, task-document.ts for the task commands).
 */
import {Flags} from '@oclif/core'

import {sharedFlags} from '../core/command.js'
import {duration, integer} from '../core/flags.js'
import {DEFAULT_SERVER} from '../hooks/client.js'

/** How the client commands find the service. */
export const clientFlags = {
  server: Flags.string({env: 'CISTERN_HOOKS_URL', default: DEFAULT_SERVER, summary: 'Base URL of the running hooks service.'}),
  'token-file': Flags.string({summary: 'File holding the API token (else CISTERN_HOOKS_TOKEN).'}),
}

/** Flags that describe a task (create, update). */
export const taskFlags = {
  file: Flags.string({char: 'f', summary: 'Task document (JSON or YAML) as POST /task takes it; other task flags are applied on top.'}),
  type: Flags.option({options: ['webhook', 'scheduler'] as const, summary: 'Task type (default: scheduler with --cron, else webhook).'})(),
  name: Flags.string({summary: 'A name to recognise the task by.'}),
  method: Flags.option({options: ['GET', 'POST', 'PUT', 'DELETE'] as const, summary: 'webhook: the method /webhook/<uuid> accepts (default POST).'})(),
  cron: Flags.string({summary: 'scheduler: cron expression, 5 fields or 6 with leading seconds ("0 9 * * 1-5").'}),
  timezone: Flags.string({summary: 'scheduler: IANA time zone of the cron (default UTC).'}),
  payload: Flags.string({summary: 'scheduler: JSON payload handed to the action.'}),
  http: Flags.string({summary: 'Action: forward the request (or payload) to this URL.', exclusive: ['queue', 'job']}),
  'http-method': Flags.string({summary: 'http action: method to use (default: the received one, POST for scheduler).'}),
  header: Flags.string({multiple: true, summary: 'http action: extra header "Name: value" (repeatable); not for secrets (see --header-from-env).'}),
  'header-from-env': Flags.string({
    multiple: true,
    summary: 'http action: header whose value the service reads from its environment, "Name=VARIABLE" (repeatable), e.g. "Authorization=JENKINS_AUTH".',
  }),
  'header-from-file': Flags.string({
    multiple: true,
    summary: 'http action: header whose value the service reads from a file on its host, "Name=/path" (repeatable).',
  }),
  timeout: integer({min: 1, max: 600, summary: 'http action: seconds to wait for the target (default 10).'}),
  queue: Flags.string({summary: 'Action: send a message to this queue URL (sqlite:…#name, SQS URL, sqs://name).', exclusive: ['http', 'job']}),
  'queue-format': Flags.option({options: ['execution', 'body', 'spigot'] as const, summary: 'queue action: message shape (default execution).'})(),
  job: Flags.string({summary: "Action: run this job of the service's jobs.yml.", exclusive: ['http', 'queue']}),
  'job-param': Flags.string({multiple: true, summary: 'job action: parameter appended to the job (repeatable).'}),
}

/** `hooks serve`. Flags > environment > the hooks: section of --config > defaults (src/hooks/settings.ts). */
export const serveFlags = {
  store: Flags.string({env: 'CISTERN_HOOKS_STORE', summary: 'redis://host:port/db or sqlite:<path> (default: the embedded db file).'}),
  port: integer({char: 'p', env: 'CISTERN_HOOKS_PORT', min: 0, max: 65_535, summary: 'Port to listen on (default 8091).'}),
  host: Flags.string({env: 'CISTERN_HOST', summary: 'Address to bind (default 0.0.0.0; 127.0.0.1 behind a reverse proxy).'}),
  'token-file': Flags.string({summary: 'File holding the API token (else CISTERN_HOOKS_TOKEN).'}),
  concurrency: integer({env: 'CISTERN_HOOKS_CONCURRENCY', min: 1, max: 256, summary: 'Executions processed at the same time (default 4).'}),
  'retry-max': integer({min: 1, max: 100, summary: 'Failed attempts before an execution is dead: DONE with last_error (default 3). A target that is down does not count.'}),
  'retry-delay': duration({unit: 'ms', min: 0, summary: 'Wait before the first retry (ms, or 2s…); doubles each time, with jitter (default 1000).'}),
  lease: duration({unit: 's', min: 1000, summary: 'How long an execution may run without a heartbeat before another instance takes it over (s, default 60).'}),
  keep: integer({min: 0, summary: 'Finished executions kept per task (default 10).'}),
  'body-limit': integer({min: 1, summary: 'Largest webhook body in bytes; larger gets 413 (default 1048576).'}),
  'intake-timeout': duration({unit: 's', summary: 'How long a webhook waits for the store before it is answered 503, and then not stored (s, default 5).'}),
  jobs: Flags.string({env: 'CISTERN_JOBS', summary: 'jobs.yml for job actions, read and checked at start (else the jobs: section of --config).'}),
  'stop-timeout': duration({unit: 's', min: 0, default: 30_000, summary: 'On SIGTERM: how long running executions get to finish; the process exits within it whatever the store does (s).'}),
  config: sharedFlags.config,
}
