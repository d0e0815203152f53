import {Flags} from '@oclif/core'

import {sharedFlags} from '../core/command.js'
import {duration, integer, positiveNumber, url} from '../core/flags.js'

/**
 * The spigot commands' flags (toggle, status, serve, drain, maintenance). They live here, not in
 * src/spigot/, so the domain folder never imports @oclif/core; src/spigot/command-options.ts turns
 * the parsed values into services. Bad values are usage errors naming the flag (exit 2).
 */

/** Where the Jenkins targets, routes and queue come from (keys match config.ts SpigotFlags). */
export const jenkinsFlags = {
  queue: sharedFlags.queue('Spigot queue URL (default the embedded sqlite:<data dir>/cistern.db#spigot).'),
  'jenkins-url': url({env: 'JENKINS_URL', summary: 'Jenkins base URL (user and API token from JENKINS_USER and JENKINS_TOKEN).'}),
  config: sharedFlags.config,
  region: sharedFlags.region,
  profile: sharedFlags.profile,
}

/** How Jenkins' health is checked (status, drain, maintenance). */
export const healthFlags = {
  'health-path': Flags.string({summary: 'Jenkins health-check path (default health/, then login, then api/json on older cores).'}),
  'health-timeout': duration({unit: 'ms', default: 5000, defaultHelp: async () => '5s', summary: 'Time per health check (a bare number is milliseconds; 5s, 500ms).'}),
}

/** Where the spigot's ON/OFF lives. */
export const stateFlags = {
  backend: Flags.option({
    options: ['local', 'apigw'] as const,
    env: 'CISTERN_SPIGOT_BACKEND',
    summary: 'State backend: local (the embedded db file) or apigw (the API Gateway stage variable spigot_state). Default apigw when an API is named, else local.',
  })(),
  'api-id': Flags.string({env: 'CISTERN_SPIGOT_API_ID', summary: 'apigw: REST API id of the original spigot.'}),
  'api-name': Flags.string({env: 'CISTERN_SPIGOT_API_NAME', summary: 'apigw: REST API name (looked up with GetRestApis).', exclusive: ['api-id']}),
  stage: Flags.string({env: 'CISTERN_SPIGOT_STAGE', default: 'prod', summary: 'apigw: stage holding the spigot_state variable.'}),
  'state-db': Flags.string({env: 'CISTERN_SPIGOT_STATE_DB', summary: 'local: the SQLite file holding the state (default <data dir>/cistern.db).', hidden: true}),
}

/** The original scheduled drain's EventBridge rule: only `toggle` switches it. */
export const drainRuleFlags = {
  'drain-rule': Flags.string({
    env: 'CISTERN_SPIGOT_DRAIN_RULE',
    summary: 'EventBridge rule scheduling the original drain Lambda: enabled when the state turns ON, disabled on OFF.',
  }),
}

/** GitHub pull-request comments (drain: "Jenkins is back"; serve: "queued"). */
export const commentFlags = {
  comment: Flags.boolean({default: false, summary: 'Comment on pull requests when their webhooks are queued (serve) or replayed (drain); token from GITHUB_TOKEN.'}),
  'github-url': url({env: 'GITHUB_URL', summary: 'GitHub API base URL for comments (GitHub Enterprise: https://<host>/api/v3).'}),
}

/** Replay tuning shared by drain and maintenance. */
export const drainFlags = {
  ...healthFlags,
  concurrency: integer({default: 4, min: 1, max: 256, summary: 'Deliveries in flight at once.'}),
  rate: positiveNumber({summary: 'At most this many deliveries per second (default unlimited).'}),
  'auto-off': Flags.boolean({default: false, summary: 'When no Jenkins target is healthy, set the spigot OFF (as the original drain Lambda did).'}),
  deadline: duration({default: 300_000, defaultHelp: async () => '5m', summary: 'One run retries what failed, in-process, until this long after it started (5m, 90s; a bare number is seconds).'}),
  'give-up-after': duration({
    default: 30_000,
    defaultHelp: async () => '30s',
    summary: 'A Jenkins target down this long with no success ends the run for it (exit 3; a bare number is seconds).',
  }),
  'delivery-timeout': duration({unit: 'ms', default: 30_000, defaultHelp: async () => '30s', summary: 'Time Jenkins gets to answer one replayed webhook (a bare number is milliseconds; 30s).'}),
  'visibility-timeout': integer({min: 1, max: 43_200, summary: 'Seconds a received message stays hidden (extended while it is being delivered).'}),
  'retry-delay': integer({min: 0, max: 900, summary: 'Seconds before a refused message is retried (default: back-off by attempts).'}),
  'dead-letter-queue': Flags.string({
    env: 'CISTERN_DEAD_LETTER_QUEUE',
    summary: 'SQS: where dead letters go when the queue has no redrive policy (a queue URL).',
  }),
  ...commentFlags,
}
