import {readFile} from 'node:fs/promises'
import {type Document, LineCounter, type Node, isMap, isPair, isScalar, isSeq, parseDocument} from 'yaml'
import type {ZodType} from 'zod'

import {ConfigError, errorMessage} from './errors.js'

/**
 * Load a YAML file and validate it with a zod schema. Any error is a ConfigError naming the file,
 * the line and the key, and saying what was expected:
 *   cistern.yml:12 spigot.jenkins.url: expected a URL, got "jenkins"
 */
export async function loadConfig<T>(path: string, schema: ZodType<T>): Promise<T> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new ConfigError(`${path}: cannot read the config file (${readProblem(error)})`, path)
  }
  return parseConfig(text, schema, path)
}

/** Same for text already read (e.g. a request body); `source` names it in errors. */
export function parseConfig<T>(text: string, schema: ZodType<T>, source: string): T {
  const {data, doc, lines} = parseYaml(text, source)
  const result = schema.safeParse(data, {reportInput: true})
  if (result.success) return result.data
  const issues = result.error.issues as unknown as ZodIssueLike[]
  const head = issues.at(0)
  if (!head) throw new ConfigError(`${source}: does not match its schema`, source)
  const first = explain(head)
  if (first.unknownKey) first.text += suggestion(schema, first.path)
  const line = lineOf(doc, lines, first.path, first.keyNode)
  const key = first.path.map(String).join('.')
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : ''
  throw new ConfigError(`${source}:${line}${key ? ' ' + key : ''}: ${first.text}${more}`, source, line, key || undefined)
}

/**
 * Parse YAML to plain data without validating it (for callers that look at the shape first, such
 * as `config check` deciding which kind of file it holds). Syntax errors are ConfigErrors.
 */
export function parseYamlText(text: string, source: string): unknown {
  return parseYaml(text, source).data
}

function parseYaml(text: string, source: string): {data: unknown; doc: Document; lines: LineCounter} {
  const lines = new LineCounter()
  const doc = parseDocument(text, {lineCounter: lines, prettyErrors: true, uniqueKeys: true})
  const syntax = doc.errors.at(0)
  if (syntax) {
    const line = syntax.linePos?.[0]?.line
    // The library's message repeats the position and a code excerpt on further lines: keep the first.
    const what = (syntax.message.split('\n').at(0) ?? syntax.message).replace(/ at line \d+, column \d+:?$/, '')
    throw new ConfigError(`${source}:${line ?? 1} invalid YAML: ${what}`, source, line)
  }
  try {
    return {data: doc.toJS({maxAliasCount: 100}), doc, lines}
  } catch (error) {
    throw new ConfigError(`${source}: invalid YAML: ${errorMessage(error)}`, source)
  }
}

function readProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EISDIR') return 'it is a directory'
  return errorMessage(error)
}

// --- zod issues → "what was expected" ------------------------------------------------------------

/** The fields of a zod 4 issue this module reads (the issue union is wide; we only need these). */
interface ZodIssueLike {
  code: string
  path: PropertyKey[]
  message: string
  input?: unknown
  expected?: string
  format?: string
  values?: unknown[]
  keys?: string[]
  minimum?: number | bigint
  maximum?: number | bigint
  inclusive?: boolean
  origin?: string
  divisor?: number
  pattern?: string
  prefix?: string
  suffix?: string
  includes?: string
  errors?: ZodIssueLike[][]
  issues?: ZodIssueLike[]
}

interface Explained {
  path: PropertyKey[]
  text: string
  /** Point at the key itself (an unknown key) rather than its value. */
  keyNode?: boolean
  /** The last path segment is a key the schema does not know. */
  unknownKey?: boolean
}

function explain(issue: ZodIssueLike, prefix: PropertyKey[] = []): Explained {
  const path = [...prefix, ...issue.path]
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.input === undefined) return {path, text: `missing; expected ${typeName(issue.expected)}`}
      return {path, text: `expected ${typeName(issue.expected)}, got ${describe(issue.input)}`}
    }
    case 'invalid_format':
      return {path, text: `expected ${formatName(issue)}, got ${describe(issue.input)}`}
    case 'invalid_value': {
      const values = (issue.values ?? []).map((value) => JSON.stringify(value))
      const wanted = values.length === 1 ? values[0] : `one of ${values.join(', ')}`
      return {path, text: `expected ${wanted}, got ${describe(issue.input)}`}
    }
    case 'too_small':
      return {path, text: `expected ${bound(issue, 'min')}, got ${describe(issue.input)}`}
    case 'too_big':
      return {path, text: `expected ${bound(issue, 'max')}, got ${describe(issue.input)}`}
    case 'not_multiple_of':
      return {path, text: `expected a multiple of ${issue.divisor}, got ${describe(issue.input)}`}
    case 'unrecognized_keys': {
      const keys = issue.keys ?? []
      const only = keys.length === 1 ? keys.at(0) : undefined
      return {
        path: only === undefined ? path : [...path, only],
        text: keys.length === 1 ? 'unknown key' : `unknown keys ${keys.map((k) => JSON.stringify(k)).join(', ')}`,
        keyNode: true,
        unknownKey: keys.length === 1,
      }
    }
    case 'invalid_union':
      return explainUnion(issue, path)
    case 'invalid_key':
    case 'invalid_element': {
      const inner = issue.issues?.[0]
      if (inner) return explain(inner, path)
      return {path, text: issue.message}
    }
    default:
      // custom (refine/superRefine) and anything newer: the schema's own message is the explanation.
      return {path, text: issue.message}
  }
}

/** A union: "expected a string or a list", or the one branch that got furthest. */
function explainUnion(issue: ZodIssueLike, path: PropertyKey[]): Explained {
  const branches = (issue.errors ?? []).filter((branch) => branch.length > 0)
  const heads = branches.flatMap((branch) => branch.slice(0, 1))
  // Every branch refused the value itself (its type, or a literal): say all that would do.
  const rootOnly = heads.length > 0 && branches.every((branch) => branch.length === 1) && heads.every((head) => ['invalid_type', 'invalid_value'].includes(head.code) && head.path.length === 0)
  if (rootOnly) {
    const names = [...new Set(heads.flatMap((head) => (head.code === 'invalid_type' ? [typeName(head.expected)] : (head.values ?? []).map((value) => JSON.stringify(value)))))]
    const input = issue.input
    if (input === undefined) return {path, text: `missing; expected ${orList(names)}`}
    return {path, text: `expected ${orList(names)}, got ${describe(input)}`}
  }
  // The branch whose first problem is deepest got furthest matching the input: explain that one.
  let best: ZodIssueLike[] | undefined
  for (const branch of branches) {
    if (!best || depth(branch) > depth(best) || (depth(branch) === depth(best) && branch.length < best.length)) best = branch
  }
  const head = best?.at(0)
  return head ? explain(head, path) : {path, text: customOr(issue.message, `unexpected value ${describe(issue.input)}`)}
}

function depth(branch: ZodIssueLike[]): number {
  const head = branch.at(0)
  return head ? head.path.length + (head.code === 'invalid_type' ? 0 : 0.5) : -1
}

function customOr(message: string, fallback: string): string {
  return /^Invalid (input|option)/.test(message) ? fallback : message
}

function orList(names: string[]): string {
  return names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} or ${names.at(-1)}`
}

function typeName(expected?: string): string {
  switch (expected) {
    case 'string':
      return 'a string'
    case 'number':
      return 'a number'
    case 'int':
      return 'an integer'
    case 'boolean':
      return 'true or false'
    case 'array':
    case 'tuple':
    case 'set':
      return 'a list'
    case 'object':
    case 'record':
    case 'map':
      return 'a mapping'
    case 'null':
      return 'null'
    case 'date':
      return 'a date'
    case 'bigint':
      return 'an integer'
    default:
      return expected ? `a ${expected}` : 'a value'
  }
}

function formatName(issue: ZodIssueLike): string {
  switch (issue.format) {
    case 'url':
      return 'a URL'
    case 'email':
      return 'an email address'
    case 'regex':
      return issue.pattern ? `a string matching ${issue.pattern}` : 'a matching string'
    case 'starts_with':
      return `a string starting with ${JSON.stringify(issue.prefix)}`
    case 'ends_with':
      return `a string ending with ${JSON.stringify(issue.suffix)}`
    case 'includes':
      return `a string containing ${JSON.stringify(issue.includes)}`
    case 'datetime':
      return 'an ISO 8601 date-time'
    case 'uuid':
    case 'guid':
      return 'a UUID'
    default:
      return issue.format ? `a valid ${issue.format}` : 'a valid value'
  }
}

function bound(issue: ZodIssueLike, side: 'min' | 'max'): string {
  const limit = side === 'min' ? issue.minimum : issue.maximum
  const inclusive = issue.inclusive !== false
  switch (issue.origin) {
    case 'string':
      return `${side === 'min' ? 'at least' : 'at most'} ${limit} character${Number(limit) === 1 ? '' : 's'}`
    case 'array':
    case 'set':
      return `${side === 'min' ? 'at least' : 'at most'} ${limit} item${Number(limit) === 1 ? '' : 's'}`
    default: {
      const op = side === 'min' ? (inclusive ? '≥' : '>') : inclusive ? '≤' : '<'
      return `a number ${op} ${limit}`
    }
  }
}

/** `"jenkins"`, `42`, `a list`, `a mapping`, `nothing`: what the file actually holds there. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null (an empty value)'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  return typeof value // a symbol or function: never from a parsed file
}

/** ` — did you mean "spigot"?` for a misspelt key, from the keys the schema knows at that place. */
function suggestion(schema: unknown, path: PropertyKey[]): string {
  const known = knownKeys(schema, path.slice(0, -1))
  const wrong = String(path.at(-1))
  if (!known?.length) return ''
  const near = known
    .map((key) => ({key, distance: editDistance(key.toLowerCase(), wrong.toLowerCase())}))
    .filter((item) => item.distance <= Math.max(2, Math.floor(wrong.length / 3)))
    .sort((a, b) => a.distance - b.distance)
    .at(0)
  return near ? `; did you mean "${near.key}"?` : `; expected one of ${known.join(', ')}`
}

/** The keys of the object schema found by following `path` through zod 4's definitions. */
function knownKeys(schema: unknown, path: PropertyKey[]): string[] | undefined {
  let node = unwrap(schema)
  for (const segment of path) {
    const def = defOf(node)
    if (!def) return undefined
    if (def.type === 'object' && def.shape) node = unwrap((def.shape as Record<string, unknown>)[String(segment)])
    else if (def.type === 'record') node = unwrap(def.valueType)
    else if (def.type === 'array') node = unwrap(def.element)
    else return undefined
    if (!node) return undefined
  }
  const def = defOf(node)
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : undefined
}

function defOf(schema: unknown): Record<string, unknown> | undefined {
  return (schema as {_zod?: {def?: Record<string, unknown>}} | undefined)?._zod?.def
}

/** Through optional/nullable/default/pipe/transform wrappers to the schema that has the shape. */
function unwrap(schema: unknown): unknown {
  let node = schema
  for (let i = 0; i < 10; i++) {
    const def = defOf(node)
    if (!def) return node
    if (def.innerType) node = def.innerType
    else if (def.type === 'pipe' && def.in) node = defOf(def.in)?.type === 'transform' ? def.out : def.in
    else return node
  }
  return node
}

/** Levenshtein distance, one row at a time (`diagonal` is the previous row's value at j - 1). */
function editDistance(a: string, b: string): number {
  let row = Array.from({length: b.length + 1}, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      const diagonal = (row.at(j - 1) ?? 0) + (a.charAt(i - 1) === b.charAt(j - 1) ? 0 : 1)
      next.push(Math.min((row.at(j) ?? 0) + 1, (next.at(j - 1) ?? 0) + 1, diagonal))
    }
    row = next
  }
  return row.at(b.length) ?? 0
}

// --- issue path → line number ---------------------------------------------------------------------

/**
 * The 1-based line of the deepest node along `path` that exists: the key's own line for a mapping
 * entry (so `url:` rather than the block under it), the item's line in a list, and the first line
 * of the document when nothing matches.
 */
function lineOf(doc: Document, lines: LineCounter, path: PropertyKey[], keyNode = false): number {
  let node: unknown = doc.contents
  let offset = doc.contents?.range?.[0] ?? 0
  for (const [index, segment] of path.entries()) {
    const last = index === path.length - 1
    if (isMap(node)) {
      const pair = node.items.find((item) => isPair(item) && keyText(item.key) === String(segment))
      if (!pair) break
      const key = pair.key as Node | null
      offset = key?.range?.[0] ?? (pair.value as Node | null)?.range?.[0] ?? offset
      if (last && !keyNode && isScalar(pair.value) && pair.value.range) offset = pair.value.range[0]
      node = pair.value
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as Node | undefined
      if (!item) break
      offset = item.range?.[0] ?? offset
      node = item
    } else {
      break
    }
  }
  return lines.linePos(offset).line
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value)
  if (typeof key === 'string' || typeof key === 'number') return String(key)
  return undefined
}

// --- config check -----------------------------------------------------------------------------------

export interface ConfigCheckResult {
  file: string
  kind: string
  ok: boolean
  /** The one-line problem (file:line key: what was expected). */
  error?: string
  line?: number
  key?: string
}

/**
 * Validate a file as one of several kinds of config (`cistern config check`). The kind is given,
 * or detected from the parsed content; a file that does not parse is named by its file name
 * (`…jobs….yml` → jobs) so the result still says what it was checked as.
 */
export async function checkConfigFile<K extends string>(
  path: string,
  options: {kind?: K; detect: (data: unknown) => K; schemas: Record<K, ZodType>},
): Promise<ConfigCheckResult> {
  // At least one kind: the caller's schemas.
  const names = Object.keys(options.schemas) as [K, ...K[]]
  const guessFromName = names.find((name) => path.split('/').pop()?.toLowerCase().includes(name)) ?? names[0]
  let kind: K = options.kind ?? guessFromName
  try {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (error) {
      throw new ConfigError(`${path}: cannot read the config file (${readProblem(error)})`, path)
    }
    if (!options.kind) kind = options.detect(parseYamlText(text, path))
    parseConfig(text, options.schemas[kind], path)
    return {file: path, kind, ok: true}
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    return {file: path, kind, ok: false, error: error.message, line: error.lineNumber, key: error.key}
  }
}
