import {execa} from 'execa'
import {readdirSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, expect, it} from 'vitest'

import {tempDir} from '../helpers/tmp.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

// The operator's install path: `npm pack`, then `npm install -g ./cistern-*.tgz`. Installing
// compiles better-sqlite3 from source (about a minute here), hence the long timeout.
describe('npm pack + global install', () => {
  it('gives a working cistern on PATH with its manifest, on the embedded default', {timeout: 600_000}, async () => {
    const dir = tempDir('cistern-install-')
    const prefix = join(dir, 'prefix')
    // The suite already built dist/ (npm test builds first): pack without re-running the build.
    await execa('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], {cwd: ROOT})
    const tarball = readdirSync(dir).find((f) => f.startsWith('cistern-') && f.endsWith('.tgz'))
    expect(tarball).toBeDefined()
    await execa('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', join(dir, tarball!)], {
      cwd: dir,
      timeout: 540_000,
    })
    const bin = join(prefix, 'bin', 'cistern')
    const env = {...process.env, CISTERN_DATA_DIR: join(dir, 'data'), PATH: `${join(prefix, 'bin')}:${process.env.PATH}`}

    const version = await execa('cistern', ['--version'], {env})
    expect(version.stdout).toMatch(/^cistern\/\d+\.\d+\.\d+ /)

    const pkgDir = join(prefix, 'lib', 'node_modules', 'cistern')
    expect(readdirSync(pkgDir)).toContain('oclif.manifest.json')

    const status = await execa(bin, ['spigot', 'status', '--json'], {env, reject: false})
    expect(status.exitCode).toBe(0)
    // No Jenkins configured: state and backlog still come out.
    expect(JSON.parse(status.stdout)).toMatchObject({state: 'ON', backlog: 0, queue: {visible: 0, inFlight: 0}, jenkins: []})

    const help = await execa(bin, ['autocomplete', '--help'], {env})
    expect(help.stdout).toMatch(/autocomplete/)
  })
})
