#!/usr/bin/env node
import module from 'node:module'

// Node 22.1+ keeps V8's compiled code of every module loaded from here on (in the OS temp dir);
// compiling is about a third of a cold start's module loading. Node 20 has no such API.
module.enableCompileCache?.()

// The AWS SDK prints a multi-line "Node >= 22 from early 2027" notice on every client start, which
// breaks JSON-lines stderr for cron/systemd. The move to Node 22 is tracked in the README instead.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

// Imported, not a static import: that would load oclif before the cache is on.
const {execute} = await import('@oclif/core/execute')
await execute({dir: import.meta.url})
