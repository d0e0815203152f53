import {z} from 'zod'

import {jobsSchema} from '../core/jobs.js'

/**
 * The `hooks:` section of cistern.yml. Flags win over it, it wins over the defaults.
 *
 *   hooks:
 *     store: redis://127.0.0.1:6379/0
 *     port: 8091
 *     concurrency: 8
 *     jobs: /etc/cistern/jobs.yml
 */
export const hooksConfigSchema = z.strictObject({
  /** redis://host:port/db or sqlite:<path>; default the embedded db file. */
  store: z.string().regex(/^(redis|rediss|sqlite):/, 'expected redis://host:port/db or sqlite:<path>').optional(),
  host: z.string().optional(),
  port: z.number().int().min(0).max(65_535).optional(),
  /** File holding the API token (else CISTERN_HOOKS_TOKEN). */
  tokenFile: z.string().optional(),
  concurrency: z.number().int().min(1).max(256).optional(),
  /** Failed attempts before an execution is DONE with last_error. */
  retryMax: z.number().int().min(1).max(100).optional(),
  /** First retry delay in milliseconds (doubles each time). */
  retryDelayMs: z.number().int().min(0).optional(),
  /** Seconds a claimed execution may go without a heartbeat before another instance takes it. */
  lease: z.number().positive().optional(),
  /** DONE executions kept per task. */
  keep: z.number().int().min(0).optional(),
  /** Seconds a webhook waits for the store before it is answered 503 (and not stored). */
  intakeTimeout: z.number().positive().max(60).optional(),
  /** Largest webhook body in bytes. */
  bodyLimit: z.number().int().positive().optional(),
  /** jobs.yml for job actions (else the jobs: section of the same file). */
  jobs: z.string().optional(),
})
export type HooksConfig = z.infer<typeof hooksConfigSchema>

/** cistern.yml as the hooks service reads it: its hooks: section and the shared jobs: table; the other sections belong to other pieces. */
export const cisternFileSchema = z.looseObject({hooks: hooksConfigSchema.optional(), jobs: jobsSchema.optional()})
