import type {QueueMessage} from './types.js'

/** An SQS message as ReceiveMessage returns it, or as the API Gateway facade passes it through. */
export interface SqsMessageShape {
  Body?: string
  ReceiptHandle?: string
  MessageId?: string
  Attributes?: Record<string, string | undefined>
  /** The facade's JSON may spell the value `stringValue`. */
  MessageAttributes?: Record<string, {StringValue?: string; stringValue?: string} | undefined>
}

/** SQS's message → cistern's QueueMessage (string attributes only). Shared by the SQS and facade backends. */
export function fromSqsMessage(message: SqsMessageShape): QueueMessage {
  const system = message.Attributes ?? {}
  const attributes: Record<string, string> = {}
  for (const [key, value] of Object.entries(message.MessageAttributes ?? {})) {
    const text = value?.StringValue ?? value?.stringValue
    if (text !== undefined) attributes[key] = text
  }
  const out: QueueMessage = {
    id: message.MessageId ?? '',
    body: message.Body ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    receiveCount: Number(system.ApproximateReceiveCount ?? 1),
    attributes,
  }
  if (system.SentTimestamp) out.sentAt = new Date(Number(system.SentTimestamp))
  if (system.MessageGroupId) out.groupId = system.MessageGroupId
  if (system.MessageDeduplicationId) out.deduplicationId = system.MessageDeduplicationId
  return out
}
