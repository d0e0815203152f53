#!/usr/bin/env node
import {execute} from '@oclif/core/execute'

// The AWS SDK prints a multi-line "Node >= 22 from early 2027" notice on every client start, which
// breaks JSON-lines stderr for cron/systemd. The move to Node 22 is tracked in the README instead.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

await execute({dir: import.meta.url})
