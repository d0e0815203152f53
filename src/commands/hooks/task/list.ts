import {Flags} from '@oclif/core'

import {CisternCommand} from '../../../core/command.js'
import {clientFlags} from '../../../flags/hooks.js'
import {clientFrom} from '../../../hooks/client.js'
import {actionOf, table, triggerOf} from '../../../hooks/describe.js'
import type {TaskView} from '../../../hooks/model.js'

export default class HooksTaskList extends CisternCommand<TaskView[]> {
  static override summary = 'List the tasks of a running hooks service'

  static override description = `In creation order unless --sort says otherwise. Exit codes: 0 ok, 2 bad flag, 3 the service is unreachable.`

  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --sort name --json']

  static override flags = {
    ...clientFlags,
    sort: Flags.string({summary: 'created, updated, name, type or uuid; prefix - for descending (default created).'}),
  }

  async run(): Promise<TaskView[]> {
    const {flags} = await this.parse(HooksTaskList)
    const tasks = await clientFrom(flags).listTasks(flags.sort)
    if (tasks.length === 0) this.print('no tasks')
    else {
      this.print(
        table([
          ['UUID', 'TYPE', 'NAME', 'STATE', 'EXECUTIONS', 'TRIGGER', 'ACTION'],
          ...tasks.map((t) => [
            t.uuid,
            t.type,
            t.name ?? '-',
            t.stopped ? 'stopped' : 'started',
            `${t.nb_executions_total} (${t.nb_executions_todo} to do)`,
            triggerOf(t),
            actionOf(t),
          ]),
        ]),
      )
    }
    return tasks
  }
}
