import type {PutJobFailureResultInput, PutJobSuccessResultInput} from '@aws-sdk/client-codepipeline'

import {errorMessage} from '../core/errors.js'
import {maskSecrets} from '../core/secrets.js'
import {type HandlerOutcome, HandlerContractError, JobFailure, nonEmpty} from './job.js'

/**
 * What is sent to CodePipeline for an outcome: every text masked (the secrets cistern knows and the
 * job's own), CodePipeline's field limits enforced.
 */

/** CodePipeline's field limits: longer values are truncated, never rejected. */
export const LIMITS = {continuationToken: 2048, summary: 2048, externalExecutionId: 1500, message: 5000} as const

export type ResultRequest = {kind: 'success'; input: PutJobSuccessResultInput} | {kind: 'failure'; input: PutJobFailureResultInput}

export function truncate(value: string, limit: number): string
export function truncate(value: string | undefined, limit: number): string | undefined
export function truncate(value: string | undefined, limit: number): string | undefined {
  if (value === undefined) return undefined
  if (value.length <= limit) return value
  const marker = '…'
  return value.slice(0, limit - marker.length) + marker
}

export function clampPercent(value: number | undefined): number | undefined {
  if (value === undefined || Number.isNaN(value)) return undefined
  return Math.round(Math.min(100, Math.max(0, value)))
}

/** A continuation token must round-trip exactly: one too long is a handler bug, reported as a failure. */
function checkToken(token: string): string {
  if (!token) throw new HandlerContractError('handler returned an empty continuation token')
  if (token.length > LIMITS.continuationToken) {
    throw new HandlerContractError(`continuation token is ${token.length} characters (limit ${LIMITS.continuationToken})`)
  }
  return token
}

/** A text for CodePipeline: masked, then cut to its limit (masking first, so no secret is cut in half and left visible). */
function text(value: string | undefined, limit: number, secrets: readonly string[]): string | undefined {
  return value === undefined ? undefined : truncate(maskSecrets(value, secrets), limit)
}

function maskValues(values: Record<string, string>, secrets: readonly string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([key, value]) => [key, maskSecrets(value, secrets)]))
}

/**
 * The PutJobSuccessResult / PutJobFailureResult input for an outcome, limits enforced, every text
 * masked. The continuation token is sent as the handler made it: it must round-trip exactly.
 */
export function resultRequest(jobId: string, outcome: HandlerOutcome, secrets: readonly string[] = []): ResultRequest {
  if (outcome.status === 'failed') {
    const details = {
      type: outcome.type ?? 'JobFailed',
      message: nonEmpty(text(outcome.message, LIMITS.message, secrets)) ?? 'failed',
      ...(outcome.externalExecutionId ? {externalExecutionId: text(outcome.externalExecutionId, LIMITS.externalExecutionId, secrets)} : {}),
    }
    return {kind: 'failure', input: {jobId, failureDetails: details}}
  }
  const executionDetails = {
    ...(outcome.summary !== undefined ? {summary: text(outcome.summary, LIMITS.summary, secrets)} : {}),
    ...(outcome.externalExecutionId ? {externalExecutionId: text(outcome.externalExecutionId, LIMITS.externalExecutionId, secrets)} : {}),
    ...(outcome.percentComplete !== undefined ? {percentComplete: clampPercent(outcome.percentComplete)} : {}),
  }
  const input: PutJobSuccessResultInput = {jobId}
  if (Object.keys(executionDetails).length > 0) input.executionDetails = executionDetails
  if (outcome.status === 'inProgress') {
    input.continuationToken = checkToken(outcome.continuationToken)
    return {kind: 'success', input}
  }
  if (outcome.currentRevision) {
    const {revisionSummary, ...revision} = outcome.currentRevision
    input.currentRevision = {...revision, ...(revisionSummary === undefined ? {} : {revisionSummary: maskSecrets(revisionSummary, secrets)})}
  }
  if (outcome.outputVariables && Object.keys(outcome.outputVariables).length > 0) input.outputVariables = maskValues(outcome.outputVariables, secrets)
  return {kind: 'success', input}
}

/** Any exception from a handler becomes a failure outcome: no job is left to time out. */
export function failureFromError(error: unknown, secrets: readonly string[] = []): HandlerOutcome {
  if (error instanceof JobFailure) {
    return {status: 'failed', type: error.type, message: maskSecrets(error.message, secrets), externalExecutionId: error.externalExecutionId}
  }
  return {status: 'failed', type: 'JobFailed', message: maskSecrets(errorMessage(error), secrets) || 'handler failed'}
}
