import type {Clock} from '../scheduler.js'
import type {HooksStore} from '../store/types.js'
import type {Execution, Task} from '../model.js'
import type {ServiceStatus} from '../status.js'

/** What the routes need from the service. */
export interface RouteDeps {
  store: HooksStore
  /** The API token; undefined = the task API answers 401 to everything. */
  token?: string
  clock: Clock
  /** How long an intake waits for the store before answering 503 (ms). */
  intakeTimeoutMs: number
  /** How long /mon/status waits for the store before answering 503 (ms). */
  statusTimeoutMs: number
  maintenance(): boolean
  setMaintenance(enabled: boolean): Promise<void>
  /** A webhook execution was stored. */
  onWebhook(execution: Execution): void
  /** A task was created, replaced, started or stopped. */
  onTaskChanged(task: Task): Promise<void>
  /** Abort an execution running on this instance. */
  abortLocal(ref: string): void
  /** GET /mon/status: what this instance knows without the store, and the store's part (bounded by statusTimeoutMs). */
  status(): Promise<ServiceStatus>
}
