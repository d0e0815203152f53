import {Flags} from '@oclif/core'

import {CisternCommand, sharedFlags} from '../../core/command.js'
import {duration} from '../../core/flags.js'
import {loadWorkerConfig} from '../../codepipeline/config.js'
import type {WorkerSummary} from '../../codepipeline/poller.js'
import {startWorker} from '../../codepipeline/worker.js'

export default class CodepipelineWorkerRun extends CisternCommand<WorkerSummary> {
  static override summary = 'Poll CodePipeline for custom-action jobs, run them and report every result'

  static override description = `Polls each configured custom action type for as many jobs as it has free slots, acknowledges them, runs the handler (command, jenkins or travis) and delivers its result: success, progress (continuation token) or failure — an exception in a handler is a failure result, never a silent time-out. A result CodePipeline throttles or fails is retried until it is delivered.

CodePipeline throttling or unreachable, and a Jenkins or Travis server that is down, are not job failures: the worker backs off, and a job waiting for its CI server is handed back with a continuation token (docs/codepipeline-worker.md).

The config is codepipeline.yml or the codepipeline-worker section of a cistern.yml. Secrets come from the environment only (JENKINS_TOKEN, TRAVIS_TOKEN, or the variables the config names). On SIGTERM it stops polling, lets running handlers finish or hand back a continuation token within stopTimeout seconds, and exits 0.

Exit codes: 0 stopped cleanly, or the --once pass found no more jobs and delivered every result; 1 a result could not be delivered, or --once stopped at its deadline with jobs left; 2 bad config, missing credential variable or region, an unknown action type, AWS credentials refused at start; 3 (--once) CodePipeline, Jenkins or Travis stayed down.`

  static override examples = [
    {description: 'Run in the foreground (systemd: examples/codepipeline/cistern-codepipeline-worker.service)', command: '<%= config.bin %> <%= command.id %> --config /etc/cistern/codepipeline.yml'},
    {description: 'One pass from cron or CI: take the jobs waiting now, finish them, exit', command: '<%= config.bin %> <%= command.id %> --config codepipeline.yml --once --json'},
  ]

  static override flags = {
    config: Flags.string({
      char: 'c',
      env: 'CISTERN_CONFIG',
      default: 'codepipeline.yml',
      summary: 'codepipeline.yml, or a cistern.yml with a codepipeline-worker section.',
    }),
    once: Flags.boolean({default: false, summary: 'Take the jobs waiting now (poll until a poll brings back fewer than asked), finish them, exit.'}),
    deadline: duration({
      default: 300_000,
      defaultHelp: async () => '5m',
      summary: 'With --once: no poll starts after this long (30s, 5m; a bare number is seconds); the jobs taken still finish.',
    }),
    'give-up-after': duration({
      default: 30_000,
      defaultHelp: async () => '30s',
      summary: 'With --once: CodePipeline, Jenkins or Travis down this long with no success ends the run for it (exit 3).',
    }),
    region: sharedFlags.region,
    profile: sharedFlags.profile,
  }

  public async run(): Promise<WorkerSummary> {
    const {flags} = await this.parse(CodepipelineWorkerRun)
    const summary = await startWorker(await loadWorkerConfig(flags.config), {
      logger: this.logger.child({component: 'codepipeline-worker'}),
      // --once honours SIGTERM too: the pass's jobs finish or hand back a continuation token.
      signal: this.stopSignal(),
      once: flags.once,
      deadlineMs: flags.deadline,
      giveUpAfterMs: flags['give-up-after'],
      region: flags.region,
      profile: flags.profile,
    })
    this.print(
      `jobs ${summary.jobs}: ${summary.succeeded} succeeded, ${summary.continued} continued, ${summary.held} handed back, ${summary.failed} failed, ${summary.skipped} skipped` +
        (summary.unreported ? `, ${summary.unreported} NOT reported` : '') +
        (summary.pollErrors ? ` (${summary.pollErrors} poll errors)` : ''),
    )
    return summary
  }
}
