/**
 * A loopback proxy in front of the SQS emulator that can make one kind of call fail for a while:
 * the CLI under test gets AWS_ENDPOINT_URL=<proxy>, and the test decides which calls (by action
 * and queue URL) are answered with a throttling error, a server error, or a reset connection.
 * Everything else is forwarded to the emulator as it is. SQS speaks AWS JSON 1.0: the action is
 * in the X-Amz-Target header, the queue in the body's QueueUrl.
 */
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'
import type {AddressInfo} from 'node:net'

export type SqsFault = 'throttle' | 'server-error' | 'reset'

export interface SqsCall {
  /** SendMessage, ReceiveMessage… */
  action: string
  queueUrl?: string
}

export interface SqsProxy {
  endpoint: string
  /** Answer matching calls with the fault until `clear()` (or for `forMs`). */
  fail(matches: (call: SqsCall) => boolean, fault: SqsFault, forMs?: number): void
  clear(): void
  /** Calls the fault was answered to, per action. */
  failed: Map<string, number>
  close(): Promise<void>
}

export async function startSqsProxy(target: string): Promise<SqsProxy> {
  let rule: {matches: (call: SqsCall) => boolean; fault: SqsFault; until: number} | undefined
  const failed = new Map<string, number>()

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = []
    for await (const chunk of request) chunks.push(chunk as Buffer)
    const body = Buffer.concat(chunks)
    const call = callOf(request, body)
    if (rule && Date.now() < rule.until && rule.matches(call)) {
      failed.set(call.action, (failed.get(call.action) ?? 0) + 1)
      answerWith(rule.fault, request, response)
      return
    }
    const headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => !['host', 'connection', 'content-length', 'transfer-encoding'].includes(name))) as Record<string, string>
    const forwarded = await fetch(new URL(request.url ?? '/', target), {method: request.method, headers, body: request.method === 'GET' || request.method === 'HEAD' ? undefined : body})
    const answer = Buffer.from(await forwarded.arrayBuffer())
    const out: Record<string, string> = {}
    forwarded.headers.forEach((value, name) => {
      if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(name)) out[name] = value
    })
    response.writeHead(forwarded.status, {...out, 'content-length': String(answer.length)})
    response.end(answer)
  }

  const server: Server = createServer((request, response) => {
    handle(request, response).catch(() => {
      if (!response.headersSent) response.writeHead(502)
      response.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo

  return {
    endpoint: `http://127.0.0.1:${port}`,
    fail(matches, fault, forMs = Number.POSITIVE_INFINITY) {
      rule = {matches, fault, until: Date.now() + forMs}
    },
    clear() {
      rule = undefined
    },
    failed,
    async close() {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

function callOf(request: IncomingMessage, body: Buffer): SqsCall {
  const target = String(request.headers['x-amz-target'] ?? '')
  const action = target.replace(/^AmazonSQS\./, '') || 'unknown'
  try {
    const parsed = JSON.parse(body.toString('utf8')) as {QueueUrl?: unknown}
    return typeof parsed.QueueUrl === 'string' ? {action, queueUrl: parsed.QueueUrl} : {action}
  } catch {
    return {action}
  }
}

function answerWith(fault: SqsFault, request: IncomingMessage, response: ServerResponse): void {
  if (fault === 'reset') {
    request.socket.destroy()
    return
  }
  const [status, type, message] = fault === 'throttle' ? [400, 'ThrottlingException', 'Rate exceeded'] : [500, 'InternalError', 'We encountered an internal error. Please try again.']
  const body = JSON.stringify({__type: `com.amazonaws.sqs#${type}`, message})
  response.writeHead(status, {'content-type': 'application/x-amz-json-1.0', 'x-amzn-query-error': `${type};${fault === 'throttle' ? 'Sender' : 'Receiver'}`, 'content-length': String(Buffer.byteLength(body))})
  response.end(body)
}
