import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {UsageError} from '../../src/core/errors.js'
import {REDACTED, isSecretVariable, maskDeep, maskSecrets, readSecretFile, redact, registerEnvironmentSecrets, registerSecret} from '../../src/core/secrets.js'
import {tempDir} from '../helpers/tmp.js'

const b64 = (text: string) => Buffer.from(text).toString('base64')

describe('maskSecrets', () => {
  it('masks a registered value and its base64 and URL-encoded forms', () => {
    const secret = 's3cr?t/+~>>>x' // URL-encoding and every base64 spelling differ from the value
    registerSecret(secret)
    const forms = [secret, b64(secret), b64(secret).replace(/=+$/, ''), Buffer.from(secret).toString('base64url'), encodeURIComponent(secret)]
    expect(new Set(forms).size).toBe(5)
    for (const form of forms) {
      expect(maskSecrets(`before ${form} after`)).toBe(`before ${REDACTED} after`)
    }
    // Inside a longer encoded text (Basic user:token), at every offset: at most two bytes show.
    for (const user of ['u', 'us', 'usr']) {
      const header = maskSecrets(`Basic ${b64(`${user}:${secret}`)}`)
      const [before = '', after = ''] = header.replace(/^Basic /, '').split(REDACTED)
      const shown = Buffer.from(before, 'base64').toString('latin1') + Buffer.from(after, 'base64').toString('latin1')
      expect(shown.length - `${user}:`.length).toBeLessThanOrEqual(4)
    }
  })

  it('masks values given for one call only, and leaves short values alone', () => {
    expect(maskSecrets('job key per-job-key-1 here', ['per-job-key-1'])).toBe(`job key ${REDACTED} here`)
    expect(maskSecrets('per-job-key-1 is not known outside that call')).toContain('per-job-key-1')
    registerSecret('abc')
    expect(maskSecrets('abc stays')).toBe('abc stays')
    expect(maskSecrets('x', ['ab'])).toBe('x')
  })

  it('treats regular-expression characters in a secret literally', () => {
    registerSecret('a.b*c(d)[e]')
    expect(maskSecrets('see a.b*c(d)[e] and aXbbc(d)[e]')).toBe(`see ${REDACTED} and aXbbc(d)[e]`)
  })

  it('masks passwords in URLs and token-like query parameters nobody registered', () => {
    expect(maskSecrets('https://bot:hunter2pass@ci.example.com/x?token=abc123&job=y')).toBe(
      `https://bot:${REDACTED}@ci.example.com/x?token=${REDACTED}&job=y`,
    )
  })

  it('redact() masks fields named like secrets at any depth and every string', () => {
    registerSecret('deep-secret-value')
    expect(redact({headers: {Authorization: 'Bearer x', accept: 'json'}, list: ['deep-secret-value'], error: new Error('had deep-secret-value')})).toEqual({
      headers: {Authorization: REDACTED, accept: 'json'},
      list: [REDACTED],
      error: {name: 'Error', message: `had ${REDACTED}`},
    })
  })
})

describe('maskDeep', () => {
  it('masks every string at any depth and keeps keys, numbers and structure (what --json prints)', () => {
    registerSecret('json-output-secret-1')
    let deep: unknown = 'json-output-secret-1'
    for (let i = 0; i < 12; i++) deep = {level: i, inner: deep}
    const masked = JSON.stringify(maskDeep({token: 'visible-by-name', n: 3, ok: true, none: null, deep, at: new Date(0)}))
    expect(masked).not.toContain('json-output-secret-1')
    expect(JSON.parse(masked)).toMatchObject({token: 'visible-by-name', n: 3, ok: true, none: null, at: '1970-01-01T00:00:00.000Z'})
    expect(masked.match(/level/g)).toHaveLength(12)
  })
})

describe('registerEnvironmentSecrets', () => {
  it('knows the values of variables named like secrets', () => {
    registerEnvironmentSecrets({
      GITHUB_TOKEN: 'ghp_env_token_0001',
      AWS_SECRET_ACCESS_KEY: 'aws/secret+key=0001',
      AWS_ACCESS_KEY_ID: 'AKIAENVKEY0001',
      API_KEY: 'facade-api-key-0001',
      CISTERN_HOOKS_TOKEN: 'hooks-token-0001',
      GITHUB_WEBHOOK_SECRET: 'webhook-secret-0001',
      FEATURE_TOKEN_ENABLED: 'true', // short: a switch, not a secret
      BUILD_REGION: 'eu-west-1-region', // not named like a secret
    })
    const text = maskSecrets(
      'ghp_env_token_0001 aws/secret+key=0001 AKIAENVKEY0001 facade-api-key-0001 hooks-token-0001 webhook-secret-0001 true eu-west-1-region',
    )
    expect(text).toBe(`${Array(6).fill(REDACTED).join(' ')} true eu-west-1-region`)
    expect(maskSecrets(encodeURIComponent('aws/secret+key=0001'))).toBe(REDACTED)
  })

  it('tells secret variable names apart', () => {
    for (const name of ['JENKINS_TOKEN', 'TRAVIS_TOKEN', 'AWS_SESSION_TOKEN', 'DB_PASSWORD', 'npm_config__authToken', 'X_PRIVATE_KEY']) {
      expect(isSecretVariable(name)).toBe(true)
    }
    for (const name of ['PATH', 'HOME', 'AWS_REGION', 'AWS_PROFILE', 'JENKINS_URL', 'KEYBOARD', 'AWS_SHARED_CREDENTIALS_FILE', 'GITHUB_TOKEN_FILE', 'SECRETS_DIR']) {
      expect(isSecretVariable(name)).toBe(false)
    }
  })
})

describe('readSecretFile', () => {
  const dir = tempDir()
  const file = (name: string, content: string) => {
    const path = join(dir, name)
    writeFileSync(path, content)
    return path
  }
  const options = {what: 'webhook secret', source: '--webhook-secret-file'}

  it('trims surrounding whitespace (echo > file, CRLF, a BOM) and registers the value', () => {
    expect(readSecretFile(file('a', 'from-a-file-01\n'), options)).toBe('from-a-file-01')
    expect(readSecretFile(file('b', '\uFEFF  from-a-file-02\r\n'), options)).toBe('from-a-file-02')
    expect(readSecretFile(file('c', 'from-a-file-03'), options)).toBe('from-a-file-03')
    expect(maskSecrets('from-a-file-01 from-a-file-02 from-a-file-03')).toBe(`${REDACTED} ${REDACTED} ${REDACTED}`)
  })

  it('refuses a missing, empty or several-line file in one line naming the file and its source', () => {
    const oneLine = (path: string) => {
      try {
        readSecretFile(path, options)
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError)
        expect((error as UsageError).exitCode).toBe(2)
        return (error as UsageError).oneLine
      }
      throw new Error('expected a UsageError')
    }
    const missing = join(dir, 'nope')
    expect(oneLine(missing)).toBe(`cannot read the webhook secret file ${missing} (ENOENT: no such file) — check --webhook-secret-file`)
    expect(oneLine(dir)).toBe(`cannot read the webhook secret file ${dir} (EISDIR: it is a directory) — check --webhook-secret-file`)
    const empty = file('empty', ' \n')
    expect(oneLine(empty)).toBe(`the webhook secret file ${empty} is empty — write the webhook secret into it (--webhook-secret-file)`)
    const lines = file('lines', 'first\nsecond\n')
    expect(oneLine(lines)).toBe(`the webhook secret file ${lines} holds several lines — a secret file holds the webhook secret alone, on one line (--webhook-secret-file)`)
  })
})
