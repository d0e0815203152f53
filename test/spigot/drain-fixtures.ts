// Shared by the drain/status/maintenance tests and e2e: real GitHub payloads as spigot queue messages.
import examples from '@octokit/webhooks-examples'
import {createHmac, randomUUID} from 'node:crypto'

import type {Queue} from '../../src/core/queue/types.js'
import {type SpigotMessage, encodeMessage, groupOf} from '../../src/core/webhook-message.js'

export const SECRET = 'It\'s a Secret to Everybody'

export function payload(event: 'push' | 'pull_request' | 'issue_comment', index = 0): Record<string, unknown> {
  const entry = (examples as unknown as Array<{name: string; examples: Array<Record<string, unknown>>}>).find((e) => e.name === event)!
  return structuredClone(entry.examples[index % entry.examples.length]!)
}

export function sign(raw: Buffer, secret = SECRET): string {
  return 'sha256=' + createHmac('sha256', secret).update(raw).digest('hex')
}

export interface Webhook {
  message: SpigotMessage
  raw: Buffer
  delivery: string
}

/**
 * A webhook as `spigot serve` queues it: raw bytes (deliberately not what JSON.stringify would
 * produce — indentation, key order and a non-ASCII name), the kept headers and the signature.
 */
export function webhook(event: 'push' | 'pull_request' | 'issue_comment', options: {index?: number; repo?: string; body?: Record<string, unknown>; target?: string} = {}): Webhook {
  const body = options.body ?? payload(event, options.index)
  if (options.repo) {
    const [owner, name] = options.repo.split('/')
    body.repository = {...(body.repository as object), full_name: options.repo, name, owner: {login: owner}}
  }
  body.sender = {...(body.sender as object), name: 'Zoë Ünïcode'}
  const raw = Buffer.from(JSON.stringify(body, null, 1) + '\n')
  const delivery = randomUUID()
  const message: SpigotMessage = {
    spigot_state: 'OFF',
    from_queue: 'false',
    body,
    headers: {
      'X-GitHub-Event': event,
      'X-GitHub-Delivery': delivery,
      'X-GitHub-Hook-ID': '1234',
      'X-Hub-Signature-256': sign(raw),
      'Content-Type': 'application/json',
      'User-Agent': 'GitHub-Hookshot/abc123',
    },
    raw_body: raw.toString('base64'),
    received_at: new Date().toISOString(),
    ...(options.target ? {target: options.target} : {}),
  }
  return {message, raw, delivery}
}

/** What the original process_webhooks Lambda queued: the mapping-template event, body parsed, no raw bytes. */
export function lambdaMessage(event: 'push' | 'pull_request', index = 0): {message: SpigotMessage; delivery: string} {
  const delivery = randomUUID()
  return {
    delivery,
    message: {
      spigot_state: 'OFF',
      from_queue: 'false',
      body: payload(event, index),
      headers: {
        Accept: '*/*',
        'content-type': 'application/json',
        'User-Agent': 'GitHub-Hookshot/abc123',
        'X-GitHub-Event': event,
        'X-GitHub-Delivery': delivery,
        'X-Forwarded-For': '192.30.252.1',
        Host: 'abc.execute-api.us-east-1.amazonaws.com',
      },
    },
  }
}

export async function enqueue(queue: Queue, messages: SpigotMessage[]): Promise<void> {
  for (const message of messages) {
    await queue.send({
      body: encodeMessage(message),
      ...(queue.capabilities.fifo ? {groupId: groupOf(message), deduplicationId: message.headers['X-GitHub-Delivery']} : {}),
    })
  }
}

/** Seeded PRNG (mulberry32) so "random" failures are reproducible. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
