/**
 * The delivery contract (docs/delivery.md), written once: what handling a message can end in
 * (outcomes), how a target's answer becomes one (TargetJudge), when a target is left alone for a
 * while (TargetGates) and what exit code and problem lines a run ends with (runOutcome).
 */
import {type CisternError, type TransportFailureKind, transportFailureOf} from './errors.js'
import {type Logger, silentLogger} from './log.js'
import {type BackoffOptions, backoffDelay, seconds} from './loop.js'

// --- outcomes -------------------------------------------------------------------------------------

interface Labelled {
  /** The piece's own id of the message for log lines: "push 3f2a… acme/widgets", a request_id, a build number. */
  label?: string
}

/** The target took it: deleted (batched). */
export interface Delivered extends Labelled {
  kind: 'delivered'
}
/** A transient failure of this message: hidden for a back-off (default by attempts), received again. Counts as an attempt. */
export interface Retry extends Labelled {
  kind: 'retry'
  reason: string
  delaySeconds?: number
}
/** A permanent failure of this message: moved to the dead letters, loudly. */
export interface Dead extends Labelled {
  kind: 'dead'
  reason: string
}
/** Never attempted (its target is backing off, the worker is stopping): handed back untouched. Not an attempt. */
export interface Released extends Labelled {
  kind: 'released'
  reason: string
  delaySeconds?: number
  /** The target it waits for, when that is why (a one-shot run reports it, and does not wait for a target that gave up). */
  target?: string
}
/** The target is unwell, not the message: released, and the target's gate closes for a back-off. Not an attempt. */
export interface TargetDown extends Labelled {
  kind: 'target-down'
  target: string
  reason: string
  /** 401/403/407: a one-shot run gives up on the target at once; a loop backs off to its cap. */
  credentials: boolean
  /** The target asked for this wait (Retry-After, a rate-limit reset); the gate stays closed at least that long. */
  retryAfterSeconds?: number
}
/** The worker cannot go on at all: released; the run stops and ends with the error's exit code. */
export interface Stop extends Labelled {
  kind: 'stop'
  error: CisternError
}

export type Outcome = Delivered | Retry | Dead | Released | TargetDown | Stop

export const delivered = (): Delivered => ({kind: 'delivered'})
export const retry = (reason: string, delaySeconds?: number): Retry => ({kind: 'retry', reason, delaySeconds})
export const dead = (reason: string): Dead => ({kind: 'dead', reason})
export const released = (reason: string, delaySeconds?: number, target?: string): Released => ({kind: 'released', reason, delaySeconds, target})
export const targetDown = (target: string, reason: string, options: {credentials?: boolean; retryAfterSeconds?: number} = {}): TargetDown => ({
  kind: 'target-down',
  target,
  reason,
  credentials: options.credentials ?? false,
  retryAfterSeconds: options.retryAfterSeconds,
})
export const stop = (error: CisternError): Stop => ({kind: 'stop', error})

const KINDS = new Set<unknown>(['delivered', 'retry', 'dead', 'released', 'target-down', 'stop'])

export function isOutcome(value: unknown): value is Outcome {
  return typeof value === 'object' && value !== null && KINDS.has((value as {kind?: unknown}).kind)
}

// --- target answers → outcomes ------------------------------------------------------------------

/** How a request failed before any answer. */
/** How a request failed without an answer (refused, reset, dns, timeout, tls). */
export type TransportError = TransportFailureKind

/** What a target answered: an HTTP status, or a transport error. */
export type TargetAnswer = {status: number; detail?: string; retryAfterSeconds?: number} | {error: TransportError; detail?: string}

/** The transport error behind a failed request (node:http, undici, fetch, the AWS SDK; causes are followed), if it is one. */
export function transportErrorKind(error: unknown): TransportError | undefined {
  return transportFailureOf(error)?.kind
}

const TRANSPORT_TEXT: Record<TransportError, string> = {refused: 'connection refused', reset: 'connection reset', dns: 'host not found', timeout: 'timed out', tls: 'TLS handshake failed'}
const CREDENTIAL_STATUSES = new Set([401, 403, 407])
const TRANSIENT_STATUSES = new Set([408, 429])

export function describeAnswer(target: string, answer: TargetAnswer): string {
  const detail = answer.detail ? `: ${answer.detail}` : ''
  return 'error' in answer ? `${target}: ${TRANSPORT_TEXT[answer.error]}${detail}` : `${target} answered ${answer.status}${detail}`
}

/** A message a target refused once with a 4xx, and how many successes that target had then. */
interface Suspect {
  status: number
  successes: number
}

/** Distinct messages in a row that got the same 4xx from a target with no success between. */
interface Streak {
  status: number
  successes: number
  messages: Set<string>
}

export interface TargetJudgeOptions {
  /** Distinct messages in a row refused with the same 4xx that make the target, not them, the problem (default 3). */
  suspectsInARow?: number
  /** Suspects remembered per target (oldest forgotten first; default 10,000). */
  maxSuspects?: number
}

/**
 * Turns a target's answer into the outcome of one message (docs/delivery.md, "Target failures are
 * not message failures"). It remembers per target which messages were refused (suspects) and the
 * run of refusals since the last success, and learns of successes from the gates (succeeded()),
 * so a success reported by the consumer or by another judge counts too. Pieces handle what only
 * they know (GitHub's rate-limit headers) before asking it.
 */
export class TargetJudge {
  private readonly suspects = new Map<string, Map<string, Suspect>>()
  private readonly streaks = new Map<string, Streak>()
  private readonly inARow: number
  private readonly maxSuspects: number

  constructor(
    private readonly gates: TargetGates,
    options: TargetJudgeOptions = {},
  ) {
    this.inARow = Math.max(1, options.suspectsInARow ?? 3)
    this.maxSuspects = options.maxSuspects ?? 10_000
  }

  verdict(target: string, messageId: string, answer: TargetAnswer): Outcome {
    const what = describeAnswer(target, answer)
    if ('error' in answer) return targetDown(target, what)
    const {status} = answer
    if (status >= 200 && status < 300) {
      this.gates.succeeded(target)
      this.suspectsOf(target).delete(messageId)
      return delivered()
    }
    if (status >= 500 || TRANSIENT_STATUSES.has(status)) return targetDown(target, what, {retryAfterSeconds: answer.retryAfterSeconds})
    if (CREDENTIAL_STATUSES.has(status)) return targetDown(target, what, {credentials: true})
    return this.refused(target, messageId, status, what)
  }

  /** Any other answer (a 4xx, or a redirect nobody follows): this message's fault, or the target's? */
  private refused(target: string, messageId: string, status: number, what: string): Outcome {
    const successes = this.gates.successes(target)
    const suspects = this.suspectsOf(target)
    const before = suspects.get(messageId)
    if (before && successes > before.successes) {
      suspects.delete(messageId)
      return dead(`${what} again, while it accepted other messages`)
    }
    let streak = this.streaks.get(target)
    if (streak?.status !== status || streak.successes !== successes) {
      streak = {status, successes, messages: new Set()}
      this.streaks.set(target, streak)
    }
    streak.messages.add(messageId)
    if (streak.messages.size >= this.inARow) {
      // Their refusals were the target's doing: none of them is a suspect any more.
      for (const id of streak.messages) suspects.delete(id)
      return targetDown(target, `${what} (${streak.messages.size} different messages in a row)`)
    }
    suspects.delete(messageId)
    suspects.set(messageId, {status, successes})
    if (suspects.size > this.maxSuspects) {
      const oldest = suspects.keys().next()
      if (!oldest.done) suspects.delete(oldest.value)
    }
    return retry(`${what} (retried once to tell a refused message from a refusing target)`)
  }

  private suspectsOf(target: string): Map<string, Suspect> {
    let suspects = this.suspects.get(target)
    if (!suspects) this.suspects.set(target, (suspects = new Map<string, Suspect>()))
    return suspects
  }
}

// --- target gates -------------------------------------------------------------------------------

export interface TargetGatesOptions {
  /** A one-shot run gives targets up (givenUp); a loop never does. */
  once?: boolean
  /** One-shot: give a target up after this long down with no success (default 30 s). */
  giveUpAfterMs?: number
  /** How long a gate stays closed after the n-th failure in a row (default 1 s doubling to 60 s, with jitter). */
  backoff?: BackoffOptions
  log?: Logger
  /** Clock (tests). */
  now?: () => number
}

/** A target that is down now, for the run's result. */
export interface TargetDownReport {
  target: string
  reason: string
  /** ISO time of the first failure with no success since. */
  since: string
  /** One-shot: the run gave it up (down too long, or it refused the credentials). */
  givenUp: boolean
}

interface Gate {
  /** Closures in a row (the back-off's attempt number). */
  closures: number
  closedUntil: number
  /** First failure with no success since; undefined while the target is well. */
  downSince?: number
  reason: string
  credentials: boolean
  successes: number
  /** The "giving up" line was written. */
  givenUpLogged: boolean
}

/**
 * One gate per target key (`jenkins:<name>`, `github:<org>`, `jobs`): a target-down verdict
 * closes it for a back-off, a success opens it. Messages for a closed target are released, not
 * attempted (heldBack). Each change of a target's health is logged once, not per message.
 */
export class TargetGates {
  private readonly gates = new Map<string, Gate>()
  private readonly once: boolean
  private readonly giveUpAfterMs: number
  private readonly backoff: Required<Pick<BackoffOptions, 'baseMs' | 'maxMs'>> & BackoffOptions
  private readonly log: Logger
  private readonly now: () => number

  constructor(options: TargetGatesOptions = {}) {
    this.once = options.once ?? false
    this.giveUpAfterMs = options.giveUpAfterMs ?? 30_000
    this.backoff = {baseMs: 1000, maxMs: 60_000, ...options.backoff}
    this.log = options.log ?? silentLogger
    this.now = options.now ?? Date.now
  }

  /** Not closed: never failed, or its back-off has passed (the next message probes it); never once given up. */
  isOpen(key: string): boolean {
    return this.retryInMs(key) === 0
  }

  /** Down now: failed with no success since (its gate may be open again for a probe). */
  isDown(key: string): boolean {
    return this.gates.get(key)?.downSince !== undefined
  }

  /** Milliseconds until the gate opens (0: open). A target given up stays closed for a back-off cap at a time. */
  retryInMs(key: string): number {
    const gate = this.gates.get(key)
    if (gate?.downSince === undefined) return 0
    if (this.givenUp(key)) return Math.max(gate.closedUntil - this.now(), this.backoff.maxMs)
    return Math.max(0, gate.closedUntil - this.now())
  }

  /**
   * Milliseconds until the gate changes by itself (it opens, or a one-shot run gives the target
   * up); undefined when it will not (open, or given up).
   */
  changesInMs(key: string): number | undefined {
    const gate = this.gates.get(key)
    if (gate?.downSince === undefined || this.givenUp(key)) return undefined
    const opens = Math.max(0, gate.closedUntil - this.now())
    return this.once ? Math.min(opens, Math.max(0, gate.downSince + this.giveUpAfterMs - this.now())) : opens
  }

  /** One-shot: down for giveUpAfterMs with no success, or refusing the credentials. Loops never give up. */
  givenUp(key: string): boolean {
    const gate = this.gates.get(key)
    if (!this.once || gate?.downSince === undefined) return false
    const given = gate.credentials || this.now() - gate.downSince >= this.giveUpAfterMs
    if (given && !gate.givenUpLogged) {
      gate.givenUpLogged = true
      const why = gate.credentials ? 'it refused the credentials' : `down for ${seconds(this.now() - gate.downSince)} with no success`
      this.log.error(`giving up on ${key} for this run: ${why} (${gate.reason})`, {target: key})
    }
    return given
  }

  /** Successes so far (the judge asks whether a target accepted others since a refusal). */
  successes(key: string): number {
    return this.gates.get(key)?.successes ?? 0
  }

  succeeded(key: string): void {
    const gate = this.gate(key)
    if (gate.downSince !== undefined) this.log.info(`${key} is back after ${seconds(this.now() - gate.downSince)}`, {target: key})
    Object.assign(gate, {closures: 0, closedUntil: 0, downSince: undefined, credentials: false, givenUpLogged: false})
    gate.successes++
  }

  /** A target-down outcome (a handler's, a probe's, a verdict of the judge): close its target's gate. */
  failedWith(down: TargetDown): void {
    const retryAfterMs = down.retryAfterSeconds === undefined ? undefined : down.retryAfterSeconds * 1000
    this.failed(down.target, down.reason, {credentials: down.credentials, retryAfterMs})
  }

  /**
   * A target-down verdict: close the gate for the next back-off. Failures while it is already
   * closed (requests that were in flight together) do not lengthen it. Refused credentials in a
   * loop go straight to the cap: a token does not fix itself in a second.
   */
  failed(key: string, reason: string, options: {credentials?: boolean; retryAfterMs?: number} = {}): void {
    const gate = this.gate(key)
    const now = this.now()
    const wasDown = gate.downSince !== undefined
    gate.reason = reason
    gate.credentials ||= options.credentials ?? false
    gate.downSince ??= now
    if (gate.closedUntil <= now || (options.retryAfterMs ?? 0) > gate.closedUntil - now) {
      gate.closures = gate.credentials ? Math.max(gate.closures + 1, 30) : gate.closures + 1
      const wait = Math.max(backoffDelay(gate.closures, this.backoff), options.retryAfterMs ?? 0)
      gate.closedUntil = now + wait
      if (!wasDown) {
        this.log.warn(`${key} is down: ${reason}; its messages wait (next try in ${seconds(wait)})`, {target: key})
      } else this.log.debug(`${key} still down: ${reason}; next try in ${seconds(wait)}`, {target: key})
    }
    this.givenUp(key)
  }

  /** The outcome for a message whose target's gate is closed: released until it opens, not attempted. */
  heldBack(key: string): Released {
    const gate = this.gates.get(key)
    return released(`${key} is down: ${gate?.reason ?? 'unknown'}`, Math.ceil(this.retryInMs(key) / 1000), key)
  }

  /** Targets down now. */
  down(): TargetDownReport[] {
    const out: TargetDownReport[] = []
    for (const [target, gate] of this.gates) {
      if (gate.downSince === undefined) continue
      out.push({target, reason: gate.reason, since: new Date(gate.downSince).toISOString(), givenUp: this.givenUp(target)})
    }
    return out
  }

  /** The reason a target is down, if it is. */
  reasonOf(key: string): string | undefined {
    const gate = this.gates.get(key)
    return gate?.downSince === undefined ? undefined : gate.reason
  }

  private gate(key: string): Gate {
    let gate = this.gates.get(key)
    if (!gate) this.gates.set(key, (gate = {closures: 0, closedUntil: 0, reason: '', credentials: false, successes: 0, givenUpLogged: false}))
    return gate
  }
}
