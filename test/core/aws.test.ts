import {describe, expect, it} from 'vitest'

import {awsEndpointFromEnv, awsError, classifyAwsError, isTransientAwsError} from '../../src/core/aws.js'
import {CisternError, ExitCode, TargetUnhealthyError, UsageError} from '../../src/core/errors.js'

/** An error shaped as the AWS SDK v3 throws it. */
const sdkError = (name: string, message = name, status = 400, fault: 'client' | 'server' = 'client') =>
  Object.assign(new Error(message), {name, $fault: fault, $metadata: {httpStatusCode: status}})
/** What node's http stack throws when nothing answers (the SDK passes it through). */
const netError = (code: string, message: string) => Object.assign(new Error(message), {code})

const call = {service: 'SQS', action: 'ReceiveMessage', resource: 'https://sqs.eu-west-1.amazonaws.com/1/jobs', endpoint: 'https://sqs.eu-west-1.amazonaws.com'}

describe('AWS error mapping (one table for SQS, CodePipeline, S3)', () => {
  it.each([
    [Object.assign(new Error('Could not load credentials from any providers'), {name: 'CredentialsProviderError'}), 'credentials'],
    [sdkError('InvalidClientTokenId', 'The security token included in the request is invalid.', 403), 'credentials'],
    [sdkError('ExpiredToken'), 'credentials'],
    [new Error('Region is missing'), 'region'],
    [sdkError('QueueDoesNotExist', 'The specified queue does not exist.'), 'not-found'],
    [sdkError('AWS.SimpleQueueService.NonExistentQueue'), 'not-found'],
    [sdkError('ActionTypeNotFoundException'), 'not-found'],
    [sdkError('AccessDenied', 'User: x is not authorized to perform: sqs:ReceiveMessage', 403), 'access-denied'],
    [sdkError('AccessDeniedException', 'denied', 400), 'access-denied'],
    [netError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:4566'), 'unreachable'],
    [netError('ENOTFOUND', 'getaddrinfo ENOTFOUND sqs.nowhere.invalid'), 'unreachable'],
    [netError('ECONNRESET', 'socket hang up'), 'unreachable'],
    [Object.assign(new Error('Socket timed out without establishing a connection within 5000 ms'), {name: 'TimeoutError'}), 'unreachable'],
    [Object.assign(new Error('wrapped'), {cause: netError('EAI_AGAIN', 'getaddrinfo EAI_AGAIN x')}), 'unreachable'],
    [sdkError('ThrottlingException', 'Rate exceeded'), 'throttled'],
    [sdkError('RequestThrottled'), 'throttled'],
    [sdkError('InternalError', 'We encountered an internal error', 500, 'server'), 'server'],
    [sdkError('Unknown', 'UnknownError', 503, 'server'), 'server'],
    [sdkError('InvalidParameterValue', 'Value 99 for parameter MaxNumberOfMessages is invalid'), 'other'],
  ])('%s is %s', (error, kind) => {
    expect(classifyAwsError(error)).toBe(kind)
  })

  it('only what AWS or the network causes is transient', () => {
    expect(isTransientAwsError(netError('ECONNREFUSED', 'x'))).toBe(true)
    expect(isTransientAwsError(sdkError('ThrottlingException'))).toBe(true)
    expect(isTransientAwsError(sdkError('InternalError', 'x', 500, 'server'))).toBe(true)
    expect(isTransientAwsError(sdkError('AccessDenied', 'x', 403))).toBe(false)
    expect(isTransientAwsError(sdkError('InvalidParameterValue'))).toBe(false)
  })

  it('an unreachable endpoint is exit 3, naming the endpoint and the fix', () => {
    const error = awsError(netError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:4566'), {...call, endpoint: 'http://127.0.0.1:4566'})
    expect(error).toBeInstanceOf(TargetUnhealthyError)
    expect(error.exitCode).toBe(ExitCode.unhealthy)
    expect(error.oneLine).toBe(
      'cannot reach SQS at http://127.0.0.1:4566 for ReceiveMessage (ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:4566) — check AWS_ENDPOINT_URL/AWS_ENDPOINT_URL_SQS, the region and the network',
    )
    const timeout = awsError(Object.assign(new Error('no answer'), {name: 'TimeoutError'}), {service: 'CodePipeline', action: 'PollForJobs'})
    expect(timeout.oneLine).toMatch(/^cannot reach CodePipeline at the CodePipeline endpoint for PollForJobs \(timed out: no answer\) — check AWS_ENDPOINT_URL, /)
  })

  it('a missing region says AWS_REGION first and --region only as the command\'s (sqs-listen has none)', () => {
    const error = awsError(new Error('Region is missing'), call)
    expect(error).toBeInstanceOf(UsageError)
    expect(error.oneLine).toMatch(/— set AWS_REGION \(or the command's --region\), or use the full https:\/\/sqs\.<region>\.amazonaws\.com\/… queue URL$/)
    expect(awsError(new Error('Region is missing'), {service: 'CodePipeline', action: 'PollForJobs'}).oneLine).toMatch(/— set AWS_REGION \(or the command's --region\)$/)
  })

  it('credentials, missing resources and refusals: one line each with the fix and the documented exit code', () => {
    const missing = awsError(Object.assign(new Error('Could not load credentials from any providers'), {name: 'CredentialsProviderError'}), call)
    expect(missing).toBeInstanceOf(UsageError)
    expect(missing.oneLine).toMatch(/^no AWS credentials for SQS ReceiveMessage on .* — set AWS_PROFILE/)
    const rejected = awsError(sdkError('SignatureDoesNotMatch', 'bad signature', 403), call)
    expect(rejected.oneLine).toMatch(/^AWS rejected the credentials for SQS ReceiveMessage .*\(SignatureDoesNotMatch\) — refresh or fix the credentials/)
    const absent = awsError(sdkError('QueueDoesNotExist'), {...call, resource: 'sqs://jobs'})
    expect(absent.exitCode).toBe(ExitCode.usage)
    expect(absent.oneLine).toMatch(/^SQS sqs:\/\/jobs does not exist — check the name, the account and the region/)
    const denied = awsError(sdkError('AccessDenied', 'not authorized to perform: sqs:ReceiveMessage', 403), call)
    expect(denied.exitCode).toBe(ExitCode.failure)
    expect(denied.oneLine).toMatch(/— grant sqs:ReceiveMessage to these credentials$/)
    const throttled = awsError(sdkError('ThrottlingException'), call)
    expect(throttled).toBeInstanceOf(TargetUnhealthyError)
    const bad = awsError(sdkError('InvalidParameterValue', 'MaxNumberOfMessages is invalid'), call)
    expect(bad.constructor).toBe(CisternError)
    expect(bad.oneLine).toBe('SQS ReceiveMessage on https://sqs.eu-west-1.amazonaws.com/1/jobs failed: InvalidParameterValue: MaxNumberOfMessages is invalid')
  })

  it('keeps a CisternError as it is', () => {
    const mine = new UsageError('already one line')
    expect(awsError(mine, call)).toBe(mine)
  })

  it('finds the endpoint in AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL; empty is unset', () => {
    expect(awsEndpointFromEnv('SQS', {AWS_ENDPOINT_URL_SQS: 'http://a', AWS_ENDPOINT_URL: 'http://b'})).toBe('http://a')
    expect(awsEndpointFromEnv('sqs', {AWS_ENDPOINT_URL_SQS: '', AWS_ENDPOINT_URL: 'http://b'})).toBe('http://b')
    expect(awsEndpointFromEnv('S3', {AWS_ENDPOINT_URL: ''})).toBeUndefined()
  })
})
