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
  /** Operations answered 400 ThrottlingException, each for this many calls (Infinity: every call). */
  throttle?: Partial<Record<Operation, number>>
}

export class FakeCodePipeline {
  readonly jobs = new Map<string, FakeJob>()
  /** Every call, answered or not, with its status and when it arrived (epoch ms). */
  readonly calls: Array<{op: string; input: Record<string, unknown>; answered: number; at: number}> = []
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
    const at = Date.now()
    const send = (status: number, value: unknown) => {
      this.calls.push({op, input, answered: status, at})
      res.statusCode = status
      res.setHeader('content-type', 'application/x-amz-json-1.1')
      res.end(JSON.stringify(value))
    }
    const throttled = this.faults.throttle?.[op as Operation] ?? 0
    if (throttled > 0) {
      this.faults.throttle = {...this.faults.throttle, [op]: throttled - 1}
      send(400, {__type: 'ThrottlingException', message: 'Rate exceeded'})
      return
    }
    // A fixed share of calls fails: call n fails when its running share falls below the rate.
    this.sequence++
    if (this.faults.failRate && this.failed < Math.round(this.sequence * this.faults.failRate)) {
      this.failed++
      send(500, {__type: 'InternalServiceError', message: 'flaky'})
      return
    }
    switch (op) {
      case 'PollForJobs':
        send(200, {jobs: this.poll(input)})
        return
      case 'AcknowledgeJob': {
        const job = this.jobs.get(String(input.jobId))
        if (!job) {
          send(400, {__type: 'JobNotFoundException', message: 'no such job'})
          return
        }
        if (input.nonce !== job.nonce) {
          send(400, {__type: 'InvalidNonceException', message: 'nonce mismatch'})
          return
        }
        job.acks++
        if (job.state === 'Dispatched') job.state = 'InProgress'
        send(200, {status: job.state})
        return
      }
      case 'PutJobSuccessResult':
      case 'PutJobFailureResult': {
        const job = this.jobs.get(String(input.jobId))
        if (job?.state !== 'InProgress') {
          send(400, {__type: 'InvalidJobStateException', message: `job is ${job?.state ?? 'unknown'}`})
          return
        }
        job.results.push({op, input})
        const token = input.continuationToken
        if (op === 'PutJobFailureResult') job.state = 'Failed'
        else if (typeof token === 'string') {
          job.state = 'Continued'
          this.add(`${job.id.replace(/~\d+$/, '')}~${this.jobs.size}`, {...job.data, continuationToken: token})
        } else job.state = 'Succeeded'
        send(200, {})
        return
      }
      default:
        send(400, {__type: 'UnknownOperationException', message: op})
        return
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
