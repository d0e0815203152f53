/**
 * The queue contract every backend meets (embedded SQLite, AWS SQS, the API Gateway facade).
 * Semantics follow SQS: a received message is hidden for its visibility timeout under a receipt
 * handle that is fresh per receive; it comes back when the timeout lapses unless deleted.
 */

export interface QueueMessage {
  /** Stable id of the message (SQS MessageId). */
  id: string
  /** The body, byte-for-byte as sent (UTF-8 text, as SQS carries it). */
  body: string
  /** Fresh per receive: delete/changeVisibility with an older one fails. */
  receiptHandle: string
  /** 1 on the first receive. Every receive counts, released or not (SQS's ApproximateReceiveCount). */
  receiveCount: number
  /**
   * Attempts that counted, this one included: receives minus releases (`release()` hands a message
   * back as never attempted). Absent where the backend cannot tell them apart (SQS, the facade):
   * read it as `receiveCount` there. See docs/delivery.md.
   */
  attempts?: number
  /** When the message was first sent (if the backend knows). */
  sentAt?: Date
  /** FIFO message group (the spigot uses the repository's full name). */
  groupId?: string
  deduplicationId?: string
  /** String message attributes. */
  attributes: Record<string, string>
}

export interface SendInput {
  body: string
  /** Hide the message for this many seconds after sending (0–900). */
  delaySeconds?: number
  /** FIFO group: messages of one group are delivered in order, one in flight at a time. */
  groupId?: string
  /**
   * Deduplication: a send whose id matches a message still in the queue (visible, delayed or in
   * flight) is not stored again and returns that message's id (`duplicate: true`). On SQS FIFO
   * this is SQS's own 5-minute window; SQS standard queues cannot dedup.
   */
  deduplicationId?: string
  attributes?: Record<string, string>
}

export interface SendResult {
  id: string
  duplicate?: boolean
}

export interface ReceiveOptions {
  /** 1–10, default 10. */
  maxMessages?: number
  /** Long poll: wait up to this many seconds (0–20) for a first message. Default 0. */
  waitSeconds?: number
  /** Seconds the received messages stay hidden; default the queue's (30). */
  visibilityTimeout?: number
  /** Abort a long poll early (shutdown). */
  signal?: AbortSignal
  /**
   * Called for each message the backend moves to its dead letters during this receive instead of
   * delivering it (its attempts reached the limit without a settled outcome: the worker was killed
   * while handling it). Dead letters are loud: the consumer logs and counts these. Without it the
   * embedded queue writes a warn line itself (the opener's logger, else stderr).
   */
  onDead?: (message: QueueMessage, reason: string) => void
}

export interface QueueStats {
  visible: number
  inFlight: number
  delayed: number
  /** Messages in the dead-letter queue (or dead state); -1 when the backend cannot tell. */
  dead: number
  /** Age of the oldest live message, in seconds (monitoring), where the backend can tell. */
  oldestAgeSeconds?: number
  /** When the next in-flight or delayed message becomes visible (a lease lapses, a delay ends), where the backend can tell. */
  nextVisibleAt?: Date
}

export interface QueueCapabilities {
  /** The facade can only receive and delete. */
  send: boolean
  /**
   * A message sent without a group joins the queue's default group (SQS FIFO; an embedded queue
   * opened or created with fifo=true or a .fifo name).
   */
  fifo: boolean
  /**
   * Message groups are honoured: a group is delivered in order, one message in flight at a time.
   * Every embedded queue, and SQS FIFO queues. Absent: no.
   */
  groups?: boolean
  /** Largest body the backend accepts, in bytes (SQS: 262,144 by default, 1 MiB max). */
  maxBodyBytes: number
  /** deadLetter() moves the message to its dead letters now (every backend; SQS needs a dead-letter queue). */
  deadLetter: boolean
  /** peek() shows messages without receiving them. */
  peek: boolean
}

/** One entry of a batch that could not be done after retries; the rest of the batch succeeded. */
export interface BatchFailure {
  index: number
  code: string
  message: string
}

export interface Queue {
  /** The URL it was opened with (secrets removed). */
  readonly url: string
  readonly kind: 'sqlite' | 'sqs' | 'apigw'
  readonly capabilities: QueueCapabilities

  send(message: SendInput): Promise<SendResult>
  /** Up to 10 per call (more is split by the backend); throws QueueBatchError listing entries that failed. */
  sendBatch(messages: SendInput[]): Promise<SendResult[]>
  receive(options?: ReceiveOptions): Promise<QueueMessage[]>
  /** A stale or unknown receipt handle is an error (StaleReceiptError), never a silent delete. */
  delete(receiptHandle: string): Promise<void>
  /** Up to 10 per request; throws QueueBatchError listing handles that could not be deleted. */
  deleteBatch(receiptHandles: string[]): Promise<void>
  /** Hide an in-flight message for `seconds` more from now (heartbeat, retry delay). */
  changeVisibility(receiptHandle: string, seconds: number): Promise<void>
  /**
   * Hand an in-flight message back never attempted (target down, stopping, held back behind its
   * group): visible again after `delaySeconds` (default 0), and the receive does not count as an
   * attempt where the backend can tell (the embedded queue). SQS counts every receive whatever
   * we do, so consumers avoid receiving what they will not attempt.
   */
  release(receiptHandle: string, delaySeconds?: number): Promise<void>
  /**
   * Give up on an in-flight message: move it to the dead letters now, with the reason (embedded:
   * the dead table; SQS: SendMessage to the dead-letter queue, then delete; facade: the embedded
   * dead-letter store, then DELETE). An SQS queue without a dead-letter queue refuses (UsageError)
   * and the message stays. Returns where it went ('redrive-policy' is no longer returned by any
   * backend; the type keeps it for callers written against it).
   */
  deadLetter(message: QueueMessage, reason: string): Promise<'dead-letter-queue' | 'redrive-policy'>
  /**
   * Attempts after which a message that keeps failing should go dead from the worker (with the last
   * failure as its reason): the embedded maxReceiveCount, an SQS RedrivePolicy's maxReceiveCount;
   * undefined when there is no limit or it is not known (the facade). Every cistern backend has it;
   * optional for test doubles.
   */
  maxAttempts?(): Promise<number | undefined>
  /**
   * Whether the group has live messages (visible, in flight or delayed; not dead): one indexed read
   * on the embedded queue. The spigot's intake asks it so that a webhook never overtakes the queued
   * ones of its repository. Absent where the backend cannot tell (SQS, the facade).
   */
  groupHasLiveMessages?(groupId: string): Promise<boolean>
  /** Look at up to `max` waiting messages without receiving them (when capabilities.peek). */
  peek(max?: number): Promise<QueueMessage[]>
  /**
   * Look at up to `max` dead messages, the reason in `attributes['cistern.deadReason']` (the
   * embedded queue, and the facade's embedded dead-letter store). Absent on backends that cannot.
   */
  peekDead?(max?: number): Promise<QueueMessage[]>
  stats(): Promise<QueueStats>
  /** Delete every message (not the dead ones); returns how many, -1 if unknown. */
  purge(): Promise<number>
  /** Move dead-letter messages back to the queue; returns how many, or -1 when a background move was started (SQS move task). */
  redrive(): Promise<number>
  close(): Promise<void>
}

export interface OpenQueueOptions {
  /** Default visibility timeout for receive (seconds). */
  visibilityTimeout?: number
  /** Embedded queue: attempts (receives not released) after which a message is dead (default 5; 0 = never). */
  maxReceiveCount?: number
  /**
   * Embedded queue: messages sent without a group join the default group (true also marks the
   * queue FIFO for every later opener). Groups are honoured on every embedded queue regardless.
   */
  fifo?: boolean
  region?: string
  profile?: string
  /** Facade API key (x-api-key); else API_KEY from the environment. */
  apiKey?: string
  /**
   * Where dead letters go. SQS: a dead-letter queue URL (else the RedrivePolicy's target). The
   * facade: a sqlite: URL for its dead-letter store (default: the data dir's cistern.db).
   */
  deadLetterUrl?: string
  /**
   * Opened by a worker that will dead-letter messages: an SQS queue with neither a RedrivePolicy
   * nor deadLetterUrl is refused now (UsageError, exit 2, with the fix) instead of failing later.
   */
  consumer?: boolean
  /** Opening must not create anything (read-only commands such as stats on a missing queue). */
  mustExist?: boolean
  log?: import('../log.js').Logger
}
