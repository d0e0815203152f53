import {Flags} from '@oclif/core'

import {CisternCommand} from '../../core/command.js'
import {drainFlags, jenkinsFlags, stateFlags} from '../../flags/spigot.js'
import {type DrainSummary, renderSummary} from '../../spigot/drain.js'
import {drainFromFlags} from '../../spigot/from-flags.js'

export default class SpigotDrain extends CisternCommand<DrainSummary> {
  static override summary = 'Replay queued webhooks to Jenkins once it is healthy'

  static override description = `First checks every Jenkins target (health path, then /api/json?tree=quietingDown). When none is
up, nothing is received and the command exits 3 (with --auto-off the spigot is set OFF); a target that
is down is left alone while the others are replayed to. Then it replays the queue: the raw bytes GitHub
sent (so X-Hub-Signature-256 still verifies) with the kept GitHub headers, routed by X-GitHub-Event;
messages queued by the original Lambda are re-serialised.

2xx deletes the message. Refused, timeout, 5xx, 408, 429, 401/403 and a 4xx that several messages get
mean Jenkins is unwell, not the message: it is handed back untouched and the target is tried again
after a back-off; nothing goes dead for it. A 4xx for one message while others pass is retried once,
then dead-lettered with a warn line. A message is deleted only after every Jenkins it is routed to
accepted it, so a killed drain loses nothing (the next one replays it).

A run retries in-process until the queue is empty or --deadline passes; a target down for
--give-up-after with no success is given up. Each repository's webhooks stay in order. --watch keeps
going until SIGTERM and pauses while the spigot is OFF; --only-when-on does nothing while it is OFF.

Exit codes: 0 the queue is empty and nothing went dead (or stopped by a signal), 1 something went dead or
work remains that is not Jenkins' fault (held by another consumer, due after the deadline), 2 bad flag
or config, 3 a Jenkins target was unhealthy and work remains because of it.`

  static override examples = [
    {description: 'One run, e.g. from a systemd timer', command: '<%= config.bin %> <%= command.id %> --jenkins-url http://jenkins.internal:8080/ --only-when-on'},
    {description: 'Keep draining, gently', command: '<%= config.bin %> <%= command.id %> --watch --concurrency 2 --rate 5'},
    {description: 'What would be sent', command: '<%= config.bin %> <%= command.id %> --dry-run'},
  ]

  static override flags = {
    ...jenkinsFlags,
    ...stateFlags,
    ...drainFlags,
    watch: Flags.boolean({default: false, summary: 'Keep draining in the foreground until SIGINT/SIGTERM.'}),
    'dry-run': Flags.boolean({default: false, summary: 'List what would be sent; touch nothing.', exclusive: ['watch']}),
    'only-when-on': Flags.boolean({default: false, summary: 'Do nothing while the spigot is OFF (for cron and timers).'}),
  }

  async run(): Promise<DrainSummary> {
    const {flags} = await this.parse(SpigotDrain)
    const summary = await drainFromFlags(flags, {log: this.logger, signal: this.stopSignal(), interactive: !this.jsonEnabled()})
    this.print(renderSummary(summary))
    return summary
  }
}
