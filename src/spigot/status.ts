import {CisternError, errorMessage} from '../core/errors.js'
import type {Queue, QueueStats} from '../core/queue/types.js'
import type {JenkinsTarget, SpigotConfig} from './config.js'
import {type Health, checkHealth} from './jenkins.js'
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
}

/** Health of every Jenkins target, checked in parallel; never throws. */
export async function targetsHealth(
  config: Pick<SpigotConfig, 'targets' | 'healthPath'>,
  options: {timeoutMs?: number; signal?: AbortSignal} = {},
): Promise<TargetHealth[]> {
  return Promise.all(config.targets.map((target) => targetHealth(target, config.healthPath, options)))
}

export async function targetHealth(
  target: JenkinsTarget,
  healthPath: string | undefined,
  options: {timeoutMs?: number; signal?: AbortSignal} = {},
): Promise<TargetHealth> {
  const health = await checkHealth(target, {healthPath, timeoutMs: options.timeoutMs, signal: options.signal})
  return {name: target.name, url: target.url, ...health}
}

export const isUp = (health: Pick<Health, 'state'>): boolean => health.state === 'up'

/** One line per target: `default http://jenkins/ up (12 ms)`. */
export function describeHealth(health: TargetHealth): string {
  const state = health.state === 'quieting-down' ? 'quieting down' : health.state
  return `${health.name} ${health.url} ${state} (${Math.round(health.ms)} ms)${health.detail && health.state !== 'up' ? ` — ${health.detail}` : ''}`
}

/** State, backlog and Jenkins health, read in parallel. Reads only. */
export async function spigotStatus(options: {
  state: StateStore
  queue: Queue
  config: Pick<SpigotConfig, 'targets' | 'healthPath'>
  healthTimeoutMs?: number
}): Promise<SpigotStatus> {
  const [state, stats, jenkins] = await Promise.all([
    options.state.get(),
    options.queue.stats().catch((error: unknown) => {
      throw new CisternError(`cannot read the queue ${options.queue.url}: ${errorMessage(error)}`, {fix: 'check --queue / CISTERN_QUEUE and credentials', cause: error})
    }),
    targetsHealth(options.config, {timeoutMs: options.healthTimeoutMs}),
  ])
  return {
    state,
    backend: options.state.backend,
    stateAt: options.state.where,
    queue: {url: options.queue.url, ...stats},
    backlog: stats.visible + stats.inFlight + stats.delayed,
    jenkins,
    healthy: jenkins.length > 0 && jenkins.every(isUp),
  }
}

/** The human rendering of `spigot status`. */
export function renderStatus(status: SpigotStatus): string {
  const dead = status.queue.dead < 0 ? 'unknown' : String(status.queue.dead)
  return [
    `spigot:  ${status.state}  (${status.backend}: ${status.stateAt})`,
    `backlog: ${status.backlog} waiting — ${status.queue.visible} visible, ${status.queue.inFlight} in flight, ${status.queue.delayed} delayed; ${dead} dead  (${status.queue.url})`,
    ...(status.jenkins.length === 0
      ? ['jenkins: not configured (--jenkins-url or JENKINS_URL)']
      : status.jenkins.map((health, i) => `${i === 0 ? 'jenkins: ' : '         '}${describeHealth(health)}`)),
  ].join('\n')
}
