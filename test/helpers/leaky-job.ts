/**
 * The leak tests' job (issue 12): a CommonJS script that prints its environment, then each secret
 * listed in the JSON file named by its first argument, in every form a job could print it (plain,
 * base64, URL-encoded, as Basic credentials), on stdout and stderr. `then` is appended: what the
 * job does after (its exit code, a result file).
 */
export function leakyJob(then = 'process.exit(3)'): string {
  return `
const fs = require('node:fs')
for (const [k, v] of Object.entries(process.env)) console.log(k + '=' + v)
const all = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
for (const s of all) {
  console.log('plain ' + s)
  console.error('b64 ' + Buffer.from(s).toString('base64'))
  console.log('url ' + encodeURIComponent(s))
  console.log('basic ' + Buffer.from('bot:' + s).toString('base64'))
}
${then}
`
}

/** The forms of a secret that must appear nowhere: as it is, base64 (unpadded), URL-encoded. */
export function secretForms(secret: string): string[] {
  return [secret, Buffer.from(secret).toString('base64').replace(/=+$/, ''), encodeURIComponent(secret)]
}
