import {mkdirSync} from 'node:fs'
import {dirname} from 'node:path'

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
  /** Where the state lives, for messages (a file path or `apigw:<api id>/<stage>`). */
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

/** 'on', ' ON ' → 'ON'; anything else is a usage error naming where it came from. */
export function parseState(value: string | undefined, where = '--state'): SpigotState {
  const normal = value?.trim().toUpperCase()
  if (normal === 'ON' || normal === 'OFF') return normal
  throw new UsageError(`${where}: "${value ?? ''}" is not a spigot state`, 'use ON or OFF')
}

export async function openStateStore(options: StateStoreOptions): Promise<StateStore> {
  const log = options.log ?? silentLogger
  const store = options.backend === 'apigw' ? await openApiGatewayState(options, log) : openLocalState(options.dbPath ?? defaultDbPath())
  return options.drainRule ? withDrainRule(store, options, log) : store
}

/** `local` unless an API is named: the default a user without AWS gets. */
export function stateBackendFor(options: {backend?: string; apiId?: string; apiName?: string}): 'local' | 'apigw' {
  if (options.backend === 'local' || options.backend === 'apigw') return options.backend
  if (options.backend) throw new UsageError(`--backend: "${options.backend}" is not a state backend`, 'use local or apigw')
  return options.apiId || options.apiName ? 'apigw' : 'local'
}

// ---------------------------------------------------------------------------------------------
// local: one row in the embedded database file the queue uses (WAL, so serve and drain share it)

function openLocalState(dbPath: string): StateStore {
  let db: import('better-sqlite3').Database | undefined
  // serve reads the state on every webhook: prepare the statement once per connection.
  let select: import('better-sqlite3').Statement | undefined

  async function open() {
    if (db) return db
    const {default: Database} = await import('better-sqlite3')
    try {
      mkdirSync(dirname(dbPath), {recursive: true})
      db = new Database(dbPath)
      db.pragma('journal_mode = WAL')
      db.pragma('busy_timeout = 5000')
      db.pragma('synchronous = FULL')
      db.exec(`CREATE TABLE IF NOT EXISTS spigot_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state TEXT NOT NULL CHECK (state IN ('ON', 'OFF')),
        updated_at TEXT NOT NULL
      )`)
      select = db.prepare('SELECT state FROM spigot_state WHERE id = 1')
    } catch (error) {
      db = undefined
      throw new CisternError(`cannot open the spigot state in ${dbPath}: ${errorMessage(error)}`, {
        fix: 'check the file and its directory are writable (CISTERN_DATA_DIR moves the data dir)',
        cause: error,
      })
    }
    return db
  }

  // Default ON: a fresh install forwards webhooks.
  const read = (): SpigotState => ((select!.get() as {state?: SpigotState} | undefined)?.state ?? 'ON')

  return {
    backend: 'local',
    where: dbPath,
    async get() {
      await open()
      return read()
    },
    async set(state) {
      const handle = await open()
      // One IMMEDIATE transaction: the "before" is what this write replaced, even with two togglers.
      const swap = handle.transaction((next: SpigotState) => {
        const before = read()
        handle
          .prepare(
            `INSERT INTO spigot_state (id, state, updated_at) VALUES (1, ?, ?)
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
          )
          .run(next, new Date().toISOString())
        return {before, after: read()}
      })
      return swap.immediate(state)
    },
    async close() {
      db?.close()
      db = undefined
      select = undefined
    },
  }
}

// ---------------------------------------------------------------------------------------------
// apigw: the stage variable the original process_webhooks Lambda received as `spigot_state`

async function openApiGatewayState(options: StateStoreOptions, log: Logger): Promise<StateStore> {
  const sdk = await import('@aws-sdk/client-api-gateway')
  const client = new sdk.APIGatewayClient({
    ...(options.region ? {region: options.region} : {}),
    ...(options.profile ? {profile: options.profile} : {}),
  })
  const stageName = options.stage ?? 'prod'
  const restApiId = await resolveApiId(sdk, client, options)
  const where = `apigw:${restApiId}/${stageName}`

  const stateOf = (variables: Record<string, string> | undefined, what: string): SpigotState => {
    const value = variables?.[STATE_VARIABLE]
    if (value === undefined) {
      // The original Lambda forwards only when the variable says ON: a missing one behaves as OFF.
      log.warn(`stage variable ${STATE_VARIABLE} is not set on ${where}: treating it as OFF`, {api: restApiId, stage: stageName})
      return 'OFF'
    }
    return parseState(value, `${what} ${where} variable ${STATE_VARIABLE}`)
  }

  const call = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run()
    } catch (error) {
      throw awsError(error, `${what} on ${where}`)
    }
  }

  return {
    backend: 'apigw',
    where,
    async get() {
      const stage = await call('GetStage', () => client.send(new sdk.GetStageCommand({restApiId, stageName})))
      return stateOf(stage.variables, 'GetStage')
    },
    async set(state) {
      const stage = await call('GetStage', () => client.send(new sdk.GetStageCommand({restApiId, stageName})))
      const before = stateOf(stage.variables, 'GetStage')
      const updated = await call('UpdateStage', () =>
        client.send(
          new sdk.UpdateStageCommand({
            restApiId,
            stageName,
            patchOperations: [{op: 'replace', path: `/variables/${STATE_VARIABLE}`, value: state}],
          }),
        ),
      )
      // The stage UpdateStage returns is the truth after the write.
      const after = updated.variables?.[STATE_VARIABLE] !== undefined ? stateOf(updated.variables, 'UpdateStage') : state
      log.info(`stage variable ${STATE_VARIABLE}: ${before} → ${after}`, {api: restApiId, stage: stageName})
      return {before, after}
    },
    async close() {
      client.destroy()
    },
  }
}

async function resolveApiId(
  sdk: typeof import('@aws-sdk/client-api-gateway'),
  client: import('@aws-sdk/client-api-gateway').APIGatewayClient,
  options: StateStoreOptions,
): Promise<string> {
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
    throw awsError(error, 'GetRestApis')
  }
  if (matches.length === 0) {
    throw new UsageError(`no REST API named "${options.apiName}" in this account/region`, 'check --api-name and --region, or pass --api-id')
  }
  if (matches.length > 1) {
    throw new UsageError(`${matches.length} REST APIs are named "${options.apiName}" (${matches.join(', ')})`, 'pass --api-id to pick one')
  }
  return matches[0]!
}

// ---------------------------------------------------------------------------------------------
// the drain rule: toggle_spigot.py enabled the scheduled send_from_queue rule on ON, disabled it on OFF

function withDrainRule(store: StateStore, options: StateStoreOptions, log: Logger): StateStore {
  const rule = options.drainRule!
  let client: import('@aws-sdk/client-eventbridge').EventBridgeClient | undefined
  return {
    backend: store.backend,
    where: store.where,
    get: () => store.get(),
    async set(state) {
      const result = await store.set(state)
      const sdk = await import('@aws-sdk/client-eventbridge')
      client ??= new sdk.EventBridgeClient({
        ...(options.region ? {region: options.region} : {}),
        ...(options.profile ? {profile: options.profile} : {}),
      })
      const command = state === 'ON' ? new sdk.EnableRuleCommand({Name: rule}) : new sdk.DisableRuleCommand({Name: rule})
      try {
        await client.send(command)
      } catch (error) {
        throw awsError(error, `${state === 'ON' ? 'EnableRule' : 'DisableRule'} ${rule} (the state is already ${result.after})`)
      }
      log.info(`drain rule ${rule} ${state === 'ON' ? 'enabled' : 'disabled'}`, {rule})
      return result
    },
    async close() {
      client?.destroy()
      await store.close()
    },
  }
}

function awsError(error: unknown, what: string): CisternError {
  const name = (error as {name?: string})?.name ?? 'Error'
  const fix =
    name === 'NotFoundException' || name === 'ResourceNotFoundException'
      ? 'check the API id/name, --stage, --drain-rule and --region'
      : /Credentials|AccessDenied|UnrecognizedClient|ExpiredToken|Unauthorized/i.test(name + errorMessage(error))
        ? 'check AWS credentials (AWS_PROFILE, --profile) and their permissions'
        : undefined
  return new CisternError(`${what} failed: ${name}: ${errorMessage(error)}`, {fix, cause: error})
}
