// The examples/ an operator copies, checked as they are written: every file is accounted for; the
// config files pass `cistern config check` (the built CLI: npm run build first) detected as what they
// are; the cron line runs for real; the systemd units pass `systemd-analyze verify`; the Prometheus
// rules pass promtool and fire on the series they are meant for; the dashboard queries metrics that
// cistern serves or that are on the list of metrics to come.
import {chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {basename, dirname, join, relative} from 'node:path'

import {execa} from 'execa'
import {parse as parseYaml, stringify as stringifyYaml} from 'yaml'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {CISTERN_SECTIONS} from '../../src/config/cistern.js'
import type {ConfigKind} from '../../src/config/kinds.js'
import {workerSectionSchema} from '../../src/codepipeline/config.js'
import {jobsSchema} from '../../src/core/jobs.js'
import {openQueue} from '../../src/core/queue/index.js'
import {hooksConfigSchema} from '../../src/hooks/config.js'
import {spigotSchema} from '../../src/spigot/config-file.js'
import {openStateStore} from '../../src/spigot/state.js'
import {listenerSchema} from '../../src/sqs-listener/config.js'
import {statusQueueSection} from '../../src/status-queue/config.js'
import {CLI, cistern} from '../helpers/cli.js'
import {jenkinsStandIn} from '../helpers/jenkins.js'
import {startServe} from '../helpers/spigot-serve.js'
import {tempDir} from '../helpers/tmp.js'
import {enqueue, webhook} from '../spigot/drain-fixtures.js'

const ROOT = process.cwd()
const EXAMPLES = join(ROOT, 'examples')

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? filesUnder(path) : [relative(ROOT, path)]
  })
}

/**
 * Every file under examples/: a config `cistern config check` must accept as the given kind, or
 * what else it is and which test checks it. A new example must be added here.
 */
const EXAMPLE_FILES: Record<string, {kind: ConfigKind} | {is: string; testedBy: string}> = {
  'examples/cistern.yml': {kind: 'cistern'},
  'examples/core/jobs.yml': {kind: 'jobs'},
  'examples/codepipeline/codepipeline.yml': {kind: 'codepipeline-worker'},
  'examples/codepipeline/jobs.yml': {kind: 'jobs'},
  'examples/hooks/cistern.yml': {kind: 'cistern'},
  'examples/hooks/jobs.yml': {kind: 'jobs'},
  'examples/sqs-listener/.sqslistener': {kind: 'sqs-listen'},
  'examples/sqs-listener/jobs.yml': {kind: 'sqs-listen-jobs'},
  'examples/status-queue/cistern.yml': {kind: 'cistern'},

  'examples/ci/Jenkinsfile': {is: 'a Jenkins pipeline around a Jenkins upgrade', testedBy: 'test/e2e/ci-script.test.ts'},
  'examples/ci/github-actions-jenkins-upgrade.yml': {is: 'a GitHub Actions workflow', testedBy: 'test/e2e/ci-script.test.ts'},
  'examples/ci/jenkins-upgrade.sh': {is: 'a CI script', testedBy: 'test/e2e/ci-script.test.ts'},
  'examples/cron/cistern-spigot-drain': {is: 'an /etc/cron.d file', testedBy: 'this file'},
  'examples/codepipeline/action-type-command.json': {is: 'a custom action type definition', testedBy: 'test/codepipeline/examples.test.ts'},
  'examples/codepipeline/action-type-jenkins.json': {is: 'a custom action type definition', testedBy: 'test/codepipeline/examples.test.ts'},
  'examples/codepipeline/action-type-travis.json': {is: 'a custom action type definition', testedBy: 'test/codepipeline/examples.test.ts'},
  'examples/codepipeline/cistern-codepipeline-worker.service': {is: 'a systemd unit', testedBy: 'this file and test/codepipeline/examples.test.ts'},
  'examples/codepipeline/codepipeline-worker.env.example': {is: 'an EnvironmentFile', testedBy: 'this file'},
  'examples/hooks/cistern-hooks.service': {is: 'a systemd unit', testedBy: 'this file and test/hooks/examples.test.ts'},
  'examples/hooks/hooks.env': {is: 'an EnvironmentFile', testedBy: 'this file'},
  'examples/hooks/every-30-seconds.json': {is: 'a hooks task document', testedBy: 'test/hooks/examples.test.ts'},
  'examples/hooks/nightly-job.yaml': {is: 'a hooks task document', testedBy: 'test/hooks/examples.test.ts'},
  'examples/hooks/webhook-to-jenkins.json': {is: 'a hooks task document', testedBy: 'test/hooks/examples.test.ts'},
  'examples/hooks/webhook-to-spigot-queue.json': {is: 'a hooks task document', testedBy: 'test/hooks/examples.test.ts'},
  'examples/monitoring/cistern-alerts.yml': {is: 'Prometheus alerting rules', testedBy: 'this file (promtool)'},
  'examples/monitoring/cistern-alerts.test.yml': {is: "promtool's unit tests of the rules", testedBy: 'this file (promtool)'},
  'examples/monitoring/grafana-dashboard.json': {is: 'a Grafana dashboard', testedBy: 'this file'},
  'examples/spigot/apigw-mapping-template.vtl': {is: 'an API Gateway mapping template', testedBy: 'test/spigot/examples.test.ts'},
  'examples/sqs-listener/cistern-sqs-listen.service': {is: 'a systemd unit', testedBy: 'this file and test/sqs-listener/examples.test.ts'},
  'examples/sqs-listener/logging-conf.yml': {is: 'a Python logging dict-config', testedBy: 'test/sqs-listener/examples.test.ts'},
  'examples/status-queue/cistern-status-queue.service': {is: 'a systemd unit', testedBy: 'this file and test/status-queue/examples.test.ts'},
  'examples/status-queue/status-queue.env': {is: 'an EnvironmentFile', testedBy: 'this file'},
  'examples/status-queue/template.yaml': {is: 'a CloudFormation template', testedBy: 'test/status-queue/examples.test.ts'},
  'examples/systemd/cistern-spigot-drain.service': {is: 'a systemd unit', testedBy: 'this file'},
  'examples/systemd/cistern-spigot-drain.timer': {is: 'a systemd timer', testedBy: 'this file'},
  'examples/systemd/cistern-spigot-serve.service': {is: 'a systemd unit', testedBy: 'this file'},
  'examples/systemd/cistern.env': {is: 'an EnvironmentFile', testedBy: 'this file'},
}

const CONFIGS = Object.entries(EXAMPLE_FILES).flatMap(([path, entry]) => ('kind' in entry ? [[path, entry.kind] as const] : []))

describe('every file under examples/', () => {
  it('is accounted for: a config to check, or another file with the test that checks it', () => {
    expect(filesUnder(EXAMPLES).sort()).toEqual(Object.keys(EXAMPLE_FILES).sort())
  })

  it.each(CONFIGS)('%s passes `cistern config check`, detected as %s', async (path, kind) => {
    const result = await cistern(['config', 'check', path, '--json'], {cwd: ROOT})
    expect(result.stderr).toBe('')
    expect(result.exitCode).toBe(0)
    expect(JSON.parse(String(result.stdout))).toEqual({file: path, kind, ok: true})
  })

  it('the env files are plain KEY=value lines (systemd reads them, the cron line sources them with sh)', () => {
    const envFiles = Object.keys(EXAMPLE_FILES).filter((path) => /\.env(\.example)?$/.test(path))
    expect(envFiles.length).toBe(4)
    for (const path of envFiles) {
      for (const line of readFileSync(path, 'utf8').split('\n')) {
        if (line.trim() === '' || line.startsWith('#')) continue
        expect(line, path).toMatch(/^[A-Z_][A-Z0-9_]*=[^\s'"`$;&|]*$/)
      }
    }
  })
})

describe('examples/cistern.yml', () => {
  const file = join(EXAMPLES, 'cistern.yml')
  const data = parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown>

  it('has every section', () => {
    expect(Object.keys(data).sort()).toEqual([...CISTERN_SECTIONS].sort())
  })

  it("each section passes its piece's own schema", () => {
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
    const emptied = text.replace(/^ {4}argv: \[sh, -c, .*\]$/m, '    argv: []')
    expect(emptied).not.toBe(text)
    writeFileSync(badJob, emptied)
    const refused = await cistern(['config', 'check', badJob])
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toMatch(/bad-job\.yml:\d+ jobs\.build\.argv/)
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

describe('the systemd units and timers under examples/', () => {
  const units = Object.keys(EXAMPLE_FILES).filter((path) => /\.(service|timer)$/.test(path))
  const services = units.filter((path) => path.endsWith('.service'))
  const read = (path: string) => readFileSync(join(ROOT, path), 'utf8')

  it('finds them all', () => {
    expect(services.map((path) => basename(path)).sort()).toEqual([
      'cistern-codepipeline-worker.service',
      'cistern-hooks.service',
      'cistern-spigot-drain.service',
      'cistern-spigot-serve.service',
      'cistern-sqs-listen.service',
      'cistern-status-queue.service',
    ])
  })

  it.for([...new Set(units.map((path) => dirname(path)))])('%s passes systemd-analyze verify', async (dir, context) => {
    const probe = await execa('systemd-analyze', ['--version'], {reject: false})
    if (probe.exitCode !== 0) return context.skip('systemd-analyze is not installed (Debian package systemd)')
    // A timer is verified beside the service it starts, as systemd would see them.
    const here = units.filter((path) => dirname(path) === dir).map((path) => `./${basename(path)}`)
    const result = await execa('systemd-analyze', ['verify', ...here], {cwd: join(ROOT, dir), reject: false})
    expect(result.stderr).toBe('')
    expect(result.exitCode).toBe(0)
  })

  it.each(services)('%s starts cistern through /usr/bin/env, unprivileged, restarting or oneshot, with a stop timeout', (path) => {
    const text = read(path)
    // `npm install -g` puts cistern in /usr/local/bin or /usr/bin depending on the prefix.
    expect(text).toMatch(/^ExecStart=\/usr\/bin\/env cistern /m)
    expect(text).not.toMatch(/^ExecStart=\/usr\/(local\/)?bin\/cistern/m)
    expect(text).toMatch(/^User=(?!root$)\S+$/m)
    expect(text).toMatch(/^(Restart=on-failure|Type=oneshot)$/m)
    expect(text).toMatch(/^TimeoutStopSec=\d+$/m)
  })

  it('units whose cistern runs jobs signal cistern only (KillMode=mixed): it stops the jobs itself', () => {
    const runJobs = ['cistern-codepipeline-worker.service', 'cistern-hooks.service', 'cistern-sqs-listen.service']
    for (const path of services) expect(read(path).includes('\nKillMode=mixed\n'), path).toBe(runJobs.includes(basename(path)))
  })

  it('RestartPreventExitStatus=2 only where exit 2 is always a config error', () => {
    // codepipeline-worker exits 2 for a bad config, an unknown job, a missing credential variable or
    // region, an action type CodePipeline does not know; status-queue for a bad config, a missing
    // token or a GITHUB_URL that is not the API (a token one organisation refuses no longer exits).
    const allowed = ['cistern-codepipeline-worker.service', 'cistern-status-queue.service']
    for (const path of services) expect(/^RestartPreventExitStatus=2$/m.test(read(path)), path).toBe(allowed.includes(basename(path)))
  })

  it('the spigot units read /etc/cistern/cistern.env', () => {
    for (const path of services.filter((p) => p.startsWith('examples/systemd/'))) expect(read(path), path).toMatch(/^EnvironmentFile=\/etc\/cistern\/cistern\.env$/m)
  })
})

// --- monitoring ------------------------------------------------------------------------------------

/**
 * Metrics the rules and the dashboard use that no cistern process serves yet: the queue and target
 * metrics every worker is to serve (docs/operations.md#monitoring). A piece that starts serving one
 * needs no change here; one that is renamed must be renamed in the examples too.
 */
const TO_COME = ['cistern_dead_letters_total', 'cistern_queue_messages', 'cistern_queue_oldest_message_age_seconds', 'cistern_target_up']
/** Served by Prometheus itself and by node_exporter (systemd collector). */
const OTHERS = ['node_systemd_unit_state', 'up']

const MONITORING = join(EXAMPLES, 'monitoring')
const rules = parseYaml(readFileSync(join(MONITORING, 'cistern-alerts.yml'), 'utf8')) as {groups: Array<{rules: Array<{alert: string; expr: string}>}>}
interface Panel {
  id: number
  type: string
  title: string
  gridPos: {h: number; w: number; x: number; y: number}
  datasource?: {uid: string}
  targets?: Array<{expr: string; refId: string}>
}
const dashboard = JSON.parse(readFileSync(join(MONITORING, 'grafana-dashboard.json'), 'utf8')) as {panels: Panel[]; templating: {list: Array<{name: string}>}}
const ruleExprs = rules.groups.flatMap((group) => group.rules.map((rule) => rule.expr))
const panelExprs = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr))

/** Metric names in a PromQL expression (the vocabulary here: cistern_, process_, nodejs_, node_, up). */
function metricNames(expr: string): string[] {
  const names = expr.match(/\b(?:cistern|process|nodejs|node)_[a-z0-9_]+\b|\bup(?=\{)/g) ?? []
  return names.map((name) => name.replace(/_(bucket|sum|count)$/, ''))
}

/** A dashboard query as Prometheus would get it from Grafana (variables at their "All" value). */
function asPromql(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replace(/\$\w+/g, '.*')
}

async function promtool(args: string[], cwd: string) {
  return execa('promtool', args, {cwd, reject: false, timeout: 60_000})
}

describe('examples/monitoring', () => {
  let hasPromtool = false
  beforeAll(async () => {
    hasPromtool = (await execa('promtool', ['--version'], {reject: false}).catch(() => ({exitCode: 1}))).exitCode === 0
  })

  it('the rules cover backlog age, dead letters, an unhealthy target and a worker that is down', () => {
    const alerts = rules.groups.flatMap((group) => group.rules.map((rule) => rule.alert))
    for (const alert of ['CisternBacklogAging', 'CisternDeadLetters', 'CisternTargetDown', 'CisternWorkerDown']) expect(alerts).toContain(alert)
  })

  it('the rules pass `promtool check rules` and their unit tests (`promtool test rules`)', async (context) => {
    if (!hasPromtool) return context.skip('promtool is not installed (Debian package prometheus); .ci/run installs it')
    const check = await promtool(['check', 'rules', 'cistern-alerts.yml'], MONITORING)
    expect(check.stdout + check.stderr).toContain(`SUCCESS: ${ruleExprs.length} rules found`)
    expect(check.exitCode).toBe(0)
    const test = await promtool(['test', 'rules', 'cistern-alerts.test.yml'], MONITORING)
    expect(test.stdout + test.stderr).toContain('SUCCESS')
    expect(test.exitCode).toBe(0)
  })

  it('every dashboard query is valid PromQL (checked by promtool as recording rules)', async (context) => {
    if (!hasPromtool) return context.skip('promtool is not installed (Debian package prometheus); .ci/run installs it')
    const dir = tempDir('cistern-dashboard-')
    const recording = {groups: [{name: 'dashboard', rules: panelExprs.map((expr, i) => ({record: `dashboard:query_${i}`, expr: asPromql(expr)}))}]}
    writeFileSync(join(dir, 'dashboard-queries.yml'), stringifyYaml(recording))
    const check = await promtool(['check', 'rules', 'dashboard-queries.yml'], dir)
    expect(check.stdout + check.stderr).toContain(`SUCCESS: ${panelExprs.length} rules found`)
    expect(check.exitCode).toBe(0)
  })

  it('the dashboard is importable: unique panel ids, a Prometheus data source input, a query per panel, no overlaps', () => {
    const ids = dashboard.panels.map((panel) => panel.id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(dashboard.templating.list.map((variable) => variable.name)).toEqual(['instance', 'queue'])
    const cells = new Set<string>()
    for (const panel of dashboard.panels) {
      const {h, w, x, y} = panel.gridPos
      expect(x + w, panel.title).toBeLessThanOrEqual(24)
      for (let row = y; row < y + h; row++) {
        for (let column = x; column < x + w; column++) {
          const cell = `${row}:${column}`
          expect(cells.has(cell), `${panel.title} overlaps at ${cell}`).toBe(false)
          cells.add(cell)
        }
      }
      if (panel.type === 'row') continue
      expect(panel.datasource?.uid, panel.title).toBe('${DS_PROMETHEUS}')
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0)
    }
  })

  describe('the metrics they use', () => {
    const cleanup: Array<() => unknown> = []
    const served = new Set<string>()

    beforeAll(async () => {
      // Scrape the two processes that serve /metrics today: spigot serve and hooks serve.
      const dir = tempDir('cistern-metrics-')
      const spigot = await startServe({JENKINS_URL: 'http://127.0.0.1:9/', CISTERN_DATA_DIR: dir}, [], cleanup)
      const hooksEnv = {NO_COLOR: '1', CISTERN_DATA_DIR: dir, CISTERN_HOOKS_TOKEN: 'metrics-test-token'}
      const hooks = execa('node', [CLI, 'hooks', 'serve', '--port', '0', '--host', '127.0.0.1', '--store', `sqlite:${join(dir, 'hooks.db')}`], {env: hooksEnv, reject: false, timeout: 60_000})
      cleanup.push(() => {
        if (hooks.exitCode === null) hooks.kill('SIGKILL')
        return hooks.catch(() => undefined)
      })
      const hooksUrl = await new Promise<string>((resolve, reject) => {
        let out = ''
        const timer = setTimeout(() => reject(new Error(`hooks serve did not start: ${out}`)), 20_000)
        hooks.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          const match = /listening on (http:\/\/\S+)/.exec(out)
          if (match) {
            clearTimeout(timer)
            resolve(match[1]!)
          }
        })
      })
      for (const url of [spigot.url, hooksUrl]) {
        const text = await (await fetch(`${url}/metrics`)).text()
        // `# TYPE name type` names every registered metric, also one with no sample yet.
        for (const match of text.matchAll(/^# TYPE (\S+) /gm)) served.add(match[1]!)
      }
    }, 60_000)
    afterAll(async () => {
      for (const close of cleanup.reverse()) await close()
    })

    it('each is served by cistern today, on the list of metrics to come, or Prometheus/node_exporter own', () => {
      expect(served).toContain('cistern_spigot_webhooks_total')
      expect(served).toContain('cistern_hooks_queue_length')
      const used = new Set([...ruleExprs, ...panelExprs].flatMap(metricNames))
      const unknown = [...used].filter((name) => !served.has(name) && !TO_COME.includes(name) && !OTHERS.includes(name))
      expect(unknown).toEqual([])
      // and the list of metrics to come holds nothing the examples do not use
      for (const name of TO_COME) expect(used, name).toContain(name)
      console.log(`metrics to come, not served yet: ${TO_COME.filter((name) => !served.has(name)).join(', ') || 'none'}`)
    })
  })
})
