import {mkdirSync} from 'node:fs'
import {dirname} from 'node:path'

import type Database from 'better-sqlite3'

import {awsError} from '../core/aws.js'
import {CisternError, UsageError, errorMessage} from '../core/errors.js'
import {type Logger, silentLogger} from '../core/log.js'
import {defaultDbPath} from '../core/paths.js'

/**
 * The spigot's switch. ON: webhooks go straight to Jenkins. OFF: they are queued (and a watching
 * drain pauses). Two homes for it: the embedded SQLite file (no AWS at all) or the API Gateway
 * stage variable `spigot_state` the original Lambdas read, flipped exactly as toggle_spigot.py did.
 */
export type SpigotState = 'ON' | 'OFF'

export interface StateStore {
  readonly backend: 'local' | 'apigw'
  /** Where the state lives, for messages beside the backend's name: a file path, or `<api id>/<stage>`. */
  readonly where: string
  get(): Promise<SpigotState>
  set(state: SpigotState): Promise<{before: SpigotState; after: SpigotState}>
  close(): Promise<void>
}

export interface StateStoreOptions {
  backend: 'local' | 'apigw'
  /** local: the SQLite file (default defaultDbPath()). */
  dbPath?: string
  /** apigw: the REST API, by id or by name (resolved with GetRestApis, paginated). */
  apiId?: string
  apiName?: string
  /** apigw: the stage whose variable holds the state (default prod). */
  stage?: string
  region?: string
  profile?: string
  /** An EventBridge rule that schedules the original drain Lambda: enabled on ON, disabled on OFF. */
  drainRule?: string
  log?: Logger
}

export const STATE_VARIABLE = 'spigot_state'

export function isSpigotState(value: unknown): value is SpigotState {
  return value === 'ON' || value === 'OFF'
}

/** 'on', ' ON ' → 'ON'; anything else is a usage error naming where it came from. */
export function parseState(value: string | undefined, where = '--state'): SpigotState {
  const normal = value?.trim().toUpperCase()
  if (isSpigotState(normal)) return normal
  throw new UsageError(`${where}: "${value ?? ''}" is not a spigot state`, 'use ON or OFF')
}

export async function openStateStore(options: StateStoreOptions): Promise<StateStore> {
  const log = options.log ?? silentLogger
  const store = options.backend === 'apigw' ? await ApiGatewayState.open(options, log) : new LocalState(options.dbPath ?? defaultDbPath())
  return options.drainRule ? new WithDrainRule(store, options.drainRule, options, log) : store
}

/** `local` unless an API is named: the default a user without AWS gets. */
export function stateBackendFor(options: {backend?: string; apiId?: string; apiName?: string}): 'local' | 'apigw' {
  if (options.backend === 'local' || options.backend === 'apigw') return options.backend
  if (options.backend) throw new UsageError(`--backend: "${options.backend}" is not a state backend`, 'use local or apigw')
  return options.apiId || options.apiName ? 'apigw' : 'local'
}

// ---------------------------------------------------------------------------------------------
// local: one row in the embedded database file the queue uses (WAL, so serve and drain share it)

interface LocalDatabase {
  db: Database.Database
  /** serve reads the state on every event-loop turn: prepared once per connection. */
  select: Database.Statement<[], {state: unknown}>
  upsert: Database.Statement<[SpigotState, string]>
}

class LocalState implements StateStore {
  readonly backend = 'local' as const
  private opened: LocalDatabase | undefined

  constructor(readonly where: string) {}

  async get(): Promise<SpigotState> {
    return this.read(await this.open())
  }

  async set(state: SpigotState): Promise<{before: SpigotState; after: SpigotState}> {
    const local = await this.open()
    // One IMMEDIATE transaction: the "before" is what this write replaced, even with two togglers.
    const swap = local.db.transaction((next: SpigotState) => {
      const before = this.read(local)
      local.upsert.run(next, new Date().toISOString())
      return {before, after: this.read(local)}
    })
    return swap.immediate(state)
  }

  async close(): Promise<void> {
    this.opened?.db.close()
    this.opened = undefined
  }

  /** Default ON: a fresh install forwards webhooks. */
  private read(local: LocalDatabase): SpigotState {
    const state = local.select.get()?.state
    return isSpigotState(state) ? state : 'ON'
  }

  private async open(): Promise<LocalDatabase> {
    if (this.opened) return this.opened
    const {default: Sqlite} = await import('better-sqlite3')
    let db: Database.Database | undefined
    try {
      mkdirSync(dirname(this.where), {recursive: true})
      db = new Sqlite(this.where)
      db.pragma('journal_mode = WAL')
      db.pragma('busy_timeout = 5000')
      db.pragma('synchronous = FULL')
      db.exec(`CREATE TABLE IF NOT EXISTS spigot_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state TEXT NOT NULL CHECK (state IN ('ON', 'OFF')),
        updated_at TEXT NOT NULL
      )`)
      this.opened = {
        db,
        select: db.prepare<[], {state: unknown}>('SELECT state FROM spigot_state WHERE id = 1'),
        upsert: db.prepare<[SpigotState, string]>(
          `INSERT INTO spigot_state (id, state, updated_at) VALUES (1, ?, ?)
           ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
        ),
      }
      return this.opened
    } catch (error) {
      db?.close()
      throw new CisternError(`cannot open the spigot state in ${this.where}: ${errorMessage(error)}`, {
        fix: 'check the file and its directory are writable (CISTERN_DATA_DIR moves the data dir)',
        cause: error,
      })
    }
  }
}

// ---------------------------------------------------------------------------------------------
// apigw: the stage variable the original process_webhooks Lambda received as `spigot_state`

type ApiGatewaySdk = typeof import('@aws-sdk/client-api-gateway')
type ApiGatewayClient = import('@aws-sdk/client-api-gateway').APIGatewayClient

class ApiGatewayState implements StateStore {
  readonly backend = 'apigw' as const
  readonly where: string
  /** For error lines: `apigw:<api id>/<stage>`. */
  private readonly named: string

  private constructor(
    private readonly sdk: ApiGatewaySdk,
    private readonly client: ApiGatewayClient,
    private readonly restApiId: string,
    private readonly stageName: string,
    private readonly log: Logger,
  ) {
    this.where = `${restApiId}/${stageName}`
    this.named = `apigw:${this.where}`
  }

  static async open(options: StateStoreOptions, log: Logger): Promise<ApiGatewayState> {
    const sdk = await import('@aws-sdk/client-api-gateway')
    const client = new sdk.APIGatewayClient({
      ...(options.region ? {region: options.region} : {}),
      ...(options.profile ? {profile: options.profile} : {}),
    })
    try {
      return new ApiGatewayState(sdk, client, await resolveApiId(sdk, client, options), options.stage ?? 'prod', log)
    } catch (error) {
      client.destroy()
      throw error
    }
  }

  async get(): Promise<SpigotState> {
    const stage = await this.call('GetStage', () => this.client.send(new this.sdk.GetStageCommand({restApiId: this.restApiId, stageName: this.stageName})))
    return this.stateOf(stage.variables, 'GetStage')
  }

  async set(state: SpigotState): Promise<{before: SpigotState; after: SpigotState}> {
    const before = await this.get()
    const patchOperations = [{op: 'replace' as const, path: `/variables/${STATE_VARIABLE}`, value: state}]
    const updated = await this.call('UpdateStage', () => this.client.send(new this.sdk.UpdateStageCommand({restApiId: this.restApiId, stageName: this.stageName, patchOperations})))
    // The stage UpdateStage returns is the truth after the write.
    const after = updated.variables?.[STATE_VARIABLE] !== undefined ? this.stateOf(updated.variables, 'UpdateStage') : state
    this.log.info(`stage variable ${STATE_VARIABLE}: ${before} → ${after}`, {api: this.restApiId, stage: this.stageName})
    return {before, after}
  }

  async close(): Promise<void> {
    this.client.destroy()
  }

  private stateOf(variables: Record<string, string> | undefined, what: string): SpigotState {
    const value = variables?.[STATE_VARIABLE]
    if (value === undefined) {
      // The original Lambda forwards only when the variable says ON: a missing one behaves as OFF.
      this.log.warn(`stage variable ${STATE_VARIABLE} is not set on ${this.named}: treating it as OFF`, {api: this.restApiId, stage: this.stageName})
      return 'OFF'
    }
    return parseState(value, `${what} ${this.named} variable ${STATE_VARIABLE}`)
  }

  private async call<T>(action: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw awsError(error, {service: 'API Gateway', action, resource: this.named})
    }
  }
}

async function resolveApiId(sdk: ApiGatewaySdk, client: ApiGatewayClient, options: StateStoreOptions): Promise<string> {
  if (options.apiId) return options.apiId
  if (!options.apiName) {
    throw new UsageError('the apigw state backend needs the REST API', 'pass --api-id or --api-name (or use --backend local)')
  }
  const matches: string[] = []
  try {
    for await (const page of sdk.paginateGetRestApis({client, pageSize: 500}, {})) {
      for (const api of page.items ?? []) if (api.name === options.apiName && api.id) matches.push(api.id)
    }
  } catch (error) {
    throw awsError(error, {service: 'API Gateway', action: 'GetRestApis'})
  }
  const only = matches.at(0)
  if (only === undefined) {
    throw new UsageError(`no REST API named "${options.apiName}" in this account/region`, 'check --api-name and --region, or pass --api-id')
  }
  if (matches.length > 1) {
    throw new UsageError(`${matches.length} REST APIs are named "${options.apiName}" (${matches.join(', ')})`, 'pass --api-id to pick one')
  }
  return only
}

// ---------------------------------------------------------------------------------------------
// the drain rule: toggle_spigot.py enabled the scheduled send_from_queue rule on ON, disabled it on OFF

class WithDrainRule implements StateStore {
  private client: import('@aws-sdk/client-eventbridge').EventBridgeClient | undefined

  constructor(
    private readonly store: StateStore,
    private readonly rule: string,
    private readonly options: Pick<StateStoreOptions, 'region' | 'profile'>,
    private readonly log: Logger,
  ) {}

  get backend(): StateStore['backend'] {
    return this.store.backend
  }

  get where(): string {
    return this.store.where
  }

  get(): Promise<SpigotState> {
    return this.store.get()
  }

  async set(state: SpigotState): Promise<{before: SpigotState; after: SpigotState}> {
    const result = await this.store.set(state)
    const sdk = await import('@aws-sdk/client-eventbridge')
    this.client ??= new sdk.EventBridgeClient({
      ...(this.options.region ? {region: this.options.region} : {}),
      ...(this.options.profile ? {profile: this.options.profile} : {}),
    })
    const action = state === 'ON' ? 'EnableRule' : 'DisableRule'
    try {
      await this.client.send(state === 'ON' ? new sdk.EnableRuleCommand({Name: this.rule}) : new sdk.DisableRuleCommand({Name: this.rule}))
    } catch (error) {
      const failed = awsError(error, {service: 'EventBridge', action, resource: this.rule})
      throw new CisternError(`${action} ${this.rule} (the state is already ${result.after}) failed: ${failed.summary}`, {fix: failed.fix ?? 'check --drain-rule and --region', exitCode: failed.exitCode, cause: error})
    }
    this.log.info(`drain rule ${this.rule} ${state === 'ON' ? 'enabled' : 'disabled'}`, {rule: this.rule})
    return result
  }

  async close(): Promise<void> {
    this.client?.destroy()
    await this.store.close()
  }
}
