import type {Logger} from '../core/log.js'
import {type StateFlagValues, openStateFrom} from './command-options.js'
import {type SpigotState, parseState} from './state.js'

export interface ToggleResult {
  backend: 'local' | 'apigw'
  /** The file, or `<api id>/<stage>`. */
  where: string
  before: SpigotState
  after: SpigotState
  drainRule?: string
}

/** `cistern spigot toggle`: set the state (and the drain rule with it); before → after. */
export async function toggleSpigot(flags: StateFlagValues & {state: string}, log: Logger): Promise<ToggleResult> {
  const wanted = parseState(flags.state)
  const store = await openStateFrom(flags, log)
  try {
    const {before, after} = await store.set(wanted)
    return {backend: store.backend, where: store.where, before, after, ...(flags['drain-rule'] ? {drainRule: flags['drain-rule']} : {})}
  } finally {
    await store.close()
  }
}

/** `spigot: ON → OFF  (apigw: a1b2c3/prod); drain rule send-from-queue disabled` */
export function describeToggle(result: ToggleResult): string {
  const rule = result.drainRule ? `; drain rule ${result.drainRule} ${result.after === 'ON' ? 'enabled' : 'disabled'}` : ''
  return `spigot: ${result.before} → ${result.after}  (${result.backend}: ${result.where})${rule}`
}
