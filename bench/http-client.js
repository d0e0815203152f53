// http-client: CPU per request of the core HTTP client (src/core/http-client.ts) against the
// hand-written node:http fetch status-queue used before phase 2 (src/status-queue/http.ts, removed
// from src when status-queue moved to the core client; kept below as this bench's baseline),
// and undici's own fetch (the global fetch), posting a commit-status-sized body over keep-alive to
// a sink in another process (so the sink's CPU is not counted). Rounds alternate the clients;
// the median round is reported, as µs of this process's CPU per request and a ratio to the baseline.
//   npm run bench -- http-client [--requests 4000] [--concurrency 16] [--rounds 3]
import {Octokit} from '@octokit/rest'
import {spawn} from 'node:child_process'
import http from 'node:http'
import https from 'node:https'

import {HttpClient} from '../dist/core/http-client.js'
import {fmt, table} from './lib.js'

function option(args, name, fallback) {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : fallback
}

/** The former src/status-queue/http.ts: a `fetch` for Octokit over node:http(s) keep-alive agents (the baseline). */
function nodeFetch({maxSockets = 16, timeoutMs = 30_000} = {}) {
  const agentOptions = {keepAlive: true, maxSockets, maxFreeSockets: maxSockets}
  const agents = {'http:': new http.Agent(agentOptions), 'https:': new https.Agent(agentOptions)}
  return (input, init = {}) =>
    new Promise((resolve, reject) => {
      const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
      const request = (url.protocol === 'https:' ? https : http).request(url, {method: init.method ?? 'GET', headers: init.headers, agent: agents[url.protocol]})
      const timer = setTimeout(() => request.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
      request.on('error', (error) => {
        clearTimeout(timer)
        reject(error)
      })
      request.on('response', (response) => {
        const chunks = []
        response.on('data', (chunk) => chunks.push(chunk))
        response.on('end', () => {
          clearTimeout(timer)
          const headers = new Headers()
          for (const [name, value] of Object.entries(response.headers)) if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value)
          resolve(new Response(response.statusCode === 204 ? null : Buffer.concat(chunks), {status: response.statusCode, headers}))
        })
      })
      request.end(init.body)
    })
}

const SINK = `
const {createServer} = require('node:http')
const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => res.writeHead(201, {'content-type': 'application/json'}).end('{"state":"success","id":1}'))
})
server.keepAliveTimeout = 60000
server.listen(0, '127.0.0.1', () => process.send(server.address().port))
`

async function startSink() {
  const child = spawn(process.execPath, ['-e', SINK], {stdio: ['ignore', 'inherit', 'inherit', 'ipc']})
  const port = await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`sink exited ${code}`)))
  })
  return {url: `http://127.0.0.1:${port}`, close: () => child.kill()}
}

const BODY = JSON.stringify({state: 'success', target_url: 'https://buildkite.com/acme/web-app/builds/1234', description: 'Build #1234 passed', context: 'buildkite/web-app'})
const HEADERS = {'content-type': 'application/json; charset=utf-8', accept: 'application/vnd.github.v3+json', authorization: 'token bench-token-not-secret', 'user-agent': 'cistern-bench'}

/** Send `requests` requests, `concurrency` at a time; returns CPU µs per request and requests/s. */
async function measure(send, {requests, concurrency}) {
  for (let i = 0; i < 200; i++) await send(i) // warm up: connections, JIT
  const cpu = process.cpuUsage()
  const began = process.hrtime.bigint()
  let next = 0
  await Promise.all(
    Array.from({length: concurrency}, async () => {
      while (next < requests) await send(next++)
    }),
  )
  const seconds = Number(process.hrtime.bigint() - began) / 1e9
  const used = process.cpuUsage(cpu)
  return {cpuUs: (used.user + used.system) / requests, rps: requests / seconds}
}

function viaFetch(fetchImpl, url) {
  return async () => {
    const response = await fetchImpl(`${url}/repos/acme/web/statuses/${'a'.repeat(40)}`, {method: 'POST', headers: HEADERS, body: BODY})
    if (response.status !== 201) throw new Error(`status ${response.status}`)
    await response.text()
  }
}

function viaOctokit(fetchImpl, url) {
  const octokit = new Octokit({auth: 'bench-token-not-secret', baseUrl: url, request: {fetch: fetchImpl}})
  return async (i) => {
    await octokit.rest.repos.createCommitStatus({owner: 'acme', repo: 'web', sha: i.toString(16).padStart(40, '0'), state: 'success', context: 'buildkite/web-app'})
  }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

export default async function run(args = []) {
  const requests = option(args, 'requests', 4000)
  const concurrency = option(args, 'concurrency', 16)
  const rounds = option(args, 'rounds', 3)
  const sink = await startSink()
  const core = new HttpClient({connections: concurrency})
  const clients = {
    'node:http fetch (status-queue/http.ts, baseline)': nodeFetch({maxSockets: concurrency}),
    'core HttpClient.fetch': core.fetch,
    'global fetch (undici.fetch)': globalThis.fetch,
  }
  const raw = {'core HttpClient.request': (i) => core.request({method: 'POST', url: `${sink.url}/repos/acme/web/statuses/${i}`, headers: HEADERS, body: BODY})}
  try {
    const rows = []
    for (const [mode, build] of [
      ['fetch()', viaFetch],
      ['Octokit createCommitStatus', viaOctokit],
    ]) {
      const results = Object.fromEntries(Object.keys(clients).map((name) => [name, []]))
      if (mode === 'fetch()') for (const name of Object.keys(raw)) results[name] = []
      for (let round = 0; round < rounds; round++) {
        for (const [name, fetchImpl] of Object.entries(clients)) results[name].push(await measure(build(fetchImpl, sink.url), {requests, concurrency}))
        if (mode === 'fetch()') for (const [name, send] of Object.entries(raw)) results[name].push(await measure(send, {requests, concurrency}))
      }
      const baseline = median(results[Object.keys(clients)[0]].map((r) => r.cpuUs))
      for (const [name, runs] of Object.entries(results)) {
        const cpuUs = median(runs.map((r) => r.cpuUs))
        rows.push({path: mode, client: name, 'CPU µs/request': fmt(cpuUs, 0), 'ratio to baseline': fmt(cpuUs / baseline, 2), 'requests/s': fmt(median(runs.map((r) => r.rps)), 0)})
      }
    }
    console.log(`${requests} POSTs per round, ${concurrency} in flight, ${rounds} rounds (median), sink in another process`)
    table(rows)
  } finally {
    await core.close()
    sink.close()
  }
}
