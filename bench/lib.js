// Shared benchmark helpers: a counting sink, the raw keep-alive POST rate baseline, formatting.
import autocannon from 'autocannon'
import {createServer} from 'node:http'

/** A loopback HTTP server that answers 200 to everything and counts requests (the baseline target). */
export async function sink({status = 200, delayMs = 0} = {}) {
  let count = 0
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      count++
      if (delayMs) setTimeout(() => res.writeHead(status).end('ok'), delayMs)
      else res.writeHead(status).end('ok')
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address()
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get count() {
      return count
    },
    reset() {
      count = 0
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(resolve)
    }),
  }
}

/**
 * Load a URL with autocannon (bounded by `seconds`). Returns requests/s, latency percentiles
 * and error counts.
 */
export async function load(url, {connections = 64, seconds = 5, method = 'POST', body = '{}', headers = {}, setupClient} = {}) {
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    method,
    body,
    headers: {'content-type': 'application/json', ...headers},
    setupClient,
  })
  return {
    rps: result.requests.average,
    total: result.requests.total,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
  }
}

/** The raw keep-alive POST rate to a sink with a given concurrency: the baseline most ratios use. */
export async function rawPostRate(url, {connections = 4, seconds = 3, body = '{}'} = {}) {
  const r = await load(url, {connections, seconds, body})
  return r.rps
}

export function ratio(value, baseline) {
  return baseline > 0 ? value / baseline : 0
}

export function fmt(n, digits = 1) {
  return Number(n).toLocaleString('en-US', {maximumFractionDigits: digits})
}

/** Print a small markdown table. */
export function table(rows) {
  const keys = Object.keys(rows[0] ?? {})
  console.log(`| ${keys.join(' | ')} |`)
  console.log(`|${keys.map(() => '---').join('|')}|`)
  for (const row of rows) console.log(`| ${keys.map((k) => row[k]).join(' | ')} |`)
}
