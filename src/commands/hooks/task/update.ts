import {Args} from '@oclif/core'

import {CisternCommand} from '../../../core/command.js'
import {clientFlags, taskFlags} from '../../../flags/hooks.js'
import {clientFrom} from '../../../hooks/client.js'
import {describeTask} from '../../../hooks/describe.js'
import {taskDocument} from '../../../hooks/task-document.js'
import type {TaskView} from '../../../hooks/model.js'

export default class HooksTaskUpdate extends CisternCommand<TaskView> {
  static override summary = 'Change a task: the flags given replace those fields, the rest is kept'

  static override description = `Reads the task, applies --file and the flags given, and replaces it (PUT /task/<uuid>). A
scheduler task's next run is re-planned from the new cron. The type cannot change.

Exit codes: 0 updated, 1 no such task, 2 bad flag or task, 3 the service is unreachable.`

  static override examples = [
    {description: 'Move a schedule to 06:30 New York time', command: '<%= config.bin %> <%= command.id %> 0b6c… --cron "30 6 * * *" --timezone America/New_York'},
    {description: 'Point a webhook task at another URL', command: '<%= config.bin %> <%= command.id %> 0b6c… --http https://jenkins.example.com/github-webhook/'},
  ]

  static override args = {uuid: Args.string({required: true, description: 'Task uuid.'})}
  static override flags = {...clientFlags, ...taskFlags}

  async run(): Promise<TaskView> {
    const {args, flags} = await this.parse(HooksTaskUpdate)
    const client = clientFrom(flags)
    const existing = await client.getTask(args.uuid)
    const task = await client.updateTask(args.uuid, taskDocument(flags, existing))
    this.print(`updated ${describeTask(task, client.server)}`)
    return task
  }
}
