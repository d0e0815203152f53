// A loopback HTTP sink in its own process: reads each POST, answers 200, counts them.
import {createServer} from 'node:http'

import {serve} from './child.js'

let count = 0
const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    count++
    res.writeHead(200).end('ok')
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => process.send({url: `http://127.0.0.1:${server.address().port}`}))
serve({
  count: () => ({count}),
  stop: () => server.closeAllConnections(),
})
