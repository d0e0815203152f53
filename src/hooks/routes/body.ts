import type {FastifyRequest} from 'fastify'

import {ApiError} from '../errors.js'

/** The request's body as JSON (the shared server keeps every body as raw bytes). */
export function jsonBody(request: FastifyRequest): unknown {
  const body = request.body
  if (!Buffer.isBuffer(body) || body.length === 0) throw new ApiError(400, 'expected a JSON body')
  try {
    return JSON.parse(body.toString('utf8')) as unknown
  } catch (error) {
    throw new ApiError(400, `malformed JSON: ${error instanceof Error ? error.message : 'not JSON'}`)
  }
}
