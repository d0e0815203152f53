import {Flags} from '@oclif/core'

import {FlagValueError} from './errors.js'

/**
 * Flag builders whose bad values are usage errors (exit 2) naming the flag and what was expected:
 *   Error: --rate: expected a positive number, got "abc" — see cistern spigot drain --help
 * oclif's own number flags say "Parsing --rate … Expected an integer …" over several lines; a plain
 * Error thrown by a parser becomes an "unexpected" exit 1. Use these instead:
 *
 *   rate: positiveNumber({summary: 'Deliveries per second.'}),
 *   concurrency: integer({min: 1, max: 256, default: 4, summary: '…'}),
 *   'delivery-timeout': duration({unit: 'ms', default: 30_000, summary: '…'}),   // value in ms
 *   'jenkins-url': url({env: 'JENKINS_URL', summary: '…'}),
 */

/** A number > 0 (fractions allowed): rates, factors. */
export const positiveNumber = Flags.custom<number, {max?: number}>({
  async parse(input, _context, {name, max}) {
    const value = Number(input)
    const expected = max === undefined ? 'a positive number' : `a positive number ≤ ${max}`
    if (input.trim() === '' || !Number.isFinite(value) || value <= 0 || (max !== undefined && value > max)) throw new FlagValueError(name, expected, input)
    return value
  },
})

/** A whole number, optionally bounded: counts, limits. */
export const integer = Flags.custom<number, {min?: number; max?: number}>({
  async parse(input, _context, {name, min, max}) {
    const value = Number(input)
    const ok = /^[+-]?\d+$/.test(input.trim()) && Number.isSafeInteger(value) && (min === undefined || value >= min) && (max === undefined || value <= max)
    if (!ok) throw new FlagValueError(name, `an integer${range(min, max)}`, input)
    return value
  },
})

const UNIT_MS = {ms: 1, s: 1000, m: 60_000, h: 3_600_000} as const
type DurationUnit = keyof typeof UNIT_MS

/**
 * A duration, always returned in milliseconds: `500ms`, `30s`, `1.5m`, `2h`; a bare number is in
 * `unit` (default seconds), so existing numeric flags keep their meaning. `min`/`max` are in ms;
 * the default minimum is 1 ms (a zero wait is not a duration; give `min: 0` to allow it).
 */
export const duration = Flags.custom<number, {unit?: 'ms' | 's'; min?: number; max?: number}>({
  async parse(input, _context, {name, unit = 's', min = 1, max}) {
    const match = /^(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?$/.exec(input.trim())
    const value = match ? Math.round(Number(match[1]) * UNIT_MS[(match[2] as DurationUnit | undefined) ?? unit]) : Number.NaN
    if (!Number.isFinite(value) || value < min || (max !== undefined && value > max)) {
      const bounds = range(min > 1 ? min : undefined, max, (ms) => `${ms} ms`)
      throw new FlagValueError(name, `a duration such as 500ms, 30s, 5m or 1h (a bare number is ${unit === 's' ? 'seconds' : 'milliseconds'})${bounds}`, input)
    }
    return value
  },
})

/**
 * An absolute URL, returned as written (trimmed). `protocols` defaults to http and https; user and
 * password in the URL are refused unless `credentials: true` (they belong in the environment or a
 * file, not in `ps` output).
 */
export const url = Flags.custom<string, {protocols?: string[]; credentials?: boolean}>({
  async parse(input, _context, {name, protocols = ['http', 'https'], credentials = false}) {
    const text = input.trim()
    const parsed = URL.canParse(text) ? new URL(text) : undefined
    const expected = `${orList(protocols.map((protocol) => `${protocol}://`))} URL`
    if (!parsed || !protocols.includes(parsed.protocol.replace(/:$/, '')) || !parsed.hostname) throw new FlagValueError(name, `an ${expected}`, input)
    if (!credentials && (parsed.username || parsed.password)) throw new FlagValueError(name, `an ${expected} without user or password (give credentials through the environment)`, input)
    return text
  },
})

function range(min: number | undefined, max: number | undefined, show: (n: number) => string = String): string {
  if (min !== undefined && max !== undefined) return ` from ${show(min)} to ${show(max)}`
  if (min !== undefined) return ` ≥ ${show(min)}`
  if (max !== undefined) return ` ≤ ${show(max)}`
  return ''
}

function orList(items: string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items.at(-1) ?? ''}`
}
