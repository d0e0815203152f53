import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'

/**
 * examples/spigot/apigw-mapping-template.vtl is evaluated by API Gateway, not here: this checks it
 * builds the event the Lambda handler reads (test/spigot/lambda.test.ts sends the handler such
 * events, raw_body included).
 */
const template = readFileSync(new URL('../../examples/spigot/apigw-mapping-template.vtl', import.meta.url), 'utf8')

describe('examples/spigot/apigw-mapping-template.vtl', () => {
  it("builds the original event's fields plus raw_body, GitHub's bytes in base64", () => {
    const fields = [...template.matchAll(/^ {2}"(\w+)":/gm)].map((match) => match[1])
    expect(fields).toEqual(['spigot_state', 'from_queue', 'body', 'raw_body', 'headers'])
    expect(template).toMatch(/^ {2}"raw_body": "\$util\.base64Encode\(\$input\.body\)",$/m)
    expect(template).toMatch(/^ {2}"spigot_state": "\$stageVariables\.spigot_state",$/m)
    expect(template).toMatch(/^ {2}"body": \$input\.json\('\$'\),$/m)
  })
})
