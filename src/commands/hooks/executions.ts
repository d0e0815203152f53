import {Args, Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {UsageError} from '../../core/errors.js'
import {integer} from '../../core/flags.js'
import {clientFlags} from '../../flags/hooks.js'
import {type ExecutionStopResult, clientFrom} from '../../hooks/client.js'
import {describeExecution} from '../../hooks/describe.js'
import {type PublicExecution, publicExecution} from '../../hooks/model.js'

type Result = PublicExecution[] | PublicExecution | ExecutionStopResult

export default class HooksExecutions extends CisternCommand<Result> {
  static override summary = 'List the executions of a task, show one, or stop one'

  static override description = `Newest first. With TIMESTAMP: that execution in full (the captured request, the result).
With --stop: stop exactly that execution (a queued or scheduled one is DONE at once; a running one
is aborted by the instance running it). A dead execution (DONE after its last attempt, or refused
for good) shows as DEAD, with its last error. Secret headers of a captured request show as
[redacted]: they are never stored.

Exit codes: 0 ok, 1 no such task or execution, 3 the service is unreachable.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> 0b6c2d56-5d7e-4b3e-9d55-2a1f6bd7a7a4',
    '<%= config.bin %> <%= command.id %> 0b6c2d56-5d7e-4b3e-9d55-2a1f6bd7a7a4 1764141000123000 --json',
    '<%= config.bin %> <%= command.id %> 0b6c2d56-5d7e-4b3e-9d55-2a1f6bd7a7a4 1764141000123000 --stop',
  ]

  static override args = {
    uuid: Args.string({required: true, description: 'Task uuid.'}),
    timestamp: Args.string({description: 'One execution (its timestamp).'}),
  }

  static override flags = {
    ...clientFlags,
    limit: integer({min: 1, summary: 'Show at most this many.'}),
    stop: Flags.boolean({default: false, summary: 'Stop the execution TIMESTAMP.'}),
  }

  async run(): Promise<Result> {
    const {args, flags} = await this.parse(HooksExecutions)
    const client = clientFrom(flags)
    if (flags.stop) {
      if (!args.timestamp) throw new UsageError('--stop needs the execution', 'give its TIMESTAMP after the task uuid')
      const result = await client.stopExecution(args.uuid, args.timestamp)
      this.print(`execution ${result.execution}: ${result.result}`)
      return result
    }
    if (args.timestamp) {
      const execution = publicExecution(await client.execution(args.uuid, args.timestamp))
      this.print(JSON.stringify(execution, null, 2))
      return execution
    }
    const executions = (await client.executions(args.uuid, flags.limit)).map(publicExecution)
    this.print(executions.length === 0 ? 'no executions' : executions.map((e) => describeExecution(e)).join('\n'))
    return executions
  }
}
