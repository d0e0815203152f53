import {CisternCommand} from '../core/command.js'
import {listenFlags} from '../flags/sqs-listen.js'
import type {RunResult} from '../sqs-listener/service.js'

export default class SqsListen extends CisternCommand<RunResult> {
  static override summary = 'Run named jobs from YAML requests on a queue and answer started/working/success/failure'

  static override description = `The replacement for Bang!'s SQS listener. Reads requests {<job_name>: {request_id, parameters}} (YAML, plain or base64) from the job queue, runs the named job of jobs.yml with the parameters as arguments and environment (CISTERN_PARAMS, CISTERN_PARAM_1..N), and answers on the response queue: started, working (output lines, batched), then success or failure. A request is deleted only after its final response; its visibility is extended while the job runs; a request_id completed recently is answered again, not run again. A job that fails is answered failure and is done with (not retried). A bad request (not YAML, not a mapping, several jobs, unknown job, no request_id) is answered failure and goes to the dead letters, with a warn line; on SQS the job queue needs a RedrivePolicy or --dead-letter-queue. A response the response queue refuses is retried; meanwhile no new request is taken.

The config is Bang!'s .sqslistener (aws_region, job_queue_name, response_queue_name, polling_interval, jobs_config_path, logging_config_path) or the sqs-listen: section of a cistern.yml, plus cistern's keys: job_queue_url, response_queue_url (any queue URL, e.g. sqlite:/var/lib/cistern/cistern.db#jobs), dead_letter_queue_url, max_concurrent_jobs, visibility_timeout, job_timeout, response_encoding, bang_command, stop_timeout, completed_window, state_db, working_lines, working_interval. Flags and their environment variables win over the file.

On SIGTERM/SIGINT it stops receiving and lets running jobs finish for stop_timeout seconds; a job still running then is killed, answered with failure "listener stopped", and its request released for another listener.

Exit codes: 0 stopped by a signal, or with --once the queue is empty and every request succeeded or was answered again; 1 with --once when a job failed, a request went dead, or requests remain (held by another listener, retried past the deadline); 2 bad flags or config, or an SQS job queue without a dead-letter queue; 3 with --once when the response queue stayed down and requests remain because of it.`

  static override examples = [
    {description: 'Listen with the config file the original used', command: '<%= config.bin %> <%= command.id %> --config ~/.sqslistener'},
    {description: 'Handle what is queued now, two jobs at a time, then exit', command: 'CONFIG_PATH=/etc/cistern/sqslistener.yml <%= config.bin %> <%= command.id %> --once --concurrency 2'},
    {
      description: 'An SQS job queue without a RedrivePolicy: name where bad requests go',
      command: '<%= config.bin %> <%= command.id %> --dead-letter-queue https://sqs.eu-west-1.amazonaws.com/123456789012/bang-queue-dead',
    },
  ]

  static override flags = listenFlags

  async run(): Promise<RunResult> {
    const {flags} = await this.parse(SqsListen)
    const {runListener, summaryLine} = await import('../sqs-listener/service.js')
    const result = await runListener({
      flags: {config: flags.config, concurrency: flags.concurrency, region: flags.region, profile: flags.profile, deadLetterQueue: flags['dead-letter-queue']},
      once: flags.once,
      deadlineMs: flags.deadline,
      giveUpAfterMs: flags['give-up-after'],
      signal: this.stopSignal(),
      log: this.logger,
    })
    this.print(summaryLine(result))
    return result
  }
}
