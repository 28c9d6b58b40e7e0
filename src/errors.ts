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
    'The event name "%s" is reserved (connected, heartbeat, disconnected, subscriptions and presence are sent by the service)',
    400,
  ),
  SSE_ERR_INVALID_TARGET: createError(
    'SSE_ERR_INVALID_TARGET',
    'Give exactly one target: "broadcast": true, or non-empty "userIds", "clientIds" and/or "topics"',
    400,
  ),
  SSE_ERR_INVALID_TOPIC: createError(
    'SSE_ERR_INVALID_TOPIC',
    'Invalid topic: %s (a topic is 1 to 256 letters, digits and _ - . : @ /, in segments split by /, none empty)',
    400,
  ),
  SSE_ERR_TOPIC_FORBIDDEN: createError(
    'SSE_ERR_TOPIC_FORBIDDEN',
    'Subscribing to the topic "%s" is not allowed for this token',
    403,
  ),
  SSE_ERR_TOO_MANY_TOPICS: createError(
    'SSE_ERR_TOO_MANY_TOPICS',
    'The change would take a connection past %d topics (MAX_TOPICS_PER_CONNECTION); nothing changed',
    409,
  ),
  SSE_ERR_INVALID_SUBSCRIPTIONS: createError(
    'SSE_ERR_INVALID_SUBSCRIPTIONS',
    'Give at least one selector ("clientIds" or "userIds") and one of "add" or "remove"',
    400,
  ),
  SSE_ERR_NOT_OWN_CONNECTION: createError(
    'SSE_ERR_NOT_OWN_CONNECTION',
    'Without sse:admin a token may change only its own connections: %s',
    403,
  ),
  SSE_ERR_INVALID_EVENT: createError('SSE_ERR_INVALID_EVENT', 'Invalid event in the batch: %s', 400),
  SSE_ERR_EVENT_TOO_LARGE: createError(
    'SSE_ERR_EVENT_TOO_LARGE',
    'The event is larger than MAX_PAYLOAD_BYTES (%d bytes)',
    413,
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
  SSE_ERR_BUS_BACKLOG: createError(
    'SSE_ERR_BUS_BACKLOG',
    'Too many publishes are waiting (%s); nothing was stored; retry shortly',
    503,
  ),
  SSE_ERR_REPLICAS_UNAVAILABLE: createError(
    'SSE_ERR_REPLICAS_UNAVAILABLE',
    'Fewer than REDIS_WAIT_REPLICAS replicas hold the event: %s',
    503,
  ),
  SSE_ERR_INVALID_IDEMPOTENCY_KEY: createError(
    'SSE_ERR_INVALID_IDEMPOTENCY_KEY',
    'Idempotency-Key must be 1 to 128 visible ASCII characters (no spaces)',
    400,
  ),
  SSE_ERR_IDEMPOTENCY_MISMATCH: createError(
    'SSE_ERR_IDEMPOTENCY_MISMATCH',
    'This Idempotency-Key was used with a different body; use a new key for a new request',
    422,
  ),
  SSE_ERR_IDEMPOTENCY_IN_FLIGHT: createError(
    'SSE_ERR_IDEMPOTENCY_IN_FLIGHT',
    'The first request with this Idempotency-Key is still being processed; retry shortly',
    409,
  ),
  SSE_ERR_REQUEST_TIMEOUT: createError(
    'SSE_ERR_REQUEST_TIMEOUT',
    'The request did not arrive whole within the request timeout',
    408,
  ),
  SSE_ERR_BAD_REQUEST: createError('SSE_ERR_BAD_REQUEST', 'The request is malformed', 400),
  SSE_ERR_UNSUPPORTED_ENCODING: createError(
    'SSE_ERR_UNSUPPORTED_ENCODING',
    'Content-Encoding "%s" is not supported: send the JSON body uncompressed',
    415,
  ),
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
