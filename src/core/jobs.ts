// CONTRACT STUB — the implementation is being written (helper "core-consume"). Signatures are fixed.

/** One job of jobs.yml. */
export interface JobSpec {
  name: string
  /** argv: the program and its fixed arguments (a `command:` string is split without a shell). */
  argv: string[]
  env?: Record<string, string>
  cwd?: string
  /** Seconds; SIGTERM at the deadline, SIGKILL a grace period later. */
  timeoutSeconds?: number
}

export type JobsConfig = Map<string, JobSpec>

export interface RunJobOptions {
  /** Appended to argv, and exposed as CISTERN_PARAMS (JSON array) and CISTERN_PARAM_1..N. */
  parameters?: string[]
  /** Extra environment (added to process.env and the job's env). */
  env?: Record<string, string>
  cwd?: string
  timeoutSeconds?: number
  /** Aborting kills the job (SIGTERM, then SIGKILL after killGraceMs). */
  signal?: AbortSignal
  killGraceMs?: number
  /** Each output line, in order, as it arrives. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void
  /** How many trailing lines to keep in the result (default 20). */
  keepLines?: number
}

export interface JobResult {
  exitCode: number | null
  signal?: string
  timedOut: boolean
  aborted: boolean
  /** Last lines of combined output, in order. */
  lastLines: string[]
  durationMs: number
  /** Could not start (ENOENT…): the message. */
  startError?: string
}

export async function loadJobs(_path: string): Promise<JobsConfig> {
  throw new Error('loadJobs: not implemented yet')
}

export async function runJob(_job: JobSpec, _options: RunJobOptions = {}): Promise<JobResult> {
  throw new Error('runJob: not implemented yet')
}
