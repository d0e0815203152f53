import {Args} from '@oclif/core'

import {sharedFlags} from '../command.js'

/** The queue URL, the first argument of every `cistern queue` command. */
export const queueArg = {
  url: Args.string({
    description: 'Queue URL: sqlite:<path>#<name>, https://sqs.<region>.amazonaws.com/<acct>/<name>, sqs://<name> or apigw+https://…/<stage>/ (default: --queue / CISTERN_QUEUE).',
  }),
}

export const queueTargetFlags = {
  queue: sharedFlags.queue('Queue URL when no argument is given.'),
  region: sharedFlags.region,
  profile: sharedFlags.profile,
}
