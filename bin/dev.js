#!/usr/bin/env -S node --import tsx
// Runs the TypeScript sources directly (needs `tsx`); the built CLI is bin/run.js.
import {execute} from '@oclif/core'

await execute({development: true, dir: import.meta.url})
