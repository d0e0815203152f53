import {Flags} from '@oclif/core'

import {CisternCommand, sharedFlags} from '../../core/command.js'
import {loadWorkerConfig} from '../../codepipeline/config.js'
import type {WorkerSummary} from '../../codepipeline/poller.js'
import {startWorker} from '../../codepipeline/worker.js'

export default class CodepipelineWorkerRun extends CisternCommand<WorkerSummary> {
  static override summary = 'Poll CodePipeline for custom-action jobs, run them and report every result'

  static override description = `Polls each configured custom action type for as many jobs as it has free slots, acknowledges them, runs the handler (command, jenkins or travis) and reports success, progress (continuation token) or failure — an exception in a handler is a failure result, never a silent time-out.

The config is codepipeline.yml or the codepipeline-worker section of a cistern.yml. Secrets come from the environment only (JENKINS_TOKEN, TRAVIS_TOKEN, or the variables the config names). On SIGTERM it stops polling, lets running handlers finish or hand back a continuation token within stopTimeout seconds, and exits 0.

Exit codes: 0 stopped cleanly (or --once round done); 1 a poll or a result report failed; 2 bad config, missing credential variable or region.`

  static override examples = [
    {description: 'Run in the foreground (systemd: examples/codepipeline/cistern-codepipeline-worker.service)', command: '<%= config.bin %> <%= command.id %> --config /etc/cistern/codepipeline.yml'},
    {description: 'One poll round from cron or CI; the jobs it takes finish before exit', command: '<%= config.bin %> <%= command.id %> --config codepipeline.yml --once --json'},
  ]

  static override flags = {
    config: Flags.string({
      char: 'c',
      env: 'CISTERN_CONFIG',
      default: 'codepipeline.yml',
      summary: 'codepipeline.yml, or a cistern.yml with a codepipeline-worker section.',
    }),
    once: Flags.boolean({default: false, summary: 'Poll each action type once, finish the jobs taken, exit.'}),
    region: sharedFlags.region,
    profile: sharedFlags.profile,
  }

  public async run(): Promise<WorkerSummary> {
    const {flags} = await this.parse(CodepipelineWorkerRun)
    const config = await loadWorkerConfig(flags.config)
    const summary = await startWorker(config, {
      logger: this.logger.child({component: 'codepipeline-worker'}),
      // --once honours SIGTERM too: the round's jobs finish or hand back a continuation token.
      signal: this.stopSignal(),
      once: flags.once,
      region: flags.region,
      profile: flags.profile,
    })
    // A poll that failed in a one-shot round, or a result CodePipeline never received, is a failure.
    if (summary.unreported > 0 || (flags.once && summary.pollErrors > 0)) process.exitCode = 1
    this.print(
      `jobs ${summary.jobs}: ${summary.succeeded} succeeded, ${summary.continued} continued, ${summary.failed} failed, ${summary.skipped} skipped` +
        (summary.unreported ? `, ${summary.unreported} NOT reported` : '') +
        (summary.pollErrors ? ` (${summary.pollErrors} poll errors)` : ''),
    )
    return summary
  }
}
