import {APIGatewayClient, GetRestApisCommand, GetStageCommand, UpdateStageCommand} from '@aws-sdk/client-api-gateway'
import {DisableRuleCommand, EnableRuleCommand, EventBridgeClient} from '@aws-sdk/client-eventbridge'
import {mockClient} from 'aws-sdk-client-mock'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import SpigotToggle from '../../src/commands/spigot/toggle.js'
import {UsageError} from '../../src/core/errors.js'
import {openStateStore, parseState, stateBackendFor} from '../../src/spigot/state.js'
import {tempDir} from '../helpers/tmp.js'

const root = new URL('../..', import.meta.url).pathname

describe('local state store', () => {
  const dir = tempDir('cistern-state-')

  it('defaults to ON, persists across opens, and reports before → after', async () => {
    const dbPath = join(dir, 'a.db')
    const first = await openStateStore({backend: 'local', dbPath})
    expect(first.backend).toBe('local')
    expect(await first.get()).toBe('ON')
    expect(await first.set('OFF')).toEqual({before: 'ON', after: 'OFF'})
    expect(await first.set('OFF')).toEqual({before: 'OFF', after: 'OFF'})
    await first.close()

    const second = await openStateStore({backend: 'local', dbPath})
    expect(await second.get()).toBe('OFF')
    expect(await second.set('ON')).toEqual({before: 'OFF', after: 'ON'})
    await second.close()
  })

  it('two handles on one file see each other (serve and drain share it)', async () => {
    const dbPath = join(dir, 'shared.db')
    const a = await openStateStore({backend: 'local', dbPath})
    const b = await openStateStore({backend: 'local', dbPath})
    await a.set('OFF')
    expect(await b.get()).toBe('OFF')
    await b.set('ON')
    expect(await a.get()).toBe('ON')
    await a.close()
    await b.close()
  })

  it('an unusable file is a one-line operator error', async () => {
    const file = join(dir, 'a-file')
    writeFileSync(file, 'not a directory')
    const store = await openStateStore({backend: 'local', dbPath: join(file, 'cistern.db')})
    await expect(store.get()).rejects.toThrow(/cannot open the spigot state in .*a-file\/cistern.db: E[A-Z]+/)
  })
})

describe('parseState and backend choice', () => {
  it('accepts ON/OFF in any case and rejects anything else', () => {
    expect(parseState('on')).toBe('ON')
    expect(parseState(' Off ')).toBe('OFF')
    expect(() => parseState('maybe')).toThrow(UsageError)
  })
  it('is local unless an API is named', () => {
    expect(stateBackendFor({})).toBe('local')
    expect(stateBackendFor({apiName: 'spigot'})).toBe('apigw')
    expect(stateBackendFor({apiId: 'abc', backend: 'local'})).toBe('local')
    expect(() => stateBackendFor({backend: 'redis'})).toThrow(/not a state backend/)
  })
})

describe('apigw state store', () => {
  const apigw = mockClient(APIGatewayClient)
  const events = mockClient(EventBridgeClient)
  beforeEach(() => {
    apigw.reset()
    events.reset()
  })

  it('reads the stage variable and flips it with the exact UpdateStage patch', async () => {
    apigw.on(GetStageCommand).resolves({stageName: 'prod', variables: {spigot_state: 'ON'}})
    apigw.on(UpdateStageCommand).resolves({stageName: 'prod', variables: {spigot_state: 'OFF'}})
    const store = await openStateStore({backend: 'apigw', apiId: 'abc123', region: 'us-east-1'})
    expect(await store.get()).toBe('ON')
    expect(await store.set('OFF')).toEqual({before: 'ON', after: 'OFF'})
    expect(apigw.commandCalls(GetStageCommand)[0]!.args[0].input).toEqual({restApiId: 'abc123', stageName: 'prod'})
    const updates = apigw.commandCalls(UpdateStageCommand)
    expect(updates).toHaveLength(1)
    expect(updates[0]!.args[0].input).toEqual({
      restApiId: 'abc123',
      stageName: 'prod',
      patchOperations: [{op: 'replace', path: '/variables/spigot_state', value: 'OFF'}],
    })
    expect(events.calls()).toHaveLength(0)
    await store.close()
  })

  it('finds the API by name across GetRestApis pages and uses the given stage', async () => {
    apigw
      .on(GetRestApisCommand)
      .resolvesOnce({items: [{id: 'one', name: 'other'}], position: 'page2'})
      .resolvesOnce({items: [{id: 'two', name: 'spigot'}, {id: 'three', name: 'spigot-dev'}]})
    apigw.on(GetStageCommand).resolves({variables: {spigot_state: 'off'}})
    apigw.on(UpdateStageCommand).resolves({variables: {spigot_state: 'ON'}})
    const store = await openStateStore({backend: 'apigw', apiName: 'spigot', stage: 'staging', region: 'us-east-1'})
    expect(store.where).toBe('two/staging')
    expect(await store.set('ON')).toEqual({before: 'OFF', after: 'ON'})
    const pages = apigw.commandCalls(GetRestApisCommand)
    expect(pages).toHaveLength(2)
    expect(pages[1]!.args[0].input.position).toBe('page2')
    expect(apigw.commandCalls(UpdateStageCommand)[0]!.args[0].input).toEqual({
      restApiId: 'two',
      stageName: 'staging',
      patchOperations: [{op: 'replace', path: '/variables/spigot_state', value: 'ON'}],
    })
  })

  it('an unknown or ambiguous API name is a usage error', async () => {
    apigw.on(GetRestApisCommand).resolves({items: [{id: 'a', name: 'x'}]})
    await expect(openStateStore({backend: 'apigw', apiName: 'spigot', region: 'us-east-1'})).rejects.toThrow(/no REST API named "spigot"/)
    apigw.reset()
    apigw.on(GetRestApisCommand).resolves({items: [{id: 'a', name: 'spigot'}, {id: 'b', name: 'spigot'}]})
    await expect(openStateStore({backend: 'apigw', apiName: 'spigot', region: 'us-east-1'})).rejects.toThrow(/2 REST APIs are named "spigot" \(a, b\)/)
    await expect(openStateStore({backend: 'apigw', region: 'us-east-1'})).rejects.toMatchObject({message: expect.stringMatching(/needs the REST API/), fix: expect.stringMatching(/--api-id or --api-name/)})
  })

  it('ON enables and OFF disables the drain rule, after the stage update', async () => {
    apigw.on(GetStageCommand).resolves({variables: {spigot_state: 'OFF'}})
    apigw.on(UpdateStageCommand).callsFake((input: {patchOperations: Array<{value: string}>}) => ({variables: {spigot_state: input.patchOperations[0]!.value}}))
    events.on(EnableRuleCommand).resolves({})
    events.on(DisableRuleCommand).resolves({})
    const store = await openStateStore({backend: 'apigw', apiId: 'abc', drainRule: 'spigot-drain', region: 'us-east-1'})
    await store.set('ON')
    expect(events.commandCalls(EnableRuleCommand).map((c) => c.args[0].input)).toEqual([{Name: 'spigot-drain'}])
    expect(events.commandCalls(DisableRuleCommand)).toHaveLength(0)
    await store.set('OFF')
    expect(events.commandCalls(DisableRuleCommand).map((c) => c.args[0].input)).toEqual([{Name: 'spigot-drain'}])
    await store.close()
  })

  it('AWS failures become one-line errors naming the call', async () => {
    apigw.on(GetStageCommand).rejects(Object.assign(new Error('Invalid stage identifier specified'), {name: 'NotFoundException'}))
    const store = await openStateStore({backend: 'apigw', apiId: 'abc', stage: 'nope', region: 'us-east-1'})
    await expect(store.get()).rejects.toThrow(/GetStage on apigw:abc\/nope failed: NotFoundException/)
  })

  it('a failing rule call says the state already changed', async () => {
    apigw.on(GetStageCommand).resolves({variables: {spigot_state: 'ON'}})
    apigw.on(UpdateStageCommand).resolves({variables: {spigot_state: 'OFF'}})
    events.on(DisableRuleCommand).rejects(Object.assign(new Error('Rule x does not exist'), {name: 'ResourceNotFoundException'}))
    const store = await openStateStore({backend: 'apigw', apiId: 'abc', drainRule: 'x', region: 'us-east-1'})
    await expect(store.set('OFF')).rejects.toThrow(/DisableRule x \(the state is already OFF\) failed/)
  })
})

describe('spigot toggle (command class, in process)', () => {
  const apigw = mockClient(APIGatewayClient)
  const events = mockClient(EventBridgeClient)
  const dir = tempDir('cistern-toggle-')
  let out: string[]
  beforeEach(() => {
    apigw.reset()
    events.reset()
    out = []
    // oclif's this.log / logJson write through console.log.
    vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
      out.push(args.map(String).join(' '))
    })
  })
  afterEach(() => vi.restoreAllMocks())

  it('apigw: sends the patch and the rule call, prints and returns before → after', async () => {
    apigw.on(GetStageCommand).resolves({variables: {spigot_state: 'ON'}})
    apigw.on(UpdateStageCommand).resolves({variables: {spigot_state: 'OFF'}})
    events.on(DisableRuleCommand).resolves({})
    const result = await SpigotToggle.run(['--state', 'off', '--api-id', 'abc123', '--stage', 'prod', '--drain-rule', 'send-from-queue', '--region', 'us-east-1', '--json'], {root})
    expect(result).toEqual({backend: 'apigw', where: 'abc123/prod', before: 'ON', after: 'OFF', drainRule: 'send-from-queue'})
    expect(apigw.commandCalls(UpdateStageCommand)[0]!.args[0].input.patchOperations).toEqual([{op: 'replace', path: '/variables/spigot_state', value: 'OFF'}])
    expect(events.commandCalls(DisableRuleCommand)[0]!.args[0].input).toEqual({Name: 'send-from-queue'})
    expect(JSON.parse(out.join(''))).toMatchObject({backend: 'apigw', before: 'ON', after: 'OFF'})
  })

  // Issue 14: oclif wraps each line of a description by itself, so a line break inside a paragraph broke sentences.
  it('--help paragraphs are single lines (oclif wraps them to the terminal)', () => {
    for (const paragraph of SpigotToggle.description.split('\n\n')) expect(paragraph).not.toContain('\n')
  })

  // Issue 14: it printed "(apigw: apigw:abc123/prod)".
  it('apigw: the human line names the backend once', async () => {
    apigw.on(GetStageCommand).resolves({variables: {spigot_state: 'OFF'}})
    apigw.on(UpdateStageCommand).resolves({variables: {spigot_state: 'ON'}})
    events.on(EnableRuleCommand).resolves({})
    await SpigotToggle.run(['--state', 'on', '--api-id', 'abc123', '--drain-rule', 'send-from-queue', '--region', 'us-east-1'], {root})
    expect(out.join('')).toBe('spigot: OFF → ON  (apigw: abc123/prod); drain rule send-from-queue enabled')
  })

  it('local: prints the change in human form', async () => {
    const db = join(dir, 'toggle.db')
    await SpigotToggle.run(['--state', 'OFF', '--state-db', db], {root})
    expect(out.join('')).toContain(`spigot: ON → OFF  (local: ${db})`)
    expect(apigw.calls()).toHaveLength(0)
    const store = await openStateStore({backend: 'local', dbPath: db})
    expect(await store.get()).toBe('OFF')
    await store.close()
  })
})
