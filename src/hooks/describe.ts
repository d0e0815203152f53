/** Human output of the client commands (--json prints the objects themselves). */
import type {PublicExecution, Task, TaskView} from './model.js'

/** One line for what starts a task. */
export function triggerOf(task: Task): string {
  return task.type === 'webhook' ? `${task.config.method} /webhook/${task.uuid}` : `cron "${task.config.cron}" ${task.config.timezone}`
}

/** One line for what a task does. */
export function actionOf(task: Task): string {
  const action = task.config.action
  if (action.type === 'http') return `http ${action.method ?? ''}${action.method ? ' ' : ''}${action.url}`
  if (action.type === 'queue') return `queue ${action.url}${action.format ? ` (${action.format})` : ''}`
  return `job ${action.name}${action.parameters?.length ? ' ' + action.parameters.join(' ') : ''}`
}

export function describeTask(task: TaskView, server: string): string {
  const lines = [
    `${task.type} task ${task.uuid}${task.name ? ` (${task.name})` : ''}${task.stopped ? ' [stopped]' : ''}`,
    `  trigger:    ${triggerOf(task)}`,
    `  action:     ${actionOf(task)}`,
    `  executions: ${task.nb_executions_total} (${task.nb_executions_todo} to do)`,
  ]
  if (task.type === 'webhook') lines.push(`  intake:     ${server}/webhook/${task.uuid}`)
  return lines.join('\n')
}

export function describeExecution(execution: PublicExecution): string {
  const when = execution.scheduled_date ?? new Date(execution.created_at).toISOString()
  const result = execution.result?.status ?? execution.result?.exit_code ?? execution.result?.message_id ?? ''
  const state = execution.dead ? 'DEAD' : execution.status
  const error = execution.last_error ? `  last error: ${execution.last_error}` : ''
  return `${execution.timestamp}  ${state.padEnd(9)} ${when}  errors=${execution.nb_errors}${result === '' ? '' : `  result=${result}`}${error}`
}

/** A small aligned table for human output. */
export function table(rows: string[][]): string {
  const head = rows.at(0)
  if (!head) return ''
  const widths = head.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)))
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n')
}
