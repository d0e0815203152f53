// GitHub push webhooks as the spigot queues them, for the drain benchmarks.
import {createHash, randomUUID} from 'node:crypto'

/** A push payload of about `size` bytes of JSON (commits, as GitHub sends them), for `repository`. */
export function pushPayload(i, repository, size) {
  const commit = (c) => ({
    id: createHash('sha1').update(`${i}-${c}`).digest('hex'),
    message: `Commit ${c} of push ${i}: a line of text that looks like a commit message`,
    author: {name: 'Codertocat', email: 'octocat@github.com', username: 'Codertocat'},
    added: ['src/a.ts'],
    removed: [],
    modified: ['README.md', 'src/b.ts'],
  })
  const body = {ref: 'refs/heads/main', before: '0'.repeat(40), repository: {id: 1, name: repository.split('/')[1], full_name: repository, owner: {login: 'acme'}}, pusher: {name: 'Codertocat'}, commits: []}
  for (let c = 0; JSON.stringify(body).length < size; c++) body.commits.push(commit(c))
  return body
}

/**
 * The spigot's queue message for the i-th push: the parsed body, the kept headers, the target,
 * received_at; raw_body only with `raw` (the intake keeps it when the body does not re-serialise
 * to the signed bytes).
 */
export function spigotMessage(i, repository, size, {raw = false} = {}) {
  const body = pushPayload(i, repository, size)
  const text = JSON.stringify(body)
  const delivery = randomUUID()
  const message = {
    spigot_state: 'OFF',
    from_queue: 'false',
    body,
    headers: {
      'X-GitHub-Event': 'push',
      'X-GitHub-Delivery': delivery,
      'X-Hub-Signature-256': 'sha256=' + createHash('sha256').update(text).digest('hex'),
      'Content-Type': 'application/json',
      'User-Agent': 'GitHub-Hookshot/bench',
    },
    ...(raw ? {raw_body: Buffer.from(text).toString('base64')} : {}),
    received_at: new Date().toISOString(),
    target: 'default',
  }
  return {message, repository, delivery}
}
