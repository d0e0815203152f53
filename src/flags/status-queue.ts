/**
 * `cistern status-queue work`'s flags (kept apart from src/status-queue/: domain folders do not
 * import @oclif/core). Bad values are usage errors naming the flag (exit 2).
 */
import {Flags} from '@oclif/core'

import {sharedFlags} from '../core/command.js'
import {duration, integer, url} from '../core/flags.js'

export const statusQueueFlags = {
  queue: sharedFlags.queue(),
  config: sharedFlags.config,
  region: sharedFlags.region,
  profile: sharedFlags.profile,
  once: Flags.boolean({summary: 'Post what can be posted now, retrying until --deadline, then exit (else run until SIGINT/SIGTERM).', default: false}),
  deadline: duration({summary: 'With --once: no receive after this long (e.g. 90s, 5m; default 5m).'}),
  'give-up-after': duration({summary: 'With --once: stop when GitHub has been down this long with no success (default 30s).'}),
  concurrency: integer({summary: 'Statuses in flight at once (default 16).', min: 1, max: 100}),
  'any-host': Flags.boolean({summary: 'Accept repositories on any host, not only the GitHub host of GITHUB_URL.', default: false}),
  'github-url': Flags.string({env: 'GITHUB_URL', summary: 'GitHub API base URL (default https://api.github.com; GHE: https://<host>/api/v3).'}),
  'github-token-file': Flags.string({summary: 'Read the GitHub token from this file instead of GITHUB_ACCESS_TOKEN.'}),
  'buildkite-url': url({summary: 'Buildkite web base for target_url (default https://buildkite.com).'}),
  context: Flags.string({summary: 'Status context template (default "buildkite/{pipeline}").'}),
  'max-attempts': integer({summary: 'Dead-letter a message still failing after this many attempts; 0: the queue\'s own limit only (default 10).', min: 0}),
  'dead-letter-queue': Flags.string({
    env: 'CISTERN_DEAD_LETTER_QUEUE',
    summary: 'Where dead letters go: an SQS queue URL when the queue has no redrive policy; a sqlite: URL for the facade\'s store (default: the data dir).',
  }),
}
