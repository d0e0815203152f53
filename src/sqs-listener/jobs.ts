/**
 * The listener's jobs.yml: Bang!'s form `<job>: {bang-stacks: [stack files…]}` runs the
 * dispatcher (`bang_command`, default `bang`) with the stack files; any entry in the shared
 * cistern form (`argv:` or `command:`) runs that command. Either way the request's parameters
 * are appended to the arguments and exposed as CISTERN_PARAMS / CISTERN_PARAM_n, and the job's
 * environment is built (core/jobs.ts jobEnvironment): Bang!'s jobs saw the listener's whole
 * environment, `inheritEnv: all` keeps that, explicitly.
 */
import {dirname} from 'node:path'
import {z} from 'zod'

import {loadConfig} from '../core/config.js'
import {inheritEnvSchema, jobsSchema, type JobSpec, type JobsConfig} from '../core/jobs.js'
import {resolvePath} from './config.js'

const envValue = z.union([z.string(), z.number(), z.boolean()]).transform((value) => String(value))

export const bangJobSchema = z
  .object({
    'bang-stacks': z.array(z.string().min(1)).min(1),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), envValue).optional(),
    inheritEnv: inheritEnvSchema.optional(),
    cwd: z.string().min(1).optional(),
    timeout: z.number().positive().optional(),
    description: z.string().optional(),
  })
  .strict()

const isBangJob = (value: unknown): boolean => typeof value === 'object' && value !== null && !Array.isArray(value) && 'bang-stacks' in value

/**
 * Both forms in one file. Relative stack files and cwd resolve against the jobs file's directory
 * (the original passed them to bang as written, relative to wherever the daemon ran).
 */
export function listenerJobsSchema(bangCommand: string[], baseDir: string) {
  return z.record(z.string().min(1), z.unknown()).transform((entries, ctx): JobsConfig => {
    const jobs: JobsConfig = new Map()
    for (const [name, value] of Object.entries(entries)) {
      if (isBangJob(value)) {
        // reportInput: the config loader names what the file holds ("got nothing"), not the whole job.
        const parsed = bangJobSchema.safeParse(value, {reportInput: true})
        if (!parsed.success) {
          for (const issue of parsed.error.issues) ctx.addIssue({...issue, path: [name, ...issue.path]})
          continue
        }
        const job = parsed.data
        const spec: JobSpec = {name, argv: [...bangCommand, ...job['bang-stacks'].map((file) => resolvePath(file, baseDir))]}
        if (job.env) spec.env = job.env
        if (job.inheritEnv) spec.inheritEnv = job.inheritEnv
        if (job.cwd) spec.cwd = resolvePath(job.cwd, baseDir)
        if (job.timeout !== undefined) spec.timeoutSeconds = job.timeout
        jobs.set(name, spec)
        continue
      }
      const parsed = jobsSchema.safeParse({[name]: value}, {reportInput: true})
      if (!parsed.success) {
        for (const issue of parsed.error.issues) ctx.addIssue({...issue})
        continue
      }
      for (const spec of parsed.data.values()) {
        if (spec.cwd) spec.cwd = resolvePath(spec.cwd, baseDir)
        jobs.set(name, spec)
      }
    }
    return jobs
  })
}

export async function loadListenerJobs(path: string, bangCommand: string[]): Promise<JobsConfig> {
  return loadConfig(path, listenerJobsSchema(bangCommand, dirname(path)))
}
