import type { FastifyPluginAsync } from 'fastify'
import { type Static, Type } from 'typebox'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import { SCOPES } from '../plugins/auth.js'
import { IdempotencyHeaders } from '../plugins/idempotency.js'
import { EVENT_NAME_SOURCE, errorResponses, MAX_TARGET_IDS } from '../schemas.js'
import { isReservedEvent } from '../sse/frame.js'
import type { EventTarget } from '../sse/target.js'
import { isValidTopic, MAX_TOPIC_LENGTH } from '../sse/topics.js'

const Id = Type.String({ minLength: 1, maxLength: 256 })

export const SendBody = Type.Object(
  {
    event: Type.String({
      pattern: EVENT_NAME_SOURCE,
      description:
        'Event name: 1 to 64 letters, digits and _ - . : / (connected, heartbeat, disconnected, subscriptions, presence are reserved)',
    }),
    data: Type.Unknown({ description: 'Any JSON value; sent to clients as JSON' }),
    broadcast: Type.Optional(Type.Boolean({ description: 'true to send to every connection' })),
    userIds: Type.Optional(
      Type.Array(Id, { maxItems: MAX_TARGET_IDS, description: 'Send to every connection of these users' }),
    ),
    clientIds: Type.Optional(
      Type.Array(Id, {
        maxItems: MAX_TARGET_IDS,
        description: 'Send to these connections (the clientId of connected)',
      }),
    ),
    topics: Type.Optional(
      Type.Array(Type.String({ maxLength: MAX_TOPIC_LENGTH + 1 }), {
        maxItems: MAX_TARGET_IDS,
        description:
          'Send to every connection subscribed to one of these topics (with userIds/clientIds: the union, each connection once)',
      }),
    ),
  },
  { additionalProperties: false },
)
export type SendBody = Static<typeof SendBody>

export const SendResult = Type.Object({
  id: Type.String({ description: 'The event id, as sent in the id: field' }),
  delivered: Type.Integer({ description: 'How many connections of this instance it was written to' }),
})

/** Whether `value` nests arrays/objects deeper than `max`; iterative, so hostile input cannot overflow the stack. */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number]
    if (current === null || typeof current !== 'object') continue
    if (depth + 1 > max) return true
    for (const child of Object.values(current)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1])
    }
  }
  return false
}

/** Turns a validated body into one target, or refuses an ambiguous one. */
export function targetOf(
  body: Pick<SendBody, 'broadcast' | 'userIds' | 'clientIds' | 'topics'>,
): EventTarget {
  const users = body.userIds ?? []
  const clients = body.clientIds ?? []
  const topics = body.topics ?? []
  for (const topic of topics) {
    if (!isValidTopic(topic)) throw new errors.SSE_ERR_INVALID_TOPIC(JSON.stringify(topic))
  }
  if (body.broadcast === true) {
    if (users.length > 0 || clients.length > 0 || topics.length > 0) throw new errors.SSE_ERR_INVALID_TARGET()
    return { broadcast: true }
  }
  if (users.length === 0 && clients.length === 0 && topics.length === 0)
    throw new errors.SSE_ERR_INVALID_TARGET()
  const target: { userIds?: string[]; clientIds?: string[]; topics?: string[] } = {}
  if (users.length > 0) target.userIds = unique(users)
  if (clients.length > 0) target.clientIds = unique(clients)
  if (topics.length > 0) target.topics = unique(topics)
  return target
}

/** Each id once, in first-seen order (a list of one, the common case, is kept as it is). */
function unique(ids: string[]): string[] {
  return ids.length === 1 ? ids : [...new Set(ids)]
}

/**
 * The checks every published event passes after its schema, for `POST /api/sse` and each item
 * of a batch alike: not a reserved name, one clear target, data no deeper than MAX_DATA_DEPTH.
 */
export function checkEvent(body: SendBody, maxDataDepth: number): EventTarget {
  if (isReservedEvent(body.event)) throw new errors.SSE_ERR_RESERVED_EVENT(body.event)
  const target = targetOf(body)
  if (nestsDeeperThan(body.data, maxDataDepth)) throw new errors.SSE_ERR_DATA_TOO_DEEP(maxDataDepth)
  return target
}

export const sendRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  app.post(
    '/api/sse',
    {
      bodyLimit: config.maxPayloadBytes,
      config: config.rateLimitPublish > 0 ? { rateLimit: { max: config.rateLimitPublish } } : {},
      preParsing: app.requireScope(SCOPES.publish),
      preValidation: app.idempotency.checkKey,
      schema: {
        tags: ['publish'],
        summary: 'Publish an event to everyone, to users, to connections, or to topics',
        security: [{ bearerAuth: [] }],
        headers: IdempotencyHeaders,
        body: SendBody,
        response: { 202: SendResult, ...errorResponses(400, 401, 403, 409, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body as SendBody
      const target = checkEvent(body, config.maxDataDepth)
      // Through the bus: every instance delivers it; 503 when the bus cannot take it. With an
      // Idempotency-Key, a repeat answers the first result and publishes nothing.
      const answer = await app.idempotency.run(request, reply, {
        route: 'send',
        publish: async (send) => ({
          statusCode: 202,
          body: await app.cluster.publish(body.event, body.data, target, send),
        }),
        fromIds: (ids) => ({ statusCode: 202, body: { id: ids[0], delivered: 0 } }),
      })
      return reply.code(answer.statusCode as 202).send(answer.body)
    },
  )
}
