import {Args} from '@oclif/core'

import {CisternCommand} from '../../../core/command.js'
import {clientFlags} from '../../../flags/hooks.js'
import {clientFrom} from '../../../hooks/client.js'

export default class HooksTaskDelete extends CisternCommand<{deleted: number; requested: number}> {
  static override summary = 'Delete tasks and all their executions'
  static override description = 'Several uuids are deleted in one request (DELETE /task/bulk). Exit codes: 0 ok, 1 no such task, 3 the service is unreachable.'
  static override examples = ['<%= config.bin %> <%= command.id %> 0b6c2d56-5d7e-4b3e-9d55-2a1f6bd7a7a4', '<%= config.bin %> <%= command.id %> UUID1 UUID2 UUID3']
  static override strict = false
  static override args = {uuid: Args.string({required: true, description: 'Task uuid (several allowed).'})}
  static override flags = {...clientFlags}

  async run(): Promise<{deleted: number; requested: number}> {
    const {argv, flags} = await this.parse(HooksTaskDelete)
    const result = await clientFrom(flags).deleteTasks(argv as string[])
    this.print(`deleted ${result.deleted} of ${result.requested} task${result.requested === 1 ? '' : 's'}`)
    return result
  }
}
