/**
 * The hooks service's errors. Each is a CisternError (one line, an exit code for the client
 * commands) and carries the HTTP status the API answers it with (core/http.ts's error handler
 * reads `statusCode`).
 */
import {CisternError, ExitCode, TargetUnhealthyError, UsageError} from '../core/errors.js'

/** A task document a client can fix: 400 with this message. */
export class TaskInputError extends UsageError {
  readonly statusCode = 400

  constructor(message: string) {
    super(message)
    this.name = 'TaskInputError'
  }
}

/** A cron expression or time zone a client can fix (400 from the API). */
export class ScheduleError extends UsageError {
  readonly statusCode = 400

  constructor(message: string) {
    super(message)
    this.name = 'ScheduleError'
  }
}

/** POST /task with a uuid that exists: 409. */
export class TaskExistsError extends CisternError {
  readonly statusCode = 409

  constructor(readonly uuid: string) {
    super(`task ${uuid} already exists`)
    this.name = 'TaskExistsError'
  }
}

/** An HTTP answer other than 2xx, with a message for the client (404 no such task, 405, 409 stopped…). */
export class ApiError extends CisternError {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

/** The store did not answer in time (Redis down or restarting): 503, the sender retries. */
export class StoreUnavailableError extends TargetUnhealthyError {
  readonly statusCode = 503

  constructor(what: string, cause?: unknown) {
    super(`the hooks store is unreachable: ${what}`, 'check that the store (Redis) is up; cistern reconnects by itself', cause)
    this.name = 'StoreUnavailableError'
  }
}

/** A record in the store that is not what cistern wrote (hand-edited, another program's): names the key. */
export class StoreDataError extends CisternError {
  constructor(where: string, problem: string) {
    super(`unreadable hooks record ${where}: ${problem}`, {exitCode: ExitCode.failure, fix: 'delete or repair that record; cistern writes the layout docs/hooks.md describes'})
    this.name = 'StoreDataError'
  }
}

/** An attempt of an action failed for this execution (a failing job, a refused send): it counts as an attempt. */
export class ActionError extends CisternError {
  constructor(message: string) {
    super(message)
    this.name = 'ActionError'
  }
}
