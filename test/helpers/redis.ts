import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

export interface RedisServer {
  url: string
  port: number
  dir: string
  /** Kill it (SIGKILL: nothing flushed beyond what appendfsync already wrote). */
  kill(): Promise<void>
  /** Start it again on the same port and data dir (the AOF is replayed). */
  restart(): Promise<void>
  stop(): Promise<void>
}

/** Is a `redis-server` binary on PATH? (CI installs it via .ci/run.) */
export function hasRedisServer(): boolean {
  try {
    execFileSync('redis-server', ['--version'], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address() as {port: number}
      server.close(() => resolve(port))
    })
  })
}

/**
 * A real redis-server on a free loopback port in a temp dir, durable (appendonly yes, appendfsync
 * always) so a restart keeps every acknowledged write. Stop it in afterAll.
 */
export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'cistern-redis-'))
  const port = await freePort()
  let child: ChildProcess | undefined

  async function launch(): Promise<void> {
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'yes'],
      {stdio: ['ignore', 'pipe', 'pipe']},
    )
    child = proc
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s:\n${output}`)), 10_000)
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        if (/Ready to accept connections/i.test(output)) {
          clearTimeout(timer)
          resolve()
        }
      }
      proc.stdout.on('data', onData)
      proc.stderr.on('data', onData)
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited (${code}):\n${output}`))
      })
    })
    proc.stdout.resume()
    proc.stderr.resume()
  }

  async function kill(): Promise<void> {
    const proc = child
    child = undefined
    if (proc?.exitCode !== null) return // none started, or it has exited
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve())
      proc.kill('SIGKILL')
    })
  }

  await launch()
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    dir,
    kill,
    restart: launch,
    async stop() {
      await kill()
      rmSync(dir, {recursive: true, force: true})
    },
  }
}
