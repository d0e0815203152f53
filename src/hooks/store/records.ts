/**
 * Stored JSON in and out, for both stores: tasks and executions are parsed with the model's zod
 * schemas (the Redis layout is shared with CDS and may hold records cistern did not write), and a
 * record that does not parse is a StoreDataError naming where it is.
 */
import {StoreDataError} from '../errors.js'
import {type Execution, type Task, describeIssue, executionSchema, taskSchema} from '../model.js'

function parseJson(json: string, where: string): unknown {
  try {
    return JSON.parse(json) as unknown
  } catch (error) {
    throw new StoreDataError(where, error instanceof Error ? error.message : 'not JSON')
  }
}

export function parseTask(json: string, where: string): Task {
  const parsed = taskSchema.safeParse(parseJson(json, where))
  if (!parsed.success) throw new StoreDataError(where, describeIssue(parsed.error))
  return parsed.data
}

export function parseExecution(json: string, where: string): Execution {
  const parsed = executionSchema.safeParse(parseJson(json, where))
  if (!parsed.success) throw new StoreDataError(where, describeIssue(parsed.error))
  return parsed.data
}

/**
 * An execution as stored: without its claim token (and the claim's previous owner), `status` first (the Redis scripts rewrite it
 * in place without decoding: cjson would round 16-digit µs timestamps).
 */
export function serialiseExecution(execution: Execution): string {
  const {status, claim: _claim, previous_owner: _previous, ...rest} = execution
  return JSON.stringify({status, ...rest})
}
