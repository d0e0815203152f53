import {createHash, randomUUID} from 'node:crypto'

import {type RecordedRequest, type StandIn, standIn} from '../helpers/http.js'

interface Stored {
  id: string
  body: string
  receipt?: string
  visibleAt: number
  receiveCount: number
}

export interface FacadeStandIn {
  server: StandIn
  /** What API_URL would be: http://127.0.0.1:<port>/prod */
  apiUrl: string
  messages: Stored[]
  deleted: string[]
  /** Answer the next `count` receives with an SQS error wrapped in HTTP 200, as the facade does. */
  failReceives(count: number): void
  send(body: string): void
  close(): Promise<void>
}

const requestId = () => randomUUID()

/**
 * The original service's API Gateway facade in front of SQS, answering exactly as API Gateway's
 * AWS integration does: GET /prod/message → ReceiveMessage JSON (`messages: null` when empty),
 * DELETE /prod/message?receiptHandle= → DeleteMessage JSON; SQS errors come back as HTTP 200 with
 * an `Error` body; a missing or wrong x-api-key is API Gateway's own 403 {"message":"Forbidden"}.
 */
export async function facadeStandIn(apiKey: string, visibilitySeconds = 2): Promise<FacadeStandIn> {
  let failing = 0
  const self: FacadeStandIn = {
    server: undefined as unknown as StandIn,
    apiUrl: '',
    messages: [],
    deleted: [],
    failReceives(count) {
      failing = count
    },
    send(body) {
      self.messages.push({id: randomUUID(), body, visibleAt: 0, receiveCount: 0})
    },
    close: () => self.server.close(),
  }
  /** The facade's answer to one request: status and JSON body. */
  const answer = (req: RecordedRequest): [number, unknown] => {
    const url = new URL(req.url, 'http://facade')
    const json = (status: number, value: unknown): [number, unknown] => [status, value]
    if (req.headers['x-api-key'] !== apiKey) return json(403, {message: 'Forbidden'})
    if (url.pathname !== '/prod/message') return json(403, {message: 'Missing Authentication Token'})
    if (req.method === 'GET') {
      if (failing > 0) {
        failing--
        return json(200, {Error: {Code: 'AWS.SimpleQueueService.NonExistentQueue', Message: 'The specified queue does not exist.', Type: 'Sender'}, RequestId: requestId()})
      }
      const max = Math.min(10, Number(url.searchParams.get('MaxNumberOfMessages') ?? url.searchParams.get('maxMessages') ?? 10) || 1)
      const now = Date.now()
      const ready = self.messages.filter((m) => m.visibleAt <= now).slice(0, max)
      for (const m of ready) {
        m.receiveCount++
        m.receipt = `AQEB${randomUUID().replace(/-/g, '')}${m.receiveCount}==`
        m.visibleAt = now + visibilitySeconds * 1000
      }
      return json(200, {
        ReceiveMessageResponse: {
          ReceiveMessageResult: {
            messages:
              ready.length === 0
                ? null
                : ready.map((m) => ({
                    Attributes: null,
                    Body: m.body,
                    MD5OfBody: createHash('md5').update(m.body).digest('hex'),
                    MD5OfMessageAttributes: null,
                    MessageAttributes: null,
                    MessageId: m.id,
                    ReceiptHandle: m.receipt,
                  })),
          },
          ResponseMetadata: {RequestId: requestId()},
        },
      })
    }
    if (req.method === 'DELETE') {
      const receipt = url.searchParams.get('receiptHandle')
      const index = self.messages.findIndex((m) => m.receipt !== undefined && m.receipt === receipt)
      if (index < 0) {
        return json(200, {Error: {Code: 'ReceiptHandleIsInvalid', Message: `The input receipt handle "${receipt}" is not a valid receipt handle.`, Type: 'Sender'}, RequestId: requestId()})
      }
      self.deleted.push(self.messages[index]!.id)
      self.messages.splice(index, 1)
      return json(200, {DeleteMessageResponse: {ResponseMetadata: {RequestId: requestId()}}})
    }
    return json(403, {message: 'Missing Authentication Token'})
  }
  self.server = await standIn((req, res) => {
    const [status, value] = answer(req)
    res.writeHead(status, {'content-type': 'application/json', 'x-amzn-requestid': requestId()}).end(JSON.stringify(value))
  })
  self.apiUrl = `${self.server.url}/prod`
  return self
}
