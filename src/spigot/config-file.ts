import {z} from 'zod'

import {loadConfig} from '../core/config.js'
import {UNROUTED} from './config.js'

/**
 * The schema of the `spigot:` section of a config file, apart from src/spigot/config.ts so that
 * commands given no file load neither zod nor yaml.
 */

const httpUrl = z
  .string()
  .refine((value) => /^https?:\/\/[^/\s]+/.test(value), {error: 'expected an http(s) URL such as https://jenkins.example.com/'})

const relativePath = z
  .string()
  .min(1)
  .refine((value) => !/^[a-z]+:\/\//i.test(value), {error: 'expected a path relative to the Jenkins URL, e.g. github-webhook/'})

/**
 * The `spigot:` section of cistern.yml:
 *
 *   spigot:
 *     queue: sqs://spigot.fifo
 *     jenkinsUrl: https://jenkins.example.com/
 *     targets:                                 # more Jenkins, by name (token from the named env var)
 *       - {name: legacy, url: https://old-jenkins.example.com/, user: bot, tokenEnv: LEGACY_JENKINS_TOKEN}
 *     routes:
 *       push: github-webhook/                  # shorthand: the default target
 *       pull_request: {path: ghprbhook/, targets: [default, legacy]}
 *       release: {path: generic-webhook-trigger/invoke}
 *       issue_comment: null                    # drop a default route
 *       '*': github-webhook/                   # events without a rule (unrouted: forward)
 *     unrouted: forward                        # or accept (202, not forwarded) or reject (400)
 *     healthPath: /health/
 *     forwardTimeoutMs: 3000
 *     largePayloadBucket: my-webhook-overflow
 *     webhookSecretFile: /etc/cistern/webhook-secret
 */
export const spigotSchema = z
  .object({
    queue: z.string().min(1).optional(),
    jenkinsUrl: httpUrl.optional(),
    targets: z
      .array(
        z
          .object({
            name: z.string().min(1),
            url: httpUrl,
            user: z.string().min(1).optional(),
            tokenEnv: z.string().min(1).optional(),
          })
          .strict(),
      )
      .optional(),
    routes: z
      .record(
        z.string().min(1),
        z.union([relativePath, z.object({path: relativePath, targets: z.array(z.string().min(1)).min(1).optional()}).strict(), z.null()]),
      )
      .optional(),
    unrouted: z.enum(UNROUTED).optional(),
    healthPath: z.string().min(1).optional(),
    forwardTimeoutMs: z.number().int().min(100).max(60_000).optional(),
    largePayloadBucket: z.string().min(3).optional(),
    webhookSecretFile: z.string().min(1).optional(),
  })
  .strict()

export type SpigotFileConfig = z.infer<typeof spigotSchema>

/** The `spigot:` section of a config file (other sections are left to their pieces). */
export async function loadSpigotSection(path: string): Promise<SpigotFileConfig> {
  const whole = await loadConfig(path, z.object({spigot: spigotSchema.optional()}).loose())
  return whole.spigot ?? {}
}
