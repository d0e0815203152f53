import {ConfigError} from '../core/errors.js'
import {DEFAULT_TARGET, type JenkinsTarget, type RouteRule, type SpigotConfig} from './config.js'

export interface Route {
  target: JenkinsTarget
  path: string
}

/** The route-table key of the rule for events that have none of their own (`unrouted: forward`). */
export const ANY_EVENT = '*'

/**
 * Where an event without a rule goes unless `routes: {'*': …}` says otherwise: Jenkins' GitHub
 * endpoint, which got every event while the hook pointed straight at Jenkins (the GitHub plugin and
 * GitHub Branch Source listen there for push, create, delete, pull_request …).
 */
export const UNROUTED_RULE: Readonly<RouteRule> = Object.freeze({path: 'github-webhook/', targets: [DEFAULT_TARGET]})

type RouteConfig = Pick<SpigotConfig, 'routes' | 'targets' | 'unrouted'>

/**
 * Where a GitHub event goes: one entry per Jenkins target of its rule. An event with no rule of its
 * own follows the `'*'` rule when `unrouted` is forward (the default); undefined when there is no
 * route (the caller answers 202 or 400 by `unrouted`).
 */
export function routeFor(event: string, config: RouteConfig): Route[] | undefined {
  const rule = ruleFor(event, config)
  if (!rule) return undefined
  return rule.targets.map((name) => {
    const target = config.targets.find((t) => t.name === name)
    // resolveSpigotConfig rejects unknown names; a hand-built config may still have one.
    if (!target) throw new ConfigError(`the route for "${event}" names an unknown Jenkins target "${name}" (known: ${config.targets.map((t) => t.name).join(', ')})`)
    return {target, path: rule.path}
  })
}

function ruleFor(event: string, config: RouteConfig): RouteRule | undefined {
  if (Object.hasOwn(config.routes, event)) return config.routes[event]
  if (config.unrouted !== 'forward') return undefined
  return Object.hasOwn(config.routes, ANY_EVENT) ? config.routes[ANY_EVENT] : UNROUTED_RULE
}

/** The route of one target for an event (replaying a message queued for that target). */
export function routeForTarget(event: string, config: RouteConfig, targetName: string | undefined): Route | undefined {
  const routes = routeFor(event, config)
  if (!routes) return undefined
  if (!targetName) return routes[0]
  return routes.find((r) => r.target.name === targetName)
}

/** The absolute URL of a route: the path resolved under the target's base URL. */
export function routeUrl(route: Route): string {
  return new URL(route.path.replace(/^\/+/, ''), route.target.url).toString()
}
