import {z} from 'zod'

import {loadConfig} from '../core/config.js'
import {jobsSchema} from '../core/jobs.js'

/**
 * cistern.yml: one file, one section per piece. `jobs` is the shared job table (same shape as a
 * jobs.yml); the other sections are validated by their piece's own schema (wired in here as each
 * piece lands — until then any mapping is accepted). Unknown top-level keys are refused so that a
 * misspelt section name is an error rather than silently ignored.
 */
const section = z.record(z.string(), z.unknown())

export const cisternConfigSchema = z
  .object({
    spigot: section.optional(),
    'status-queue': section.optional(),
    'codepipeline-worker': section.optional(),
    'sqs-listen': section.optional(),
    hooks: section.optional(),
    jobs: jobsSchema.optional(),
  })
  .strict()

export type CisternConfig = z.output<typeof cisternConfigSchema>

/** The top-level sections cistern.yml may have. */
export const CISTERN_SECTIONS = Object.keys(cisternConfigSchema.shape)

export function loadCisternConfig(path: string): Promise<CisternConfig> {
  return loadConfig(path, cisternConfigSchema)
}
