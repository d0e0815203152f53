/**
 * GET /mon/status: what an instance says about itself and the store it shares. The client commands
 * parse it with this schema (`hooks maintenance status`).
 */
import {z} from 'zod'

export const serviceStatusSchema = z.object({
  version: z.string(),
  store: z.object({kind: z.string(), location: z.string(), reachable: z.boolean(), error: z.string().optional()}),
  maintenance: z.boolean(),
  /** Executions waiting in the work queue (-1: the store did not answer). */
  queue_length: z.number(),
  /** Executions this instance runs now. */
  in_flight: z.number(),
  /** The work queue as the store counts it (absent when the store did not answer). */
  executions: z
    .object({queued: z.number(), in_flight: z.number(), delayed: z.number(), dead: z.number(), oldest_age_seconds: z.number()})
    .optional(),
  /** Executions this instance declared dead since it started (each also had its warn line). */
  dead_letters: z.number(),
  /** Action targets this instance holds back now (docs/delivery.md: their executions wait, not counted as attempts). */
  targets_down: z.array(z.object({target: z.string(), reason: z.string(), since: z.string()})),
})
export type ServiceStatus = z.infer<typeof serviceStatusSchema>
