import {Args} from '@oclif/core'

import {CisternCommand} from '../../../core/command.js'
import {clientFlags} from '../../../flags/hooks.js'
import {clientFrom} from '../../../hooks/client.js'
import {describeTask} from '../../../hooks/describe.js'
import type {TaskView} from '../../../hooks/model.js'

export default class HooksTaskStart extends CisternCommand<TaskView> {
  static override summary = 'Start a task: its webhook accepts requests again, its schedule runs again'
  static override description = 'Exit codes: 0 ok, 1 no such task, 3 the service is unreachable.'
  static override examples = ['<%= config.bin %> <%= command.id %> 0b6c2d56-5d7e-4b3e-9d55-2a1f6bd7a7a4']
  static override args = {uuid: Args.string({required: true, description: 'Task uuid.'})}
  static override flags = {...clientFlags}

  async run(): Promise<TaskView> {
    const {args, flags} = await this.parse(HooksTaskStart)
    const client = clientFrom(flags)
    const task = await client.setStopped(args.uuid, false)
    this.print(describeTask(task, client.server))
    return task
  }
}
