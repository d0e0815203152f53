import {execa} from 'execa'

import {CLI} from './cli.js'

/**
 * Start the built `cistern spigot serve` on a free loopback port; resolves once it logged its URL.
 * The child is killed by the cleanup callback pushed onto `cleanup`.
 */
export async function startServe(env: Record<string, string>, args: string[], cleanup: Array<() => unknown>) {
  const child = execa('node', [CLI, 'spigot', 'serve', '--port', '0', '--host', '127.0.0.1', '--log-format', 'json', ...args], {
    env: {NO_COLOR: '1', ...env},
    reject: false,
    timeout: 60_000,
  })
  cleanup.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
    return child.catch(() => undefined)
  })
  const lines: string[] = []
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${lines.join('\n')}`)), 20_000)
    child.stderr.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        lines.push(line)
        try {
          const parsed = JSON.parse(line) as {msg?: string; url?: string}
          if (parsed.msg === 'spigot intake listening' && parsed.url) {
            clearTimeout(timer)
            resolve(parsed.url)
          }
        } catch {
          // not JSON: keep collecting
        }
      }
    })
    void child.then(() => {
      clearTimeout(timer)
      reject(new Error(`serve exited: ${lines.join('\n')}`))
    })
  })
  return {child, url, lines}
}
