import type {TargetDownReport, TargetGates} from '../delivery.js'
import {type CisternError, type Problem, type RunOutcome, runOutcome} from '../errors.js'
import type {QueueStats} from '../queue/types.js'
import type {HandedBackTally} from './handed-back.js'

export type StoppedBy = 'empty' | 'signal' | 'deadline' | 'target-down' | 'stop'

/** What a run knows when it has ended. */
export interface RunEnd {
  once: boolean
  stoppedBy: StoppedBy
  stopError?: CisternError
  /** Dead letters this run wrote (or saw the queue write). */
  dead: number
  queueUrl: string
  /** undefined: the queue could not tell (stats failed, or the facade: -1). */
  stats?: QueueStats
  handedBack: HandedBackTally
  gates: TargetGates
  /** The one target of a single-target consumer. */
  target?: string
  /** The queue delivers each group in order, one message in flight at a time. */
  groups?: boolean
}

export interface EndReport extends RunOutcome {
  /** visible + in flight + delayed after the run; -1 when the queue cannot tell. */
  remaining: number
  /** When the next message held by someone else (or delayed) becomes visible, where the queue tells (ISO). */
  heldUntil?: string
  targetsDown: TargetDownReport[]
}

/**
 * How a run ends (docs/delivery.md, exit codes): a stop signal ends any run with 0; a stop outcome
 * with its error's code; a one-shot run exits 0 only when the queue is empty and nothing went
 * dead, else each thing that remains says why, in one line, with the code it calls for.
 */
export function endOfRun(run: RunEnd): EndReport {
  const {stats} = run
  const remaining = stats ? stats.visible + stats.inFlight + stats.delayed : -1
  const targetsDown = run.gates.down()
  const problems: Problem[] = []
  if (run.stopError && run.stopError.exitCode !== 0) problems.push({exitCode: run.stopError.exitCode, line: run.stopError.oneLine})
  if (run.once && run.stoppedBy !== 'signal') problems.push(...oneShotProblems(run, remaining))
  const until = heldUntil(run)
  return {remaining, ...(until ? {heldUntil: until.toISOString()} : {}), targetsDown, ...runOutcome(run.stoppedBy === 'signal' ? [] : problems)}
}

/**
 * When the queue's next hidden message becomes visible, when that is someone else's: the queue
 * tells (stats().nextVisibleAt) and none of the hidden ones is this run's.
 */
function heldUntil(run: RunEnd): Date | undefined {
  return run.stats?.nextVisibleAt && run.handedBack.hidden === 0 && othersOf(run).held > 0 ? run.stats.nextVisibleAt : undefined
}

/** What remains that this run did not hand back: leased by another consumer (or sent with a delay), or visible and never reached. */
function othersOf(run: RunEnd): {held: number; visible: number} {
  const {stats, handedBack: ours} = run
  if (!stats) return {held: 0, visible: 0}
  const oursTotal = ours.afterDeadline + ours.beforeDeadline + [...ours.onTarget.values()].reduce((a, b) => a + b, 0)
  // Which of ours the queue still hides is known only to within the time a release takes to
  // write; what is not ours at all is exact: the split never exceeds it.
  const others = Math.max(0, stats.visible + stats.inFlight + stats.delayed - oursTotal)
  const held = Math.min(others, Math.max(0, stats.inFlight + stats.delayed - ours.hidden))
  const visible = Math.min(others - held, Math.max(0, stats.visible - (oursTotal - ours.hidden)))
  // Grouped queue, a run that found nothing more to receive: what is visible waits behind the group
  // heads someone else holds, and is theirs to deliver next.
  if (run.groups && run.stoppedBy === 'empty' && held > 0) return {held: held + visible, visible: 0}
  return {held, visible}
}

function oneShotProblems(run: RunEnd, remaining: number): Problem[] {
  const {handedBack: ours, gates} = run
  const problems: Problem[] = []
  if (run.dead > 0) {
    const url = run.queueUrl
    problems.push({
      exitCode: 1,
      line: `${count(run.dead, 'dead letter')} — see them with \`cistern queue peek --dead ${url}\`, put them back with \`cistern queue redrive ${url}\``,
    })
  }
  if (run.target && run.stoppedBy === 'target-down' && gates.givenUp(run.target)) {
    // It stopped receiving for its one target: whatever remains waits for that target (nothing
    // remaining: its health did not matter; when another key its handler used was given up instead —
    // S3 behind a webhook, status-queue's github:<org> — the lines below say which).
    if (remaining === 0) return problems
    const left = remaining < 0 ? 'work' : String(remaining)
    problems.push({exitCode: 3, line: `${left} remaining (${run.target} is down: ${gates.reasonOf(run.target) ?? 'unknown'})`})
    return problems
  }
  for (const [target, n] of ours.onTarget) {
    problems.push({exitCode: 3, line: `${n} remaining (${target} is down: ${gates.reasonOf(target) ?? 'unknown'})`})
  }
  if (ours.afterDeadline > 0) problems.push({exitCode: 1, line: `${ours.afterDeadline} remaining (retry due after the deadline)`})
  if (ours.beforeDeadline > 0) problems.push({exitCode: 1, line: `${ours.beforeDeadline} remaining (being retried when the run ${run.stoppedBy === 'deadline' ? 'reached its deadline' : 'stopped'})`})
  const {held, visible} = othersOf(run)
  if (held > 0) {
    const until = heldUntil(run)
    problems.push({exitCode: 1, line: `${held} remaining (held by another consumer${until ? ` until ${clockTime(until)}` : ''})`})
  }
  if (visible > 0) {
    problems.push({exitCode: 1, line: `${visible} remaining (${NOT_REACHED[run.stoppedBy]})`})
  }
  return problems
}

const NOT_REACHED: Record<StoppedBy, string> = {
  deadline: 'not reached before the deadline',
  stop: 'not reached: the run stopped',
  'target-down': 'not reached: the run stopped',
  signal: 'not reached: the run stopped',
  empty: 'not received in this run',
}

/** Local wall-clock time, HH:MM:SS, as an operator reads it next to their own clock. */
export function clockTime(date: Date): string {
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':')
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}
