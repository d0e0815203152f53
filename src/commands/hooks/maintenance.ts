import {Args} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {clientFlags} from '../../flags/hooks.js'
import {clientFrom} from '../../hooks/client.js'
import type {ServiceStatus} from '../../hooks/status.js'

export default class HooksMaintenance extends CisternCommand<ServiceStatus> {
  static override summary = 'Turn maintenance mode on or off, or show it: intake and scheduling continue, processing pauses'

  static override description = `on: executions keep being accepted and scheduled but none is processed (every instance on
the same Redis follows). off: the backlog is processed in order. status: the flag, the queue
length, the store and the version (GET /mon/status).

Exit codes: 0 ok, 2 bad argument or token, 3 the service is unreachable.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> on',
    '<%= config.bin %> <%= command.id %> off',
    '<%= config.bin %> <%= command.id %> status --json',
  ]

  static override args = {
    state: Args.string({options: ['on', 'off', 'status'], default: 'status', description: 'on, off or status.'}),
  }

  static override flags = {...clientFlags}

  async run(): Promise<ServiceStatus> {
    const {args, flags} = await this.parse(HooksMaintenance)
    const client = clientFrom(flags)
    if (args.state !== 'status') await client.setMaintenance(args.state === 'on')
    const status = await client.status()
    this.print(
      `maintenance ${status.maintenance ? 'ON: processing paused' : 'OFF'} — ${status.queue_length} queued, ${status.in_flight} running here, store ${status.store.location}, version ${status.version}`,
    )
    return status
  }
}
