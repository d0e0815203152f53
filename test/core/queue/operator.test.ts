import {Readable} from 'node:stream'
import {join} from 'node:path'
import {writeFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'

import {UsageError} from '../../../src/core/errors.js'
import {openQueue} from '../../../src/core/queue/index.js'
import {messageView, operatorQueue, parseAttributes, readBody, renderMessages, renderStats, sendLines} from '../../../src/core/queue/operator.js'
import {tempDir} from '../../helpers/tmp.js'

const dir = tempDir('cistern-operator-')
const stdin = (text: string, isTTY = false) => Object.assign(Readable.from([Buffer.from(text)]), {isTTY})

describe('queue operator helpers', () => {
  it('reads the body from --body, --file or stdin byte for byte', async () => {
    expect(await readBody({body: ' spaced \n', stdin: stdin('ignored')})).toBe(' spaced \n')
    const file = join(dir, 'b.json')
    writeFileSync(file, '{"ü":1}\n')
    expect(await readBody({file})).toBe('{"ü":1}\n')
    expect(await readBody({stdin: stdin('piped\n\n')})).toBe('piped\n\n')
    expect(await readBody({file: '-', stdin: stdin('dash')})).toBe('dash')
  })

  it('refuses two sources, a missing file and a terminal with nothing piped', async () => {
    await expect(readBody({body: 'a', file: 'b'})).rejects.toBeInstanceOf(UsageError)
    await expect(readBody({file: join(dir, 'missing.json')})).rejects.toThrow(/cannot read --file/)
    await expect(readBody({stdin: stdin('', true)})).rejects.toThrow(/no message body/)
  })

  it('refuses a body that is not UTF-8 instead of turning its bytes into U+FFFD', async () => {
    const file = join(dir, 'latin1.txt')
    writeFileSync(file, Buffer.from([0x63, 0x61, 0x66, 0xe9])) // "café" in Latin-1
    await expect(readBody({file})).rejects.toThrow(`--file ${file} is not valid UTF-8: a queue message is text`)
    const piped = Object.assign(Readable.from([Buffer.from([0xff, 0xfe, 0x41])]), {isTTY: false})
    const error = await readBody({stdin: piped}).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(UsageError)
    expect((error as UsageError).oneLine).toMatch(/^the body on stdin is not valid UTF-8.*base64/)
    // A real U+FFFD in valid UTF-8 is text like any other.
    writeFileSync(file, '\uFFFD ok')
    expect(await readBody({file})).toBe('\uFFFD ok')
  })

  it('parses key=value attributes (the value may contain =)', () => {
    expect(parseAttributes(['a=1', 'b=x=y', 'c='])).toEqual({a: '1', b: 'x=y', c: ''})
    expect(parseAttributes([])).toBeUndefined()
    expect(() => parseAttributes(['novalue'])).toThrow(UsageError)
    expect(() => parseAttributes(['=v'])).toThrow(UsageError)
  })

  it('needs a URL, and read-only use never creates the queue', async () => {
    await expect(operatorQueue({}, 'existing')).rejects.toThrow(/no queue URL given/)
    await expect(operatorQueue({url: `sqlite:${join(dir, 'none.db')}#q`}, 'existing')).rejects.toBeInstanceOf(UsageError)
  })

  it('sends lines in batches and renders what it received', async () => {
    const queue = await openQueue(`sqlite:${join(dir, 'ops.db')}#q`)
    const results = await sendLines(queue, 'one\r\ntwo\n\nthree', {attributes: {k: 'v'}})
    expect(results).toHaveLength(3)
    await expect(sendLines(queue, '\n\n', {})).rejects.toThrow(/no message body/)
    const views = (await queue.receive()).map(messageView)
    expect(views.map((v) => v.body)).toEqual(['one', 'two', 'three'])
    expect(views[0]).toMatchObject({receiveCount: 1, attributes: {k: 'v'}})
    expect(typeof views[0]!.sentAt).toBe('string')
    const text = renderMessages(views)
    expect(text).toContain(`── ${views[0]!.id} (received 1×`)
    expect(text).toContain('k=v')
    expect(renderMessages([])).toBe('no messages')
    expect(renderStats({visible: 1, inFlight: 2, delayed: 0, dead: -1})).toBe('visible 1  in flight 2  delayed 0  dead unknown')
    await queue.close()
  })
})
