// Baseline: a bare node:http server that reads the body and answers 200 (no queue at all).
import {createServer} from 'node:http'

import {serveHttp} from './child.js'

const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => res.writeHead(200, {'content-type': 'application/json'}).end('{"ok":true}'))
})
serveHttp(server, (cpuUs) => ({cpuUs, stored: -1}))
