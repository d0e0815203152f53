/** `cistern sqs-listen`'s flags (oclif loads every file under src/commands as a command: they live here). */
import {Flags} from '@oclif/core'

import {sharedFlags} from '../core/command.js'
import {duration, integer, url} from '../core/flags.js'

export const listenFlags = {
  config: Flags.string({
    char: 'c',
    env: 'CONFIG_PATH',
    summary: 'The listener config: a .sqslistener, or a cistern.yml with an sqs-listen: section. Default: CISTERN_CONFIG when it has that section, else ~/.sqslistener.',
  }),
  once: Flags.boolean({summary: 'Handle the requests that can be handled now, then exit (else run until SIGINT/SIGTERM).', default: false}),
  concurrency: integer({min: 1, max: 100, summary: 'Jobs run at once; overrides max_concurrent_jobs (default 1).'}),
  'dead-letter-queue': url({
    summary: 'SQS queue for bad requests when the job queue has no RedrivePolicy (without either the listener refuses to start); overrides dead_letter_queue_url.',
  }),
  deadline: duration({
    default: 300_000,
    defaultHelp: async () => '5m',
    summary: 'With --once: receive no more requests after this long (e.g. 90s, 10m); what is left is reported.',
  }),
  'give-up-after': duration({
    default: 30_000,
    defaultHelp: async () => '30s',
    summary: 'With --once: stop when the response queue has refused every response for this long.',
  }),
  region: sharedFlags.region,
  profile: sharedFlags.profile,
}
