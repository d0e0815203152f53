import {statSync} from 'node:fs'
import {StringDecoder} from 'node:string_decoder'
import type {Readable} from 'node:stream'
import {z} from 'zod'

import {loadConfig} from './config.js'
import {UsageError, errorMessage} from './errors.js'
import {maskSecrets, registerEnvironmentSecrets} from './secrets.js'

/** One job of jobs.yml. */
export interface JobSpec {
  name: string
  /** argv: the program and its fixed arguments (a `command:` string is split without a shell). */
  argv: string[]
  env?: Record<string, string>
  /**
   * Variables the job takes from cistern's own environment (jobs.yml `inheritEnv:`): names, or
   * prefixes ending in `*` (`AWS_*`); `all` passes the whole environment, secrets included — what
   * Bang!'s listener did. Unset: only the base (see jobEnvironment).
   */
  inheritEnv?: string[] | 'all'
  cwd?: string
  /** Seconds; SIGTERM at the deadline, SIGKILL a grace period later. */
  timeoutSeconds?: number
}

export type JobsConfig = Map<string, JobSpec>

export interface RunJobOptions {
  /** Appended to argv, and exposed as CISTERN_PARAMS (JSON array) and CISTERN_PARAM_1..N. */
  parameters?: string[]
  /** The variables that describe the request (CISTERN_REQUEST_ID, CISTERN_HOOKS_TASK, CP_JOB_ID…): over the job's own env. */
  env?: Record<string, string>
  /** Values to mask in this job's output besides every secret cistern knows (one job's own credentials). */
  mask?: string[]
  cwd?: string
  timeoutSeconds?: number
  /** Aborting kills the job (SIGTERM, then SIGKILL after killGraceMs). */
  signal?: AbortSignal
  killGraceMs?: number
  /** Each output line, in order, as it arrives, secrets masked. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void
  /** How many trailing lines to keep in the result (default 20). */
  keepLines?: number
}

export interface JobResult {
  exitCode: number | null
  signal?: string
  timedOut: boolean
  aborted: boolean
  /** Last lines of combined output, in order, secrets masked. */
  lastLines: string[]
  durationMs: number
  /** Could not start (ENOENT…): the message. */
  startError?: string
}

// --- jobs.yml ---------------------------------------------------------------------------------------

/**
 * Split a command line into argv the way a shell would split words, without a shell: whitespace
 * separates, '…' is literal, "…" is literal except \" \\ \$ \`, a backslash outside quotes escapes
 * the next character. Nothing is expanded ($VAR, $(…), globs, ~, ; and | are plain characters).
 */
export function splitCommand(line: string): string[] {
  const words: string[] = []
  let word = ''
  let inWord = false
  let i = 0
  while (i < line.length) {
    const ch = line.charAt(i)
    if (ch === "'") {
      const end = line.indexOf("'", i + 1)
      if (end < 0) throw new UsageError('unterminated single quote')
      word += line.slice(i + 1, end)
      inWord = true
      i = end + 1
    } else if (ch === '"') {
      i++
      let closed = false
      while (i < line.length) {
        const c = line.charAt(i)
        if (c === '"') {
          closed = true
          i++
          break
        }
        if (c === '\\' && i + 1 < line.length && '"\\$`\n'.includes(line.charAt(i + 1))) {
          if (line.charAt(i + 1) !== '\n') word += line.charAt(i + 1)
          i += 2
          continue
        }
        word += c
        i++
      }
      if (!closed) throw new UsageError('unterminated double quote')
      inWord = true
    } else if (ch === '\\') {
      if (i + 1 >= line.length) throw new UsageError('a trailing backslash escapes nothing')
      if (line.charAt(i + 1) !== '\n') {
        word += line.charAt(i + 1)
        inWord = true
      }
      i += 2
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word)
      word = ''
      inWord = false
      i++
    } else {
      word += ch
      inWord = true
      i++
    }
  }
  if (inWord) words.push(word)
  return words
}

const envValue = z.union([z.string(), z.number(), z.boolean()]).transform((value) => String(value))

const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * jobs.yml `inheritEnv:`: `all`, or a list of variable names and `PREFIX_*` patterns. Exported for
 * job forms defined elsewhere (the listener's bang-stacks jobs).
 */
export const inheritEnvSchema = z.union([z.literal('all'), z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/))])

/** One job as written in YAML: exactly one of `argv` or `command`. */
const jobSchema = z
  .object({
    argv: z.array(z.string().min(1)).min(1).optional(),
    command: z.string().optional(),
    env: z.record(z.string().regex(VARIABLE_NAME), envValue).optional(),
    inheritEnv: inheritEnvSchema.optional(),
    cwd: z.string().min(1).optional(),
    timeout: z.number().positive().optional(),
    description: z.string().optional(),
  })
  .strict()
  .superRefine((job, ctx) => {
    if (job.argv && job.command !== undefined) {
      ctx.addIssue({code: 'custom', path: ['command'], message: 'give either argv (a list) or command (a string), not both'})
      return
    }
    if (!job.argv && job.command === undefined) {
      ctx.addIssue({code: 'custom', path: [], message: 'missing what to run; expected argv (a list) or command (a string)'})
      return
    }
    if (job.command !== undefined) {
      try {
        if (splitCommand(job.command).length === 0) ctx.addIssue({code: 'custom', path: ['command'], message: 'expected a command line, got an empty one'})
      } catch (error) {
        ctx.addIssue({code: 'custom', path: ['command'], message: `cannot split the command line: ${errorMessage(error)}`})
      }
    }
  })

/** The jobs mapping (jobs.yml, or the `jobs:` section of cistern.yml), validated into JobSpecs. */
export const jobsSchema = z
  .record(z.string().min(1), jobSchema)
  .transform((jobs): JobsConfig => new Map(Object.entries(jobs).map(([name, job]) => [name, toSpec(name, job)])))

function toSpec(name: string, job: z.output<typeof jobSchema>): JobSpec {
  const spec: JobSpec = {name, argv: job.argv ?? splitCommand(job.command ?? '')}
  if (job.env) spec.env = job.env
  if (job.inheritEnv) spec.inheritEnv = job.inheritEnv
  if (job.cwd) spec.cwd = job.cwd
  if (job.timeout !== undefined) spec.timeoutSeconds = job.timeout
  return spec
}

/** True when every top-level value looks like a job (`argv:` or `command:`): how `config check` tells jobs.yml apart. */
export function looksLikeJobs(data: unknown): boolean {
  if (!data || typeof data !== 'object' || Array.isArray(data)) return false
  const values = Object.values(data)
  return values.length > 0 && values.every((job) => job && typeof job === 'object' && ('argv' in job || 'command' in job))
}

export async function loadJobs(path: string): Promise<JobsConfig> {
  return loadConfig(path, jobsSchema)
}

// --- environment ------------------------------------------------------------------------------------

/** What every program expects to find, taken from cistern's own environment when it has them. */
export const BASE_VARIABLES = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'] as const

/**
 * A job's environment is built, not inherited (issue 12), in this order, later wins:
 *   1. the base: PATH, HOME, USER, LOGNAME, LANG, LC_ALL, TZ, TMPDIR, as cistern has them;
 *   2. what the job names in jobs.yml `inheritEnv:` — names, `PREFIX_*` patterns, or `all` (the
 *      whole environment, as Bang!'s listener passed it: the way to keep that behaviour, explicitly);
 *   3. the job's own `env:`;
 *   4. the variables that describe the request (`request`: CISTERN_REQUEST_ID, CISTERN_HOOKS_*,
 *      CP_*, CISTERN_PARAMS…), which a job's config cannot override.
 * So cistern's own secrets (GitHub, Jenkins and Travis tokens, AWS keys, the webhook secret, the
 * hooks API token) reach a job only when the job names them.
 */
export function jobEnvironment(job: Pick<JobSpec, 'env' | 'inheritEnv'>, request: Record<string, string> = {}, parent: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {}
  const take = (name: string) => {
    const value = parent[name]
    if (value !== undefined) env[name] = value
  }
  for (const name of BASE_VARIABLES) take(name)
  if (job.inheritEnv === 'all') {
    for (const name of Object.keys(parent)) take(name)
  } else {
    for (const wanted of job.inheritEnv ?? []) {
      if (!wanted.endsWith('*')) take(wanted)
      else for (const name of Object.keys(parent)) if (name.startsWith(wanted.slice(0, -1))) take(name)
    }
  }
  return {...env, ...job.env, ...request}
}

// --- runner -----------------------------------------------------------------------------------------

const MAX_LINE = 64 * 1024
/** After the job exits, how long to keep reading output that a leftover background child holds open. */
const OUTPUT_GRACE_MS = 1000

/** Jobs still running, killed (with their process group) if cistern itself exits. */
const running = new Set<number>()
let exitHookInstalled = false
function trackExit(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const pid of running) killGroup(pid, 'SIGTERM')
  })
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    // Negative pid: the job's whole process group (a shell script's children die with it).
    process.kill(-pid, signal)
  } catch {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

/**
 * Run a job without a shell, in the environment jobEnvironment() builds. Parameters are appended
 * to argv and exposed as CISTERN_PARAMS (JSON) and CISTERN_PARAM_1..N. Every line of its output is
 * masked (every secret cistern knows, and options.mask) before any caller sees it. The job runs in
 * its own process group so a timeout or abort kills what it started too: SIGTERM, then SIGKILL
 * after killGraceMs. Never throws for a job that fails.
 */
export async function runJob(job: JobSpec, options: RunJobOptions = {}): Promise<JobResult> {
  const started = Date.now()
  const keep = Math.max(0, options.keepLines ?? 20)
  const lastLines: string[] = []
  const parameters = options.parameters ?? []
  const timeoutSeconds = options.timeoutSeconds ?? job.timeoutSeconds
  const killGraceMs = options.killGraceMs ?? 5000
  const cwd = options.cwd ?? job.cwd
  const result = (fields: Partial<JobResult>): JobResult => ({
    exitCode: null,
    timedOut: false,
    aborted: false,
    lastLines,
    durationMs: Date.now() - started,
    ...fields,
  })

  if (options.signal?.aborted) return result({aborted: true, startError: 'aborted before it started'})
  if (job.argv.length === 0 || !job.argv[0]) return result({startError: `job ${job.name} has no program to run`})
  if (cwd) {
    try {
      if (!statSync(cwd).isDirectory()) return result({startError: `cwd ${cwd} is not a directory`})
    } catch {
      return result({startError: `cwd ${cwd} does not exist`})
    }
  }

  const paramEnv: Record<string, string> = {CISTERN_PARAMS: JSON.stringify(parameters)}
  parameters.forEach((value, index) => (paramEnv[`CISTERN_PARAM_${index + 1}`] = value))
  // Whatever the job could print from cistern's environment or its own env: known before it runs.
  registerEnvironmentSecrets(process.env)
  if (job.env) registerEnvironmentSecrets(job.env)
  const extraMask = options.mask ?? []

  const {execa} = await import('execa')
  const [file, ...args] = job.argv
  const child = execa(file, [...args, ...parameters], {
    shell: false,
    cwd,
    env: jobEnvironment(job, {...options.env, ...paramEnv}),
    extendEnv: false,
    stdin: 'ignore',
    buffer: false,
    reject: false,
    detached: true,
    cleanup: false,
    windowsHide: true,
  })

  const onLine = (raw: string, stream: 'stdout' | 'stderr') => {
    const line = maskSecrets(raw, extraMask)
    if (keep > 0) {
      lastLines.push(line)
      if (lastLines.length > keep) lastLines.shift()
    }
    try {
      options.onLine?.(line, stream)
    } catch {
      // a faulty callback must not break the job's output
    }
  }
  const reading = Promise.all([readLines(child.stdout, 'stdout', onLine), readLines(child.stderr, 'stderr', onLine)])

  let timedOut = false
  let aborted = false
  let killTimer: NodeJS.Timeout | undefined
  const terminate = () => {
    if (child.pid === undefined || killTimer) return
    killGroup(child.pid, 'SIGTERM')
    killTimer = setTimeout(() => child.pid !== undefined && killGroup(child.pid, 'SIGKILL'), killGraceMs)
  }
  const timeoutTimer =
    timeoutSeconds && timeoutSeconds > 0
      ? setTimeout(() => {
          timedOut = true
          terminate()
        }, timeoutSeconds * 1000)
      : undefined
  const onAbort = () => {
    aborted = true
    terminate()
  }
  options.signal?.addEventListener('abort', onAbort, {once: true})
  if (options.signal?.aborted) onAbort()
  if (child.pid !== undefined) {
    running.add(child.pid)
    trackExit()
  }

  // The job is over when its process exits. A background child it left behind may still hold the
  // output pipes open: read what is there for a moment, then stop listening rather than wait for it.
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) =>
    child.once('exit', (code, signal) => resolve({code, signal})),
  )
  const settled = child.then((outcome) => ({outcome}))
  try {
    const first = await Promise.race([settled, exited])
    if ('outcome' in first) {
      const {outcome} = first
      await reading
      if (outcome.failed && outcome.exitCode === undefined && outcome.signal === undefined) {
        // Spawn failure (ENOENT, EACCES): say which command.
        const code = (outcome as {code?: string}).code
        return result({startError: maskSecrets(code === 'ENOENT' ? `${file}: command not found` : outcome.shortMessage ?? outcome.message ?? 'could not start', extraMask)})
      }
      return result({exitCode: outcome.exitCode ?? null, signal: outcome.signal, timedOut, aborted})
    }
    let grace: NodeJS.Timeout | undefined
    await Promise.race([reading, new Promise<void>((resolve) => (grace = setTimeout(resolve, OUTPUT_GRACE_MS)))])
    clearTimeout(grace)
    child.stdout.destroy()
    child.stderr.destroy()
    return result({exitCode: first.code, signal: first.signal ?? undefined, timedOut, aborted})
  } finally {
    clearTimeout(timeoutTimer)
    // The main process has exited; a group member may linger (a background child). Kill the group
    // now if we were stopping it anyway, so the SIGKILL escalation does not outlive the job.
    if (killTimer) {
      clearTimeout(killTimer)
      if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL')
    }
    if (child.pid !== undefined) running.delete(child.pid)
    options.signal?.removeEventListener('abort', onAbort)
  }
}

/** Lines of a stream, in order, split on \n (\r\n trimmed), very long lines cut into pieces. */
function readLines(stream: Readable | null | undefined, name: 'stdout' | 'stderr', onLine: (line: string, stream: 'stdout' | 'stderr') => void): Promise<void> {
  if (!stream) return Promise.resolve()
  return new Promise((resolve) => {
    const decoder = new StringDecoder('utf8')
    let pending = ''
    const emit = (text: string) => {
      pending += text
      let at: number
      while ((at = pending.indexOf('\n')) >= 0) {
        onLine(pending.slice(0, at).replace(/\r$/, ''), name)
        pending = pending.slice(at + 1)
      }
      while (pending.length > MAX_LINE) {
        onLine(pending.slice(0, MAX_LINE), name)
        pending = pending.slice(MAX_LINE)
      }
    }
    stream.on('data', (chunk: Buffer) => emit(decoder.write(chunk)))
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      emit(decoder.end())
      if (pending) onLine(pending.replace(/\r$/, ''), name)
      pending = ''
      resolve()
    }
    stream.once('end', finish)
    stream.once('error', finish)
    stream.once('close', finish)
  })
}
