// The one HTTP client every drain here uses: undici's keep-alive pool, a batch's POSTs concurrent.
import {Pool} from 'undici'

export function poster(url, connections = 10) {
  const pool = new Pool(url, {connections, pipelining: 1, keepAliveTimeout: 60_000})
  return {
    /** POSTs every body of the batch at once; resolves when all were answered 2xx. */
    async postAll(bodies) {
      await Promise.all(
        bodies.map(async (body) => {
          const {statusCode, body: answer} = await pool.request({path: '/', method: 'POST', body, headers: {'content-type': 'application/json'}})
          await answer.dump()
          if (statusCode >= 300) throw new Error(`sink answered ${statusCode}`)
        }),
      )
    },
    close: () => pool.close(),
  }
}
