// The examples/ an operator copies, checked as they are written: configs through `cistern config check`
// (the built CLI; refresh dist/ with `npx tsc -p tsconfig.build.json`) and each section through its
// piece's own schema; the cron line run for real; the systemd units through `systemd-analyze verify`.
import {chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {basename, join, relative} from 'node:path'

import {execa} from 'execa'
import {parse as parseYaml} from 'yaml'
import {describe, expect, it} from 'vitest'

import {CISTERN_SECTIONS} from '../../src/config/cistern.js'
import {workerSectionSchema} from '../../src/codepipeline/config.js'
import {jobsSchema, looksLikeJobs} from '../../src/core/jobs.js'
import {openQueue} from '../../src/core/queue/index.js'
import {hooksConfigSchema} from '../../src/hooks/config.js'
import {spigotSchema} from '../../src/spigot/config.js'
import {openStateStore} from '../../src/spigot/state.js'
import {listenerSchema} from '../../src/sqs-listener/config.js'
import {statusQueueSection} from '../../src/status-queue/config.js'
import {CLI, cistern} from '../helpers/cli.js'
import {jenkinsStandIn} from '../helpers/jenkins.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, webhook} from '../spigot/drain-fixtures.js'

const ROOT = process.cwd()
const EXAMPLES = join(ROOT, 'examples')

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return yamlFiles(path)
    return /\.ya?ml$/.test(name) ? [path] : []
  })
}

/** What `config check` should be run on: cistern configs and jobs files, told apart by content. */
function kindOf(path: string): 'cistern' | 'jobs' | undefined {
  // logLevel silent: CloudFormation's !Ref/!Sub tags are not ours to resolve.
  const data = parseYaml(readFileSync(path, 'utf8'), {logLevel: 'silent'}) as unknown
  if (/^cistern\.ya?ml$/.test(basename(path))) return 'cistern' // whatever it holds, it must pass
  if (looksLikeJobs(data)) return 'jobs'
  if (data && typeof data === 'object' && !Array.isArray(data)) {
    const keys = Object.keys(data)
    if (keys.length > 0 && keys.every((key) => CISTERN_SECTIONS.includes(key))) return 'cistern'
  }
  return undefined // another tool's file (CloudFormation, a workflow, codepipeline.yml, .sqslistener…)
}

describe('examples/cistern.yml', () => {
  const file = join(EXAMPLES, 'cistern.yml')
  const data = parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown>

  it('has every section and passes `cistern config check`', async () => {
    expect(Object.keys(data).sort()).toEqual([...CISTERN_SECTIONS].sort())
    const result = await cistern(['config', 'check', 'examples/cistern.yml'], {cwd: ROOT})
    expect(result.stderr).toBe('')
    expect(result.exitCode).toBe(0)
    expect(result.stdout).toBe('examples/cistern.yml: ok (cistern)')
  })

  it("each section passes its piece's own schema (whether or not config check has it wired yet)", () => {
    const schemas = {
      spigot: spigotSchema,
      'status-queue': statusQueueSection,
      'codepipeline-worker': workerSectionSchema,
      'sqs-listen': listenerSchema,
      hooks: hooksConfigSchema,
      jobs: jobsSchema,
    }
    expect(Object.keys(schemas).sort()).toEqual([...CISTERN_SECTIONS].sort())
    for (const [section, schema] of Object.entries(schemas)) {
      const parsed = schema.safeParse(data[section])
      expect(parsed.success, `${section}: ${parsed.error?.message}`).toBe(true)
    }
    // sqs-listen: the listener schema is loose (Bang! files carry extra keys); the example has none.
    const known = new Set(Object.keys(listenerSchema.shape))
    expect(Object.keys(data['sqs-listen'] as object).filter((key) => !known.has(key))).toEqual([])
  })

  it('a misspelt section or a bad job is refused with file, line and key (exit 2)', async () => {
    const dir = tempDir('cistern-e2e-examples-')
    const text = readFileSync(file, 'utf8')
    const misspelt = join(dir, 'misspelt.yml')
    writeFileSync(misspelt, text.replace(/^hooks:$/m, 'hook:'))
    const bad = await cistern(['config', 'check', misspelt])
    expect(bad.exitCode).toBe(2)
    const line = text.split('\n').indexOf('hooks:') + 1
    expect(bad.stderr).toContain(`misspelt.yml:${line} hook: unknown key`)

    const badJob = join(dir, 'bad-job.yml')
    writeFileSync(badJob, text.replace('    argv: [make, -C, /srv/acme, dist]', '    argv: []'))
    const refused = await cistern(['config', 'check', badJob])
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toMatch(/bad-job\.yml:\d+ jobs\.build\.argv/)
  })
})

describe('every cistern config and jobs file under examples/', () => {
  const files = yamlFiles(EXAMPLES).map((path) => ({path, rel: relative(ROOT, path), kind: kindOf(path)}))
  const checked = files.filter((f) => f.kind)

  it('finds the known ones (so this cannot pass by checking nothing)', () => {
    const names = checked.map((f) => f.rel)
    for (const known of ['examples/cistern.yml', 'examples/core/jobs.yml', 'examples/status-queue/cistern.yml']) expect(names).toContain(known)
    console.log(`config check on: ${names.join(', ')}; not cistern files: ${files.filter((f) => !f.kind).map((f) => f.rel).join(', ')}`)
  })

  it.each(checked.map((f) => [f.rel, f.kind] as const))('%s (%s) passes `cistern config check`', async (rel, kind) => {
    const result = await cistern(['config', 'check', rel, '--kind', kind!, '--json'], {cwd: ROOT})
    expect(result.stderr).toBe('')
    expect(result.exitCode).toBe(0)
    expect(JSON.parse(String(result.stdout))).toMatchObject({ok: true, kind})
  })
})

describe('examples/cron/cistern-spigot-drain, run as written', () => {
  it('drains when ON, exits 3 and turns OFF when Jenkins is down, does nothing while OFF, 75 when a drain still runs', {timeout: 60_000}, async () => {
    const dir = tempDir('cistern-e2e-cron-')
    const dataDir = join(dir, 'lib')
    const logDir = join(dir, 'log')
    const binDir = join(dir, 'bin')
    for (const d of [dataDir, logDir, binDir]) mkdirSync(d, {recursive: true})
    writeFileSync(join(binDir, 'cistern'), `#!/bin/sh\nexec node ${JSON.stringify(CLI)} "$@"\n`)
    chmodSync(join(binDir, 'cistern'), 0o755)
    const jenkins = await jenkinsStandIn('accept')
    const envFile = join(dir, 'cistern.env')
    writeFileSync(envFile, `# as /etc/cistern/cistern.env\nJENKINS_URL=${jenkins.url}\nCISTERN_DATA_DIR=${dataDir}\nCISTERN_LOG_FORMAT=json\n`)

    // The crontab line: 5 time fields, the user, then the command (run by cron with SHELL=/bin/sh).
    const line = readFileSync(join(EXAMPLES, 'cron/cistern-spigot-drain'), 'utf8')
      .split('\n')
      .find((l) => /^[*\d]/.test(l))!
    const fields = line.split(/\s+/)
    expect(fields.slice(0, 6)).toEqual(['*/5', '*', '*', '*', '*', 'cistern'])
    const command = line
      .replace(/^(\S+\s+){6}/, '')
      .replaceAll('/etc/cistern/cistern.env', envFile)
      .replaceAll('/var/lib/cistern', dataDir)
      .replaceAll('/var/log/cistern', logDir)
    const cron = () => execa('/bin/sh', ['-c', command], {env: {PATH: `${binDir}:/usr/local/bin:/usr/bin:/bin`}, extendEnv: false, reject: false, timeout: 30_000})
    const log = () => readFileSync(join(logDir, 'drain.log'), 'utf8')

    const dbPath = join(dataDir, 'cistern.db')
    const queue = await openQueue(`sqlite:${dbPath}#spigot`, {fifo: true})
    const state = await openStateStore({backend: 'local', dbPath})
    try {
      const hooks = [webhook('push', {repo: 'acme/api'}), webhook('pull_request', {repo: 'acme/web'})]
      await enqueue(queue, hooks.map((h) => h.message))
      const ok = await cron()
      expect(ok.exitCode, log()).toBe(0)
      expect(log()).toMatch(/drain: 2 delivered, 0 retried, 0 dead, 0 remaining/)
      expect(jenkins.webhooks.map((r) => r.headers['x-github-delivery'])).toEqual(expect.arrayContaining(hooks.map((h) => h.delivery)))

      await enqueue(queue, [webhook('push', {repo: 'acme/api'}).message])
      await jenkins.setMode('refuse')
      const down = await cron()
      expect(down.exitCode).toBe(3)
      expect(log()).toMatch(/stopped: Jenkins down; spigot ON → OFF/)
      expect(await state.get()).toBe('OFF')

      await jenkins.setMode('accept')
      const off = await cron()
      expect(off.exitCode).toBe(0)
      expect(log()).toMatch(/the spigot is OFF, nothing replayed/)
      expect((await queue.stats()).visible).toBe(1)

      // A drain still holding the lock: the next one gives up at once with 75.
      const holder = execa('flock', [join(dataDir, 'spigot-drain.lock'), 'sleep', '5'], {reject: false})
      await new Promise((resolve) => setTimeout(resolve, 300))
      const skipped = await cron()
      holder.kill('SIGTERM')
      await holder
      expect(skipped.exitCode).toBe(75)
    } finally {
      await queue.close()
      await state.close()
      await jenkins.close()
    }
  })
})

describe('examples/systemd', () => {
  const units = readdirSync(join(EXAMPLES, 'systemd')).filter((name) => /\.(service|timer)$/.test(name))

  it('the units pass systemd-analyze verify', async (context) => {
    const probe = await execa('systemd-analyze', ['--version'], {reject: false})
    if (probe.exitCode !== 0) return context.skip()
    const result = await execa('systemd-analyze', ['verify', ...units.map((u) => `./${u}`)], {cwd: join(EXAMPLES, 'systemd'), reject: false})
    expect(result.stderr).toBe('')
    expect(result.exitCode).toBe(0)
  })

  it('every service reads the env file, runs unprivileged, restarts or is a oneshot, and has a stop timeout', () => {
    for (const unit of units.filter((u) => u.endsWith('.service'))) {
      const text = readFileSync(join(EXAMPLES, 'systemd', unit), 'utf8')
      expect(text, unit).toMatch(/^EnvironmentFile=\/etc\/cistern\/cistern\.env$/m)
      expect(text, unit).toMatch(/^User=cistern$/m)
      expect(text, unit).toMatch(/^(Restart=on-failure|Type=oneshot)$/m)
      expect(text, unit).toMatch(/^TimeoutStopSec=\d+$/m)
      expect(text, unit).toMatch(/^ExecStart=\/usr\/bin\/env cistern /m)
    }
  })
})
