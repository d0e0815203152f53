// Baseline: a bare node:http server that reads the body and answers 200 (no queue at all).
import {createServer} from 'node:http'

import {cpuSince, serve} from './child.js'

const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => res.writeHead(200, {'content-type': 'application/json'}).end('{"ok":true}'))
})
server.keepAliveTimeout = 65_000
server.listen(0, '127.0.0.1', () => process.send({url: `http://127.0.0.1:${server.address().port}`}))
let mark = process.cpuUsage()
serve({
  mark: () => {
    mark = process.cpuUsage()
    return {marked: true}
  },
  stop: () => {
    const reply = {cpuUs: cpuSince(mark), stored: -1}
    server.closeAllConnections()
    return reply
  },
})
