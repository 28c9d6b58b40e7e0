import { Type } from 'typebox'
import { EVENT_NAME_PATTERN } from './sse/frame.js'

/** Fastify's error shape, used by every route's error responses. */
export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer(),
    error: Type.String(),
    message: Type.String(),
    code: Type.String(),
  },
  { $id: 'ErrorResponse', description: 'An error; `code` is stable and listed in the README' },
)

export const errorRef = Type.Ref('ErrorResponse')

/** Standard error responses for a route, by status. */
export function errorResponses(...statuses: number[]): Record<number, typeof errorRef> {
  const out: Record<number, typeof errorRef> = {}
  for (const status of statuses) out[status] = errorRef
  return out
}

/** The event-name rule of the wire encoder, as a JSON-schema pattern. */
export const EVENT_NAME_SOURCE = EVENT_NAME_PATTERN.source
export const MAX_TARGET_IDS = 1000
