import {UsageError} from '../errors.js'
import type {OpenQueueOptions, Queue} from './types.js'

export type * from './types.js'
export {NoDeadLetterQueueError, QueueBatchError, StaleReceiptError} from './errors.js'

/**
 * Open a queue by URL. Backends are imported lazily so that a command using the embedded queue
 * never loads the AWS SDK (start-up time).
 *
 *   sqlite:<path>#<name>[?fifo=true&maxReceiveCount=5&visibilityTimeout=30&synchronous=full|normal]   embedded
 *   https://sqs.<region>.amazonaws.com/<acct>/<name>      AWS SQS (also any https URL with AWS_ENDPOINT_URL set)
 *   sqs://<name>                                          AWS SQS, URL resolved with GetQueueUrl
 *   apigw+https://<api>.execute-api.<region>.amazonaws.com/<stage>/   the status-queue facade
 */
export async function openQueue(url: string, options: OpenQueueOptions = {}): Promise<Queue> {
  const scheme = queueScheme(url)
  switch (scheme) {
    case 'sqlite': {
      const {openSqliteQueue} = await import('./sqlite.js')
      return openSqliteQueue(url, options)
    }
    case 'sqs': {
      const {openSqsQueue} = await import('./sqs.js')
      return openSqsQueue(url, options)
    }
    case 'apigw': {
      const {openFacadeQueue} = await import('./apigw.js')
      return openFacadeQueue(url, options)
    }
  }
}

export function queueScheme(url: string): 'sqlite' | 'sqs' | 'apigw' {
  if (url.startsWith('sqlite:')) return 'sqlite'
  if (url.startsWith('sqs://')) return 'sqs'
  if (url.startsWith('apigw+https://') || url.startsWith('apigw+http://')) return 'apigw'
  if (/^https?:\/\//.test(url)) {
    const host = safeHost(url)
    if (host && (/^sqs[.-]/.test(host) || host.includes('.sqs.') || process.env.AWS_ENDPOINT_URL || process.env.AWS_ENDPOINT_URL_SQS)) {
      return 'sqs'
    }
  }
  throw new UsageError(
    `unknown queue URL "${url}"`,
    'use sqlite:<path>#<name>, https://sqs.<region>.amazonaws.com/<account>/<name>, sqs://<name> or apigw+https://<api>.execute-api.<region>.amazonaws.com/<stage>/',
  )
}

function safeHost(url: string): string | undefined {
  try {
    return new URL(url).hostname
  } catch {
    return undefined
  }
}
