import { Type } from 'typebox'

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

export const EVENT_NAME_SOURCE = '^[A-Za-z0-9_\\-.:/]{1,64}$'
export const MAX_TARGET_IDS = 1000
