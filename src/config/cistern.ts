import {z} from 'zod'

import {workerSectionSchema} from '../codepipeline/config.js'
import {loadConfig} from '../core/config.js'
import {jobsSchema} from '../core/jobs.js'
import {hooksConfigSchema} from '../hooks/config.js'
import {spigotSchema} from '../spigot/config-file.js'
import {listenerSchema} from '../sqs-listener/config.js'
import {statusQueueSection} from '../status-queue/config.js'

/**
 * cistern.yml: one file, one section per piece, each validated by its piece's own schema; `jobs`
 * is the shared job table (same shape as a jobs.yml). Unknown top-level keys are refused so that a
 * misspelt section name is an error rather than silently ignored.
 */

export const cisternConfigSchema = z
  .object({
    spigot: spigotSchema.optional(),
    'status-queue': statusQueueSection.optional(),
    'codepipeline-worker': workerSectionSchema.optional(),
    'sqs-listen': listenerSchema.optional(),
    hooks: hooksConfigSchema.optional(),
    jobs: jobsSchema.optional(),
  })
  .strict()

export type CisternConfig = z.output<typeof cisternConfigSchema>

/** The top-level sections cistern.yml may have. */
export const CISTERN_SECTIONS = Object.keys(cisternConfigSchema.shape)

export function loadCisternConfig(path: string): Promise<CisternConfig> {
  return loadConfig(path, cisternConfigSchema)
}
