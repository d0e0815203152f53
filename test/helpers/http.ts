import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

export interface RecordedRequest {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: Buffer
}

export interface StandIn {
  url: string
  port: number
  requests: RecordedRequest[]
  /** Replace how requests are answered. */
  respond(handler: (req: RecordedRequest, res: ServerResponse) => void | Promise<void>): void
  close(): Promise<void>
}

/**
 * A loopback HTTP server standing in for Jenkins, GitHub, Travis or API Gateway. It records every
 * request (raw body bytes included) and answers through a replaceable handler (default 200 "ok").
 */
export async function standIn(
  handler: (req: RecordedRequest, res: ServerResponse) => void | Promise<void> = (_req, res) => {
    res.end('ok')
  },
): Promise<StandIn> {
  let current = handler
  const requests: RecordedRequest[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    const answer = async () => {
      const recorded = {method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks)}
      requests.push(recorded)
      try {
        await current(recorded, res)
      } catch (error) {
        res.statusCode = 500
        res.end(String(error))
      }
    }
    req.on('end', () => void answer())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    respond(next) {
      current = next
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
