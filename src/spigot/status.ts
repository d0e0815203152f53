import {CisternError, errorMessage} from '../core/errors.js'
import {sleep} from '../core/loop.js'
import {shortDuration} from '../core/progress.js'
import type {Queue, QueueStats} from '../core/queue/types.js'
import {maskSecrets} from '../core/secrets.js'
import type {JenkinsTarget, SpigotConfig} from './config.js'
import {type Health, type JenkinsClient, targetKey} from './jenkins.js'
import type {SpigotState, StateStore} from './state.js'

/** One Jenkins target's health, as status, drain and maintenance report it. */
export interface TargetHealth extends Health {
  name: string
  url: string
}

export interface SpigotStatus {
  state: SpigotState
  backend: 'local' | 'apigw'
  /** Where the state lives (file or API/stage). */
  stateAt: string
  queue: {url: string} & QueueStats
  /** Waiting to be replayed: visible + in flight + delayed. */
  backlog: number
  jenkins: TargetHealth[]
  /** Every target up (not quieting down, not down); false when no Jenkins is configured. */
  healthy: boolean
  /** When it was read (ISO). */
  at: string
  /** --watch: how fast the backlog changed since the previous look, per second (negative: it shrinks). */
  backlogPerSecond?: number
}

/** Health of every Jenkins target, checked in parallel; never throws. */
export async function targetsHealth(
  jenkins: JenkinsClient,
  config: Pick<SpigotConfig, 'targets' | 'healthPath'>,
  options: {timeoutMs?: number; signal?: AbortSignal} = {},
): Promise<TargetHealth[]> {
  return Promise.all(config.targets.map((target) => targetHealth(jenkins, target, config.healthPath, options)))
}

export async function targetHealth(
  jenkins: JenkinsClient,
  target: JenkinsTarget,
  healthPath: string | undefined,
  options: {timeoutMs?: number; signal?: AbortSignal} = {},
): Promise<TargetHealth> {
  const health = await jenkins.health(target, {healthPath, timeoutMs: options.timeoutMs, signal: options.signal})
  return {name: target.name, url: target.url, ...health}
}

export const isUp = (health: Pick<Health, 'state'>): boolean => health.state === 'up'

/** One line per target: `default http://jenkins/ up (12 ms)`. */
export function describeHealth(health: TargetHealth): string {
  const state = health.state === 'quieting-down' ? 'quieting down' : health.state
  return `${health.name} ${health.url} ${state} (${Math.round(health.ms)} ms)${health.detail && health.state !== 'up' ? ` — ${health.detail}` : ''}`
}

export interface StatusOptions {
  state: StateStore
  queue: Queue
  config: Pick<SpigotConfig, 'targets' | 'healthPath'>
  jenkins: JenkinsClient
  healthTimeoutMs?: number
}

/** State, backlog and Jenkins health, read in parallel. Reads only. */
export async function spigotStatus(options: StatusOptions): Promise<SpigotStatus> {
  const [state, stats, jenkins] = await Promise.all([
    options.state.get(),
    options.queue.stats().catch((error: unknown) => {
      throw new CisternError(`cannot read the queue ${options.queue.url}: ${errorMessage(error)}`, {fix: 'check --queue / CISTERN_QUEUE and credentials', cause: error})
    }),
    targetsHealth(options.jenkins, options.config, {timeoutMs: options.healthTimeoutMs}),
  ])
  return {
    state,
    backend: options.state.backend,
    stateAt: options.state.where,
    queue: {url: options.queue.url, ...stats},
    backlog: stats.visible + stats.inFlight + stats.delayed,
    jenkins,
    healthy: jenkins.length > 0 && jenkins.every(isUp),
    at: new Date().toISOString(),
  }
}

/** The human rendering of `spigot status`. */
export function renderStatus(status: SpigotStatus): string {
  const dead = status.queue.dead < 0 ? 'unknown' : String(status.queue.dead)
  const oldest = status.queue.oldestAgeSeconds === undefined || status.backlog === 0 ? '' : `, oldest ${shortDuration(status.queue.oldestAgeSeconds * 1000)}`
  return [
    `spigot:  ${status.state}  (${status.backend}: ${status.stateAt})`,
    `backlog: ${status.backlog} waiting${describeRate(status.backlogPerSecond)} — ${status.queue.visible} visible, ${status.queue.inFlight} in flight, ${status.queue.delayed} delayed; ${dead} dead${oldest}  (${status.queue.url})`,
    ...(status.jenkins.length === 0
      ? ['jenkins: not configured (--jenkins-url or JENKINS_URL)']
      : status.jenkins.map((health, i) => `${i === 0 ? 'jenkins: ' : '         '}${describeHealth(health)}`)),
  ].join('\n')
}

function describeRate(perSecond: number | undefined): string {
  if (perSecond === undefined) return ''
  if (Math.abs(perSecond) < 0.05) return ' (steady)'
  const rate = Math.abs(perSecond).toFixed(Math.abs(perSecond) < 10 ? 1 : 0)
  return perSecond < 0 ? ` (draining ${rate}/s)` : ` (growing ${rate}/s)`
}

export interface WatchOptions extends StatusOptions {
  /** Between looks (default 2 s). */
  intervalMs?: number
  signal?: AbortSignal
  /** Where the status goes: redrawn in place on a terminal, a JSON line per look otherwise. */
  out: Pick<NodeJS.WritableStream, 'write'> & {isTTY?: boolean}
  /** Stop after this many looks (tests); default: until the signal. */
  looks?: number
}

/** `spigot status --watch`: look again every interval until the signal; returns the last status. */
export async function watchStatus(options: WatchOptions): Promise<SpigotStatus> {
  const intervalMs = options.intervalMs ?? 2000
  const block = options.out.isTTY ? new RedrawnBlock(options.out) : undefined
  let previous: SpigotStatus | undefined
  for (let look = 1; ; look++) {
    const status = await spigotStatus(options)
    if (previous) status.backlogPerSecond = ((status.backlog - previous.backlog) * 1000) / Math.max(1, Date.parse(status.at) - Date.parse(previous.at))
    previous = status
    if (block) block.show(maskSecrets(renderStatus(status)))
    else options.out.write(maskSecrets(JSON.stringify(status)) + '\n')
    if (look === options.looks || !(await sleep(intervalMs, options.signal))) return status
  }
}

/** Lines redrawn in place: the cursor goes back up over the previous block, which is cleared. */
class RedrawnBlock {
  private lines = 0

  constructor(private readonly out: Pick<NodeJS.WritableStream, 'write'>) {}

  show(text: string): void {
    const up = this.lines > 0 ? `\u001B[${this.lines}A` : ''
    this.out.write(`${up}\r\u001B[J${text}\n`)
    this.lines = text.split('\n').length
  }
}

/** One sample for Prometheus (the intake engineer's /metrics builds its gauges from these). */
export interface Sample {
  name: 'cistern_queue_messages' | 'cistern_queue_oldest_message_age_seconds' | 'cistern_target_up'
  labels: Record<string, string>
  value: number
}

/**
 * What examples/monitoring reads, from a status: cistern_queue_messages{queue,state} (visible,
 * in_flight, delayed, dead), cistern_queue_oldest_message_age_seconds{queue} (0 when empty) and
 * cistern_target_up{target} (1 up, 0 down or quieting down; target `jenkins:<name>`).
 */
export function statusSamples(status: Pick<SpigotStatus, 'queue' | 'jenkins'>): Sample[] {
  const queue = status.queue.url
  const {visible, inFlight, delayed, dead} = status.queue
  return [
    ...(
      [
        ['visible', visible],
        ['in_flight', inFlight],
        ['delayed', delayed],
        ['dead', dead],
      ] as const
    )
      .filter(([, value]) => value >= 0)
      .map(([state, value]) => ({name: 'cistern_queue_messages' as const, labels: {queue, state}, value})),
    {name: 'cistern_queue_oldest_message_age_seconds', labels: {queue}, value: status.queue.oldestAgeSeconds ?? 0},
    ...targetSamples(status.jenkins),
  ]
}

/** cistern_target_up{target="jenkins:<name>"}: 1 when the target is up. */
export function targetSamples(health: TargetHealth[]): Sample[] {
  return health.map((target) => ({name: 'cistern_target_up', labels: {target: targetKey(target.name)}, value: isUp(target) ? 1 : 0}))
}
