import createError from '@fastify/error'

/**
 * Every error the service answers with, in one table: the key is the code, each
 * carries its HTTP status. Responses have Fastify's shape
 * `{ statusCode, error, message, code }`.
 */
export const errors = {
  SSE_ERR_TOKEN_REQUIRED: createError('SSE_ERR_TOKEN_REQUIRED', 'A bearer token is required: %s', 401),
  SSE_ERR_INVALID_TOKEN: createError('SSE_ERR_INVALID_TOKEN', 'The token is invalid: %s', 401),
  SSE_ERR_MISSING_SCOPE: createError('SSE_ERR_MISSING_SCOPE', 'The token lacks the scope %s', 403),
  SSE_ERR_USER_MISMATCH: createError(
    'SSE_ERR_USER_MISMATCH',
    'userId must equal the subject of the token; a stream can only be opened for yourself',
    403,
  ),
  SSE_ERR_TOO_MANY_CONNECTIONS: createError(
    'SSE_ERR_TOO_MANY_CONNECTIONS',
    'The server holds its maximum of %d connections; retry later',
    503,
  ),
  SSE_ERR_USER_CONNECTION_LIMIT: createError(
    'SSE_ERR_USER_CONNECTION_LIMIT',
    'This user already has the maximum of %d open connections',
    429,
  ),
  SSE_ERR_IP_CONNECTION_LIMIT: createError(
    'SSE_ERR_IP_CONNECTION_LIMIT',
    'This address already has the maximum of %d anonymous connections',
    429,
  ),
  SSE_ERR_SHUTTING_DOWN: createError(
    'SSE_ERR_SHUTTING_DOWN',
    'The server is shutting down; retry shortly',
    503,
  ),
  SSE_ERR_RESERVED_EVENT: createError(
    'SSE_ERR_RESERVED_EVENT',
    'The event name "%s" is reserved (connected, heartbeat and disconnected are sent by the service)',
    400,
  ),
  SSE_ERR_INVALID_TARGET: createError(
    'SSE_ERR_INVALID_TARGET',
    'Give exactly one target: "broadcast": true, or non-empty "userIds" and/or "clientIds"',
    400,
  ),
  SSE_ERR_DATA_TOO_DEEP: createError('SSE_ERR_DATA_TOO_DEEP', 'data nests deeper than %d levels', 400),
  SSE_ERR_RATE_LIMITED: createError(
    'SSE_ERR_RATE_LIMITED',
    'Too many requests from this address; retry in %s',
    429,
  ),
  SSE_ERR_BUS_UNAVAILABLE: createError(
    'SSE_ERR_BUS_UNAVAILABLE',
    'The event bus is unavailable (%s), so this cannot reach every instance; retry shortly',
    503,
  ),
  SSE_ERR_REQUEST_TIMEOUT: createError(
    'SSE_ERR_REQUEST_TIMEOUT',
    'The request did not arrive whole within the request timeout',
    408,
  ),
  SSE_ERR_BAD_REQUEST: createError('SSE_ERR_BAD_REQUEST', 'The request is malformed', 400),
  SSE_ERR_NOT_FOUND: createError('SSE_ERR_NOT_FOUND', 'Route %s not found', 404),
  SSE_ERR_INTERNAL: createError('SSE_ERR_INTERNAL', 'Internal server error', 500),
} as const

export type ErrorCode = keyof typeof errors

/** A configuration value that stops startup; the message names the variable. */
export class ConfigError extends Error {
  readonly variable: string
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`)
    this.name = 'ConfigError'
    this.variable = variable
  }
}
