import {randomUUID} from 'node:crypto'

import {ScheduleError, TaskInputError} from './errors.js'
import {secretPlainHeaders} from './headers.js'
import {type Task, describeIssue, taskInputSchema} from './model.js'
import {validateSchedule} from './scheduler.js'

export {describeIssue} from './model.js'

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Validate a task document (POST /task, PUT /task/{uuid}, the client's --file) and build the task.
 * `existing` keeps the uuid, the creation date and (unless given) the stopped flag.
 */
export function buildTask(input: unknown, now: number, existing?: Task): Task {
  if (!isObject(input)) throw new TaskInputError('expected a JSON object describing the task')
  const parsed = taskInputSchema.safeParse(existing ? {...input, uuid: input.uuid ?? existing.uuid} : input)
  if (!parsed.success) throw new TaskInputError(describeIssue(parsed.error))
  const value = parsed.data
  if (existing && value.uuid !== existing.uuid) throw new TaskInputError(`uuid: the task is ${existing.uuid}, the document says ${value.uuid ?? 'none'}`)
  if (existing && value.type !== existing.type) throw new TaskInputError(`type: a ${existing.type} task cannot become a ${value.type} task; create a new one`)
  const action = value.config.action
  const secret = action.type === 'http' ? secretPlainHeaders(action).at(0) : undefined
  if (secret) {
    throw new TaskInputError(
      `config.action.headers.${secret}: a secret header's value is not stored in the task; give header_from_env: {${secret}: VARIABLE} (the service's environment) or header_from_file: {${secret}: /path}`,
    )
  }
  if (value.type === 'scheduler') {
    try {
      validateSchedule(value.config.cron, value.config.timezone)
    } catch (error) {
      if (error instanceof ScheduleError) throw new TaskInputError(`config: ${error.message}`)
      throw error
    }
  }
  const base = {
    uuid: value.uuid ?? existing?.uuid ?? randomUUID(),
    ...(value.name === undefined ? {} : {name: value.name}),
    stopped: value.stopped ?? existing?.stopped ?? false,
    created_at: existing?.created_at ?? now,
    updated_at: now,
  }
  return value.type === 'webhook' ? {...base, type: 'webhook', config: value.config} : {...base, type: 'scheduler', config: value.config}
}

export const TASK_SORT_KEYS = ['created', 'name', 'type', 'uuid', 'updated'] as const
export type TaskSortKey = (typeof TASK_SORT_KEYS)[number]

function isSortKey(key: string): key is TaskSortKey {
  return (TASK_SORT_KEYS as readonly string[]).includes(key)
}

/** Sort tasks by `key` or `-key` (descending); creation order by default. */
export function sortTasks<T extends Task>(tasks: T[], sort = 'created'): T[] {
  const descending = sort.startsWith('-')
  const key = descending ? sort.slice(1) : sort
  if (!isSortKey(key)) throw new TaskInputError(`sort: expected one of ${TASK_SORT_KEYS.join(', ')} (prefix - for descending)`)
  const value = (task: Task): string | number =>
    key === 'created' ? task.created_at : key === 'updated' ? task.updated_at : key === 'name' ? (task.name ?? '') : task[key]
  // Array.sort is stable: equal keys keep the store's creation order.
  const sorted = [...tasks].sort((a, b) => {
    const x = value(a)
    const y = value(b)
    return x < y ? -1 : x > y ? 1 : 0
  })
  return descending ? sorted.reverse() : sorted
}
