import {chmodSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {z} from 'zod'

import {loadConfig, parseConfig, parseYamlText} from '../../src/core/config.js'
import {ConfigError} from '../../src/core/errors.js'
import {tempDir} from '../helpers/tmp.js'

const schema = z.object({
  spigot: z.object({
    jenkins: z.object({url: z.url(), retries: z.number().int().min(1).optional(), mode: z.enum(['push', 'queue']).optional()}).strict(),
  }),
  list: z.array(z.string()).optional(),
  either: z.union([z.string(), z.array(z.string())]).optional(),
  port: z.number().max(65535).optional(),
  name: z.string().min(3).optional(),
  check: z
    .string()
    .refine((value) => value.startsWith('ok'), 'must start with "ok"')
    .optional(),
}).strict()

function problem(text: string): ConfigError {
  try {
    parseConfig(text, schema, 'cistern.yml')
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return error as ConfigError
  }
  throw new Error('expected a ConfigError')
}

describe('parseConfig', () => {
  it('returns the validated data', () => {
    const data = parseConfig('spigot:\n  jenkins:\n    url: https://ci.example.com/\n', schema, 'cistern.yml')
    expect(data).toEqual({spigot: {jenkins: {url: 'https://ci.example.com/'}}})
  })

  it('names the file, the line of the key and what was expected', () => {
    const error = problem('# comment\nspigot:\n  jenkins:\n    url: jenkins\n')
    expect(error.message).toBe('cistern.yml:4 spigot.jenkins.url: expected a URL, got "jenkins"')
    expect(error.file).toBe('cistern.yml')
    expect(error.lineNumber).toBe(4)
    expect(error.key).toBe('spigot.jenkins.url')
    expect(error.exitCode).toBe(2)
  })

  it('explains numbers, enums, unknown keys and missing keys', () => {
    expect(problem('spigot:\n  jenkins:\n    url: http://x\n    retries: 0\n').message).toBe(
      'cistern.yml:4 spigot.jenkins.retries: expected a number ≥ 1, got 0',
    )
    expect(problem('spigot:\n  jenkins:\n    url: http://x\n    retries: 1.5\n').message).toBe(
      'cistern.yml:4 spigot.jenkins.retries: expected an integer, got 1.5',
    )
    expect(problem('spigot:\n  jenkins:\n    url: http://x\n    mode: off\n').message).toBe(
      'cistern.yml:4 spigot.jenkins.mode: expected one of "push", "queue", got "off"',
    )
    expect(problem('spigot:\n  jenkins:\n    url: http://x\n\n    retires: 2\n').message).toBe(
      'cistern.yml:5 spigot.jenkins.retires: unknown key; did you mean "retries"?',
    )
    expect(problem('spigot:\n  jenkins: {url: "http://x"}\nzzz: 1\n').message).toBe(
      'cistern.yml:3 zzz: unknown key; expected one of spigot, list, either, port, name, check',
    )
    expect(problem('spigot:\n  jenkins: {url: "http://x", a: 1, b: 2}\n').message).toBe('cistern.yml:2 spigot.jenkins: unknown keys "a", "b"')
    expect(problem('spigot:\n  jenkins: {}\n').message).toBe('cistern.yml:2 spigot.jenkins.url: missing; expected a string')
    expect(problem('port: 70000\nspigot: {jenkins: {url: "http://x"}}\n').message).toBe('cistern.yml:1 port: expected a number ≤ 65535, got 70000')
    expect(problem('name: ab\nspigot: {jenkins: {url: "http://x"}}\n').message).toBe('cistern.yml:1 name: expected at least 3 characters, got "ab"')
  })

  it('points at the list item and explains unions and custom checks', () => {
    expect(problem('spigot: {jenkins: {url: "http://x"}}\nlist:\n  - a\n  - 3\n').message).toBe('cistern.yml:4 list.1: expected a string, got 3')
    expect(problem('spigot: {jenkins: {url: "http://x"}}\neither: {a: 1}\n').message).toBe(
      'cistern.yml:2 either: expected a string or a list, got a mapping',
    )
    expect(problem('spigot: {jenkins: {url: "http://x"}}\ncheck: nope\n').message).toBe('cistern.yml:2 check: must start with "ok"')
  })

  it('counts further problems and handles an empty document', () => {
    expect(problem('spigot:\n  jenkins:\n    url: x\n    retries: 0\n').message).toMatch(/ \(and 1 more problem\)$/)
    expect(problem('').message).toBe('cistern.yml:1: expected a mapping, got null (an empty value)')
    expect(problem('- a\n- b\n').message).toBe('cistern.yml:1: expected a mapping, got a list')
  })

  it('reports YAML syntax errors with their line', () => {
    const error = problem('spigot:\n  jenkins:\n    url: "http://x\n')
    expect(error.message).toMatch(/^cistern\.yml:\d+ invalid YAML: Missing closing "quote$/)
    expect(problem('a: 1\nb: [1\nc: 2\n').message).toMatch(/^cistern\.yml:\d+ invalid YAML: /)
    expect(problem('a: 1\na: 2\n').message).toBe('cistern.yml:2 invalid YAML: Map keys must be unique')
    expect(problem('a: *nowhere\n').message).toMatch(/^cistern\.yml: invalid YAML: .*nowhere/)
    // One line, always: the operator sees it as is.
    expect(problem('a: [1\n').message).not.toContain('\n')
  })

  it('refuses alias bombs', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]', 'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]'].join('\n')
    expect(() => parseYamlText(bomb, 'bomb.yml')).toThrow(ConfigError)
  })
})

describe('loadConfig', () => {
  const dir = tempDir()

  it('loads and validates a file, naming it in errors', async () => {
    const good = join(dir, 'good.yml')
    writeFileSync(good, 'spigot:\n  jenkins:\n    url: http://ci:8080/\n')
    expect(await loadConfig(good, schema)).toEqual({spigot: {jenkins: {url: 'http://ci:8080/'}}})
    const bad = join(dir, 'bad.yml')
    writeFileSync(bad, 'spigot:\n  jenkins:\n    url: 12\n')
    await expect(loadConfig(bad, schema)).rejects.toThrow(`${bad}:3 spigot.jenkins.url: expected a string, got 12`)
  })

  it('says which file is missing or unreadable', async () => {
    const missing = join(dir, 'nope.yml')
    await expect(loadConfig(missing, schema)).rejects.toThrow(`${missing}: cannot read the config file (no such file)`)
    const sub = join(dir, 'adir')
    mkdirSync(sub)
    await expect(loadConfig(sub, schema)).rejects.toThrow(/cannot read the config file \(it is a directory\)/)
    if (process.getuid?.() !== 0) {
      const locked = join(dir, 'locked.yml')
      writeFileSync(locked, 'a: 1\n')
      chmodSync(locked, 0o000)
      await expect(loadConfig(locked, schema)).rejects.toThrow(/cannot read the config file \(permission denied\)/)
    }
  })
})
