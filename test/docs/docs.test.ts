// The operator's documentation holds together: the README stays short and starts with the two
// set-up commands, every relative link (file and #anchor) resolves, and no passage is copied from
// one page to another (each fact lives in one place).
import {existsSync, readFileSync, readdirSync, statSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'
import {describe, expect, it} from 'vitest'

const ROOT = process.cwd()

function markdownUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return markdownUnder(path)
    return name.endsWith('.md') ? [path] : []
  })
}

const PAGES = [join(ROOT, 'README.md'), join(ROOT, 'BENCHMARKS.md'), ...markdownUnder(join(ROOT, 'docs'))]
const text = (path: string) => readFileSync(path, 'utf8')

/** Text outside fenced code blocks (links and headings there are not links and headings). */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '')
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-')
}

function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  for (const match of prose(markdown).matchAll(/^#{1,6}\s+(.+)$/gm)) {
    const base = slug(match[1]!)
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    result.add(count === 0 ? base : `${base}-${count}`)
  }
  return result
}

describe('README.md', () => {
  const readme = text(join(ROOT, 'README.md'))

  it('is at most 20 KB', () => {
    expect(Buffer.byteLength(readme)).toBeLessThanOrEqual(20 * 1024)
  })

  it('starts with the two set-up commands: run the spigot on the embedded queue, pass the tests', () => {
    const lines = readme.split('\n')
    expect(lines.slice(0, 3)).toEqual(['# cistern', '', '```sh'])
    expect(lines[3]).toMatch(/^npm ci && npm run build && JENKINS_URL=\S+ \.\/bin\/run\.js spigot serve\s+#/)
    expect(lines[4]).toMatch(/^apt-get update && apt-get install -y redis-server && npm ci && npm test\s+#/)
    expect(lines[5]).toBe('```')
  })

  it('lists the exit codes of the delivery contract', () => {
    const contract = text(join(ROOT, 'docs/delivery.md'))
    const codes = (markdown: string, heading: RegExp) => {
      const section = markdown.slice(markdown.search(heading))
      return [...section.matchAll(/^\| (\d+) \|/gm)].map((match) => match[1])
    }
    const fromContract = codes(contract, /^## One-shot runs/m)
    expect(fromContract).toEqual(['0', '1', '2', '3'])
    for (const code of fromContract) expect(codes(readme, /^## Exit codes/m)).toContain(code)
  })
})

describe('links between the pages', () => {
  it.each(PAGES.map((path) => relative(ROOT, path)))('%s: every relative link resolves, anchors included', (page) => {
    const path = join(ROOT, page)
    const broken: string[] = []
    for (const match of prose(text(path)).matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
      const target = match[1]!
      if (/^[a-z]+:/i.test(target)) continue // http(s):, mailto:
      const [file, anchor] = target.split('#') as [string, string | undefined]
      const resolved = file === '' ? path : resolve(dirname(path), file)
      if (!existsSync(resolved)) {
        broken.push(`${target}: no such file`)
        continue
      }
      if (anchor && resolved.endsWith('.md') && !anchors(text(resolved)).has(anchor)) broken.push(`${target}: no such heading`)
    }
    expect(broken).toEqual([])
  })
})

describe('each fact in one place', () => {
  it('no line of prose is repeated on another page (tables, code and short lines aside)', () => {
    const owners = new Map<string, string>()
    const copies: string[] = []
    for (const path of PAGES.filter((page) => !page.includes(join('docs', 'commands')))) {
      for (const raw of prose(text(path)).split('\n')) {
        const line = raw.trim()
        if (line.length < 70 || line.startsWith('|')) continue
        const first = owners.get(line)
        if (first && first !== path) copies.push(`${relative(ROOT, path)} repeats ${relative(ROOT, first)}: ${line.slice(0, 80)}…`)
        else owners.set(line, path)
      }
    }
    expect(copies).toEqual([])
  })
})
