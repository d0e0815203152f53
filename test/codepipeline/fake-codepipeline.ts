// A loopback stand-in for CodePipeline's job-worker API (JSON protocol, x-amz-target), with the job
// states the real one keeps: a queued job is dispatched to one poll, acknowledged with its nonce
// (InProgress), and ends with one result; a result carrying a continuation token queues the job
// again under a new id with that token, as CodePipeline offers it again. Faults on demand: a share
// of calls answered 500 before anything is applied, throttling per operation.
import type {ServerResponse} from 'node:http'

import {type RecordedRequest, type StandIn, standIn} from '../helpers/http.js'

export type Operation = 'PollForJobs' | 'AcknowledgeJob' | 'PutJobSuccessResult' | 'PutJobFailureResult'

export interface FakeJob {
  id: string
  nonce: string
  state: 'Queued' | 'Dispatched' | 'InProgress' | 'Succeeded' | 'Failed' | 'Continued'
  data: Record<string, unknown>
  acks: number
  results: Array<{op: Operation; input: Record<string, unknown>}>
}

export interface Faults {
  /** Share of calls (0–1) answered 500 InternalServiceError before anything is applied; a fixed sequence, not random. */
  failRate?: number
  /** Operations answered 400 ThrottlingException. */
  throttle?: Set<Operation>
}

export class FakeCodePipeline {
  readonly jobs = new Map<string, FakeJob>()
  readonly calls: Array<{op: string; input: Record<string, unknown>; answered: number}> = []
  faults: Faults = {}
  private server?: StandIn
  private sequence = 0
  private failed = 0

  async start(): Promise<string> {
    this.server = await standIn((req, res) => {
      this.answer(req, res)
    })
    return this.server.url
  }

  async close(): Promise<void> {
    await this.server?.close()
  }

  /** Queues a job for an action type (data as PollForJobs returns it: actionTypeId, actionConfiguration, artifacts, credentials). */
  add(id: string, data: Record<string, unknown>): FakeJob {
    const job: FakeJob = {id, nonce: `nonce-${id}`, state: 'Queued', data, acks: 0, results: []}
    this.jobs.set(id, job)
    return job
  }

  count(op: Operation): number {
    return this.calls.filter((call) => call.op === op).length
  }

  private answer(req: RecordedRequest, res: ServerResponse): void {
    const op = String(req.headers['x-amz-target'] ?? '').replace('CodePipeline_20150709.', '')
    const input = JSON.parse(req.body.toString() || '{}') as Record<string, unknown>
    const send = (status: number, value: unknown) => {
      this.calls.push({op, input, answered: status})
      res.statusCode = status
      res.setHeader('content-type', 'application/x-amz-json-1.1')
      res.end(JSON.stringify(value))
    }
    if (this.faults.throttle?.has(op as Operation)) return send(400, {__type: 'ThrottlingException', message: 'Rate exceeded'})
    // A fixed share of calls fails: call n fails when its running share falls below the rate.
    this.sequence++
    if (this.faults.failRate && this.failed < Math.round(this.sequence * this.faults.failRate)) {
      this.failed++
      return send(500, {__type: 'InternalServiceError', message: 'flaky'})
    }
    switch (op) {
      case 'PollForJobs':
        return send(200, {jobs: this.poll(input)})
      case 'AcknowledgeJob': {
        const job = this.jobs.get(String(input.jobId))
        if (!job) return send(400, {__type: 'JobNotFoundException', message: 'no such job'})
        if (input.nonce !== job.nonce) return send(400, {__type: 'InvalidNonceException', message: 'nonce mismatch'})
        job.acks++
        if (job.state === 'Dispatched') job.state = 'InProgress'
        return send(200, {status: job.state})
      }
      case 'PutJobSuccessResult':
      case 'PutJobFailureResult': {
        const job = this.jobs.get(String(input.jobId))
        if (job?.state !== 'InProgress') return send(400, {__type: 'InvalidJobStateException', message: `job is ${job?.state ?? 'unknown'}`})
        job.results.push({op, input})
        const token = input.continuationToken
        if (op === 'PutJobFailureResult') job.state = 'Failed'
        else if (typeof token === 'string') {
          job.state = 'Continued'
          this.add(`${job.id.replace(/~\d+$/, '')}~${this.jobs.size}`, {...job.data, continuationToken: token})
        } else job.state = 'Succeeded'
        return send(200, {})
      }
      default:
        return send(400, {__type: 'UnknownOperationException', message: op})
    }
  }

  private poll(input: Record<string, unknown>): unknown[] {
    const type = typeKey(input.actionTypeId)
    const max = Number(input.maxBatchSize ?? 1)
    const out: unknown[] = []
    for (const job of this.jobs.values()) {
      if (out.length >= max) break
      if (job.state !== 'Queued' || typeKey(job.data.actionTypeId) !== type) continue
      job.state = 'Dispatched'
      out.push({id: job.id, nonce: job.nonce, accountId: '111122223333', data: job.data})
    }
    return out
  }
}

function typeKey(value: unknown): string {
  const type = (value ?? {}) as Record<string, unknown>
  return ['category', 'owner', 'provider', 'version'].map((key) => String(type[key])).join('/')
}

/** The job data of a custom action job (PollForJobs' `data`), with fake artifact credentials. */
export function jobData(actionTypeId: Record<string, string>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    actionTypeId,
    actionConfiguration: {configuration: {}},
    pipelineContext: {pipelineName: 'fault-pipeline', stage: {name: 'Build'}, action: {name: 'Run'}},
    inputArtifacts: [],
    outputArtifacts: [],
    artifactCredentials: {accessKeyId: 'ASIAFAULTKEY0001', secretAccessKey: 'fault/secret+key0002', sessionToken: 'FAULT-SESSION-0003'},
    ...extra,
  }
}
