import type { FastifyPluginAsync } from 'fastify'
import { type Static, Type } from 'typebox'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import { SCOPES } from '../plugins/auth.js'
import { EVENT_NAME_SOURCE, errorResponses, MAX_TARGET_IDS } from '../schemas.js'
import { isReservedEvent } from '../sse/frame.js'
import type { EventTarget } from '../sse/target.js'

const Id = Type.String({ minLength: 1, maxLength: 256 })

export const SendBody = Type.Object(
  {
    event: Type.String({
      pattern: EVENT_NAME_SOURCE,
      description:
        'Event name: 1 to 64 letters, digits and _ - . : / (connected, heartbeat, disconnected are reserved)',
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
export function targetOf(body: SendBody): EventTarget {
  const users = body.userIds ?? []
  const clients = body.clientIds ?? []
  if (body.broadcast === true) {
    if (users.length > 0 || clients.length > 0) throw new errors.SSE_ERR_INVALID_TARGET()
    return { broadcast: true }
  }
  if (users.length === 0 && clients.length === 0) throw new errors.SSE_ERR_INVALID_TARGET()
  return {
    ...(users.length > 0 ? { userIds: [...new Set(users)] } : {}),
    ...(clients.length > 0 ? { clientIds: [...new Set(clients)] } : {}),
  }
}

export const sendRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  app.post(
    '/api/sse',
    {
      bodyLimit: config.maxPayloadBytes,
      config: config.rateLimitPublish > 0 ? { rateLimit: { max: config.rateLimitPublish } } : {},
      preParsing: app.requireScope(SCOPES.publish),
      schema: {
        tags: ['publish'],
        summary: 'Publish an event to everyone, to users, or to connections',
        security: [{ bearerAuth: [] }],
        body: SendBody,
        response: { 202: SendResult, ...errorResponses(400, 401, 403, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body as SendBody
      if (isReservedEvent(body.event)) throw new errors.SSE_ERR_RESERVED_EVENT(body.event)
      const target = targetOf(body)
      if (nestsDeeperThan(body.data, config.maxDataDepth))
        throw new errors.SSE_ERR_DATA_TOO_DEEP(config.maxDataDepth)
      // Through the bus: every instance delivers it; 503 when the bus cannot take it.
      const result = await app.cluster.publish(body.event, body.data, target)
      return reply.code(202).send(result)
    },
  )
}
