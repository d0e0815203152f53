import {Flags} from '@oclif/core'

import {CisternCommand} from '../core/command.js'
import type {RunResult} from '../sqs-listener/service.js'

export default class SqsListen extends CisternCommand<RunResult> {
  static override summary = 'Run named jobs from YAML requests on a queue and answer started/working/success/failure'

  static override description = `The replacement for Bang!'s SQS listener. Reads requests {<job_name>: {request_id, parameters}} (YAML, plain or base64) from the job queue, runs the named job of jobs.yml with the parameters as arguments and environment (CISTERN_PARAMS, CISTERN_PARAM_1..N), and answers on the response queue: started, working (output lines, batched), then success or failure. A request is deleted only after its final response; its visibility is extended while the job runs; a request_id completed recently is answered again, not run again. A bad request (not YAML, not a mapping, several jobs, unknown job, no request_id) gets a failure response and goes to the dead-letter queue.

The config file is Bang!'s .sqslistener (aws_region, job_queue_name, response_queue_name, polling_interval, jobs_config_path, logging_config_path) plus cistern's keys: job_queue_url, response_queue_url (any queue URL, e.g. sqlite:/var/lib/cistern/cistern.db#jobs), max_concurrent_jobs, visibility_timeout, job_timeout, response_encoding, bang_command, stop_timeout, completed_window, state_db, working_lines, working_interval.

On SIGTERM/SIGINT it stops receiving and lets running jobs finish for stop_timeout seconds; a job still running then is killed, answered with failure "listener stopped", and its request released for another listener.

Exit codes: 0 stopped by a signal (or, with --once, every request succeeded or was answered again); 1 with --once when some request failed or was bad; 2 bad flags or config.`

  static override examples = [
    {description: 'Listen with the config file the original used', command: '<%= config.bin %> <%= command.id %> --config ~/.sqslistener'},
    {description: 'Handle what is queued now, two jobs at a time, then exit', command: 'CONFIG_PATH=/etc/cistern/sqslistener.yml <%= config.bin %> <%= command.id %> --once --concurrency 2'},
  ]

  static override flags = {
    config: Flags.string({
      char: 'c',
      env: 'CONFIG_PATH',
      summary: 'The listener config (.sqslistener YAML). Default ~/.sqslistener.',
    }),
    once: Flags.boolean({summary: 'Handle the requests queued now, then exit (else run until SIGINT/SIGTERM).', default: false}),
    concurrency: Flags.integer({summary: 'Jobs run at once; overrides max_concurrent_jobs (default 1).', min: 1, max: 100}),
  }

  async run(): Promise<RunResult> {
    const {flags} = await this.parse(SqsListen)
    const {runListener} = await import('../sqs-listener/service.js')
    const {defaultConfigPath} = await import('../sqs-listener/config.js')
    const result = await runListener({
      configPath: flags.config ?? defaultConfigPath(),
      once: flags.once,
      concurrency: flags.concurrency,
      signal: this.stopSignal(),
      log: this.logger,
    })
    this.print(
      `${result.received} request(s): ${result.succeeded} succeeded, ${result.failed} failed, ${result.badRequests} bad, ` +
        `${result.answeredAgain} answered again, ${result.released} released, ${result.duplicates} duplicate(s) dropped`,
    )
    if (flags.once && (result.failed > 0 || result.badRequests > 0)) process.exitCode = 1
    return result
  }
}
