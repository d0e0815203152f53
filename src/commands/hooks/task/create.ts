import {CisternCommand} from '../../../core/command.js'
import {clientFlags, taskFlags} from '../../../flags/hooks.js'
import {clientFrom} from '../../../hooks/client.js'
import {describeTask} from '../../../hooks/describe.js'
import {taskDocument} from '../../../hooks/task-document.js'
import type {TaskView} from '../../../hooks/model.js'

export default class HooksTaskCreate extends CisternCommand<TaskView> {
  static override summary = 'Create a webhook or scheduler task on a running hooks service'

  static override description = `A webhook task gets an intake URL <server>/webhook/<uuid>; a scheduler task runs on its cron
(5 fields, or 6 with leading seconds) in its time zone. Each execution runs the action: --http
forwards the request (or the --payload) to a URL, --queue sends a message to a queue, --job runs a
job of the service's jobs.yml. --file takes a whole task document (JSON or YAML, as POST /task).
A secret header of an http action (Authorization, X-Api-Key…) is never given on the command line
nor stored in the task: --header-from-env names a variable of the service's environment, or
--header-from-file a file on its host; the task shows the name only.

Exit codes: 0 created, 1 refused by the service, 2 bad flag or task (bad cron, unknown time zone),
3 the service is unreachable.`

  static override examples = [
    {description: 'Forward GitHub pushes to Jenkins', command: '<%= config.bin %> <%= command.id %> --name jenkins-push --http http://jenkins:8080/github-webhook/'},
    {
      description: 'Every weekday at 09:00 Paris time, run a job',
      command: `<%= config.bin %> <%= command.id %> --cron "0 9 * * 1-5" --timezone Europe/Paris --job nightly --payload '{"branch":"main"}'`,
    },
    {
      description: "Forward to Jenkins with its credentials from the service's environment (JENKINS_AUTH='Basic …' in hooks.env)",
      command: '<%= config.bin %> <%= command.id %> --http https://jenkins.example.com/github-webhook/ --header-from-env Authorization=JENKINS_AUTH',
    },
    {description: 'Queue webhooks for the spigot', command: '<%= config.bin %> <%= command.id %> --queue sqlite:/var/lib/cistern/cistern.db#spigot --queue-format spigot'},
  ]

  static override flags = {...clientFlags, ...taskFlags}

  async run(): Promise<TaskView> {
    const {flags} = await this.parse(HooksTaskCreate)
    const client = clientFrom(flags)
    const task = await client.createTask(taskDocument(flags))
    this.print(`created ${describeTask(task, client.server)}`)
    return task
  }
}
