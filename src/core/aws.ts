/**
 * The one mapping from AWS SDK errors to what an operator reads (and the exit code): every piece
 * that calls AWS (the SQS queue, CodePipeline, S3, API Gateway) turns a failed call into a
 * CisternError here, so the same failure reads the same everywhere.
 *
 *   credentials   no credentials, or AWS rejected them            UsageError (2): fix the credentials
 *   region        no region configured                            UsageError (2): set AWS_REGION
 *   not-found     the queue / action type / resource is not there UsageError (2): check the name
 *   access-denied these credentials may not do this               CisternError (1): grant the permission
 *   unreachable   connection refused, DNS, timeout, reset         TargetUnhealthyError (3): check the endpoint
 *   throttled     AWS asked us to slow down                       TargetUnhealthyError (3), transient
 *   server        5xx from AWS                                    TargetUnhealthyError (3), transient
 *   other         anything else AWS answered (a bad request)      CisternError (1)
 */
import {CisternError, TargetUnhealthyError, UsageError, errorMessage} from './errors.js'

export type AwsErrorKind = 'credentials' | 'region' | 'not-found' | 'access-denied' | 'unreachable' | 'throttled' | 'server' | 'other'

export interface AwsCall {
  /** The service as an operator names it: 'SQS', 'CodePipeline', 'S3'. */
  service: string
  /** The API action: 'ReceiveMessage', 'PollForJobs'. */
  action: string
  /** What the call was about (a queue URL, an action type); shown in the line. */
  resource?: string
  /** Where the requests went (the endpoint URL), for the unreachable case. */
  endpoint?: string
}

const CREDENTIALS = new Set([
  'CredentialsProviderError',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
  'InvalidSignatureException',
  'ExpiredToken',
  'ExpiredTokenException',
  'IncompleteSignature',
  'MissingAuthenticationToken',
])
const ACCESS_DENIED = new Set(['AccessDenied', 'AccessDeniedException', 'AuthorizationError', 'KMS.AccessDeniedException'])
const NOT_FOUND = new Set([
  'QueueDoesNotExist',
  'AWS.SimpleQueueService.NonExistentQueue',
  'NonExistentQueue',
  'ResourceNotFoundException',
  'ActionTypeNotFoundException',
  'NoSuchBucket',
])
const THROTTLED = new Set([
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'LimitExceededException',
  'KMS.ThrottlingException',
])
const SERVER = new Set(['InternalError', 'InternalFailure', 'ServiceUnavailable', 'ServiceUnavailableException', 'InternalServerError'])
/** Node's network error codes: the endpoint was not reached, or it went away mid-request. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ECONNABORTED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
])

/** The error's AWS name (`QueueDoesNotExist`), or Node's code (`ECONNREFUSED`), or ''. */
export function awsErrorName(error: unknown): string {
  const e = error as {name?: unknown; Code?: unknown; code?: unknown} | undefined
  const name = typeof e?.name === 'string' && e.name !== 'Error' ? e.name : ''
  const code = typeof e?.Code === 'string' ? e.Code : typeof e?.code === 'string' ? e.code : ''
  return name || code
}

function networkCode(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as {cause?: unknown}).cause, depth++) {
    const code = (e as {code?: unknown}).code
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code
    const name = (e as {name?: unknown}).name
    if (name === 'TimeoutError' || name === 'RequestTimeout' || name === 'RequestTimeoutException') return 'timeout'
  }
  return undefined
}

export function classifyAwsError(error: unknown): AwsErrorKind {
  const name = awsErrorName(error)
  const message = errorMessage(error)
  if (CREDENTIALS.has(name) || /could not load credentials|security token included in the request is (invalid|expired)/i.test(message)) return 'credentials'
  if (/region is missing/i.test(message)) return 'region'
  if (NOT_FOUND.has(name) || /NonExistentQueue|queue does not exist/i.test(message)) return 'not-found'
  if (ACCESS_DENIED.has(name) || /not authorized to perform|access denied/i.test(message)) return 'access-denied'
  if (networkCode(error)) return 'unreachable'
  if (THROTTLED.has(name)) return 'throttled'
  const {$metadata, $fault} = typeof error === 'object' && error !== null ? (error as {$metadata?: {httpStatusCode?: number}; $fault?: string}) : {}
  const status = $metadata?.httpStatusCode
  if (SERVER.has(name) || (status !== undefined && status >= 500) || $fault === 'server') return 'server'
  return 'other'
}

/** Whether trying again later may work (the caller backs off): AWS or the network is unwell, not the request. */
export function isTransientAwsError(error: unknown): boolean {
  const kind = classifyAwsError(error)
  return kind === 'unreachable' || kind === 'throttled' || kind === 'server'
}

/** The endpoint an SDK client for `service` (e.g. 'SQS') sends to, as AWS_ENDPOINT_URL[_SERVICE] says. */
export function awsEndpointFromEnv(service: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const set = (name: string) => (env[name] === '' ? undefined : env[name]) // an empty variable is unset
  return set(`AWS_ENDPOINT_URL_${service.toUpperCase()}`) ?? set('AWS_ENDPOINT_URL')
}

/** Turns a failed AWS call into one operator line with the fix and the right exit code. */
export function awsError(error: unknown, call: AwsCall): CisternError {
  if (error instanceof CisternError) return error
  const name = awsErrorName(error)
  const message = errorMessage(error)
  const on = call.resource ? ` on ${call.resource}` : ''
  const what = `${call.service} ${call.action}${on}`
  // Not every command has --region/--profile (sqs-listen has neither): the environment comes first.
  const profile = "AWS_PROFILE (or the command's --profile)"
  switch (classifyAwsError(error)) {
    case 'credentials':
      return name === 'CredentialsProviderError' || /could not load credentials/i.test(message)
        ? new UsageError(`no AWS credentials for ${what}`, `set ${profile}, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance or task role is available`, error)
        : new UsageError(`AWS rejected the credentials for ${what} (${name || message})`, `refresh or fix the credentials (${profile}, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)`, error)
    case 'region':
      return new UsageError(
        `no AWS region for ${what}`,
        `set AWS_REGION (or the command's --region)${call.service === 'SQS' ? ', or use the full https://sqs.<region>.amazonaws.com/… queue URL' : ''}`,
        error,
      )
    case 'not-found':
      return new UsageError(`${call.service} ${call.resource ?? 'resource'} does not exist`, 'check the name, the account and the region (AWS_REGION)', error)
    case 'access-denied':
      return new CisternError(`AWS refused ${what}: ${message}`, {fix: `grant ${call.service.toLowerCase()}:${call.action} to these credentials`, cause: error})
    case 'unreachable': {
      const endpoint = call.endpoint ?? awsEndpointFromEnv(call.service) ?? `the ${call.service} endpoint`
      const code = networkCode(error)
      return new TargetUnhealthyError(
        `cannot reach ${call.service} at ${endpoint} for ${call.action} (${code === 'timeout' ? 'timed out' : code}: ${message})`,
        `check AWS_ENDPOINT_URL${call.service === 'SQS' ? '/AWS_ENDPOINT_URL_SQS' : ''}, the region and the network`,
        error,
      )
    }
    case 'throttled':
      return new TargetUnhealthyError(`AWS throttled ${what} (${name})`, 'it is retried with back-off; lower the rate or raise the account limit if it lasts', error)
    case 'server':
      return new TargetUnhealthyError(`${call.service} failed ${call.action}${on} (${name || 'server error'}: ${message})`, 'AWS is unwell; try again later', error)
    case 'other':
      return new CisternError(`${what} failed: ${name ? `${name}: ` : ''}${message}`, {cause: error})
  }
}
