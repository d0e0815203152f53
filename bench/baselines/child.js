// The child-process side of the queue benchmarks: each process here is started by bench/queue.js
// (or the spawn helper below) and talks to it over IPC, so a load generator, a server and a sink
// never share an event loop.
import {spawn} from 'node:child_process'
import {fileURLToPath} from 'node:url'

/**
 * Starts bench/baselines/<name>.js with `env`; `next()` resolves with its next IPC message.
 * BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") are given to node.
 */
export function startChild(name, env = {}) {
  const file = fileURLToPath(new URL(`./${name}.js`, import.meta.url))
  const nodeArgs = (env.BENCH_NODE_ARGS ?? process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const child = spawn(process.execPath, [...nodeArgs, file], {stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: {...process.env, ...env}})
  const messages = []
  let wake
  child.on('message', (message) => {
    messages.push(message)
    wake?.()
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return {
    child,
    next: () =>
      new Promise((resolve, reject) => {
        const check = () => (messages.length ? resolve(messages.shift()) : undefined)
        wake = check
        exited.then((code) => reject(new Error(`bench child ${name} exited (${code})`)))
        check()
      }),
    send: (message) => child.send(message),
    /** Waits for the child to end (it does after 'stop'), ending it after 10 s. */
    stop: async () => {
      let timer
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 10_000)))])
      clearTimeout(timer)
      if (child.exitCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}

/** In a child: answer the parent's messages with what the handler returns; 'stop' then ends the process. */
export function serve(handlers) {
  process.on('message', async (message) => {
    const type = typeof message === 'string' ? message : message.type
    const reply = await handlers[type]?.(message)
    const after = type === 'stop' ? () => process.exit(0) : undefined
    if (reply !== undefined) process.send(reply, after)
    else after?.()
  })
}

/**
 * Runs one drain child (bench/baselines/<name>.js, filling its queue when it starts) to the end
 * against the counting sink child: its ready and done replies, plus how many POSTs the sink counted.
 */
export async function drainOnce(name, env, sink) {
  const child = startChild(name, env)
  const ready = await child.next()
  sink.send('count')
  const before = (await sink.next()).count
  child.send('go')
  const done = await child.next()
  sink.send('count')
  const posted = (await sink.next()).count - before
  child.send('stop')
  await child.stop()
  return {...ready, ...done, posted}
}

/**
 * A server baseline's child side: listen on a free loopback port, tell the parent its URL, and
 * answer 'mark' (start counting CPU) and 'stop' (close every connection, then `finish(cpuUs)`'s
 * reply: what the server stored and anything else it reports).
 */
export function serveHttp(server, finish) {
  server.keepAliveTimeout = 65_000
  server.listen(0, '127.0.0.1', () => process.send({url: `http://127.0.0.1:${server.address().port}`}))
  let mark = process.cpuUsage()
  serve({
    mark: () => {
      mark = process.cpuUsage()
      return {marked: true}
    },
    stop: async () => {
      const cpuUs = cpuSince(mark)
      server.closeAllConnections()
      return finish(cpuUs)
    },
  })
}

/** CPU (user + system, all threads) since `from`, in µs. */
export function cpuSince(from) {
  const used = process.cpuUsage(from)
  return used.user + used.system
}

/** A JSON body of about `bytes` (a webhook is ~7 KB), different per `i`. */
export function payload(i, bytes) {
  const head = `{"n":${i},"ref":"refs/heads/main","pad":"`
  return head + 'x'.repeat(Math.max(0, bytes - head.length - 2)) + '"}'
}

export const PRAGMAS = ['busy_timeout = 10000', 'journal_mode = WAL', 'synchronous = FULL']
