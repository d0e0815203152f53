import type {JenkinsTarget, SpigotConfig} from './config.js'

export interface Route {
  target: JenkinsTarget
  path: string
}

/**
 * Where a GitHub event goes: one entry per Jenkins target of its rule, or undefined when the
 * route table has no rule for it (the caller answers 202 or 400 by `config.unrouted`).
 */
export function routeFor(event: string, config: SpigotConfig): Route[] | undefined {
  const rule = Object.hasOwn(config.routes, event) ? config.routes[event] : undefined
  if (!rule) return undefined
  const routes: Route[] = []
  for (const name of rule.targets) {
    const target = config.targets.find((t) => t.name === name)
    // resolveSpigotConfig rejects unknown names; a hand-built config may still have one.
    if (!target) throw new Error(`route for "${event}" names unknown Jenkins target "${name}"`)
    routes.push({target, path: rule.path})
  }
  return routes
}

/** The route of one target for an event (replaying a message queued for that target). */
export function routeForTarget(event: string, config: SpigotConfig, targetName: string | undefined): Route | undefined {
  const routes = routeFor(event, config)
  if (!routes) return undefined
  if (!targetName) return routes[0]
  return routes.find((r) => r.target.name === targetName)
}

/** The absolute URL of a route: the path resolved under the target's base URL. */
export function routeUrl(route: Route): string {
  return new URL(route.path.replace(/^\/+/, ''), route.target.url).toString()
}
