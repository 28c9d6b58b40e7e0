import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { type Static, Type } from 'typebox'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import { type AuthInfo, SCOPES } from '../plugins/auth.js'
import { errorResponses, MAX_TARGET_IDS } from '../schemas.js'
import { isValidTopic, MAX_TOPIC_LENGTH, TopicPolicy } from '../sse/topics.js'

const Id = Type.String({ minLength: 1, maxLength: 256 })
const Topics = (description: string) =>
  Type.Optional(
    Type.Array(Type.String({ maxLength: MAX_TOPIC_LENGTH + 1 }), { maxItems: MAX_TARGET_IDS, description }),
  )

export const SubscriptionsBody = Type.Object(
  {
    clientIds: Type.Optional(
      Type.Array(Id, {
        maxItems: MAX_TARGET_IDS,
        description: 'Change these connections (clientId of connected)',
      }),
    ),
    userIds: Type.Optional(
      Type.Array(Id, { maxItems: MAX_TARGET_IDS, description: 'Change every connection of these users' }),
    ),
    add: Topics('Topics to subscribe to'),
    remove: Topics('Topics to unsubscribe from'),
  },
  { additionalProperties: false },
)
type SubscriptionsBody = Static<typeof SubscriptionsBody>

const SubscriptionsResult = Type.Object({
  matched: Type.Integer({ description: 'How many connections were changed, across the deployment' }),
})

export const PresenceResponse = Type.Object({
  topic: Type.String(),
  connections: Type.Integer({ description: 'Connections subscribed to the topic, on every instance' }),
  anonymous: Type.Integer({ description: 'Of those, anonymous ones' }),
  uniqueUsers: Type.Integer(),
  users: Type.Array(Type.Object({ userId: Type.String(), connections: Type.Integer() }), {
    description: 'The 100 users with the most connections to the topic',
  }),
})

function requireToken(request: FastifyRequest): AuthInfo {
  if (request.auth === null) throw new errors.SSE_ERR_TOKEN_REQUIRED('send "Authorization: Bearer <jwt>"')
  return request.auth
}

function checkTopics(topics: readonly string[]): void {
  for (const topic of topics) {
    if (!isValidTopic(topic)) throw new errors.SSE_ERR_INVALID_TOPIC(JSON.stringify(topic))
  }
}

/** Live subscription changes and topic presence. */
export const topicRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  const authenticate = async (request: FastifyRequest) => {
    await app.authenticate(request)
  }

  app.post(
    '/api/sse/subscriptions',
    {
      config: config.rateLimitPublish > 0 ? { rateLimit: { max: config.rateLimitPublish } } : {},
      preParsing: authenticate,
      schema: {
        tags: ['topics'],
        summary: 'Change the topics of live connections (no reconnect); each gets event: subscriptions',
        description:
          'sse:admin may change any connection on every instance. Any other token may change only its own ' +
          'connections (userIds must be [its sub], clientIds its own) and add only topics its patterns allow.',
        security: [{ bearerAuth: [] }],
        body: SubscriptionsBody,
        response: { 200: SubscriptionsResult, ...errorResponses(400, 401, 403, 409, 415, 429, 503) },
      },
    },
    async (request) => {
      const auth = requireToken(request)
      const body = (request.body ?? {}) as SubscriptionsBody
      const add = [...new Set(body.add ?? [])]
      const remove = [...new Set(body.remove ?? [])]
      const clientIds = body.clientIds ?? []
      const userIds = body.userIds ?? []
      if ((clientIds.length === 0 && userIds.length === 0) || (add.length === 0 && remove.length === 0)) {
        throw new errors.SSE_ERR_INVALID_SUBSCRIPTIONS()
      }
      checkTopics(add)
      checkTopics(remove)
      const admin = auth.scopes.includes(SCOPES.admin)
      if (!admin) {
        if (userIds.some((id) => id !== auth.userId)) {
          throw new errors.SSE_ERR_NOT_OWN_CONNECTION(`userIds must be ["${auth.userId}"]`)
        }
        for (const id of clientIds) {
          const client = app.sse.getClient(id)
          if (client !== undefined && client.userId !== auth.userId) {
            throw new errors.SSE_ERR_NOT_OWN_CONNECTION(`connection ${id} is not yours`)
          }
        }
        const forbidden = new TopicPolicy(
          [...config.publicTopics, ...auth.topics],
          auth.userId,
        ).firstForbidden(add)
        if (forbidden !== undefined) throw new errors.SSE_ERR_TOPIC_FORBIDDEN(forbidden)
      }
      const outcome = await app.cluster.changeSubscriptions({
        ...(clientIds.length > 0 ? { clientIds: [...new Set(clientIds)] } : {}),
        ...(userIds.length > 0 ? { userIds: [...new Set(userIds)] } : {}),
        add,
        remove,
        owner: admin ? null : auth.userId,
      })
      if (outcome.tooMany) throw new errors.SSE_ERR_TOO_MANY_TOPICS(config.maxTopicsPerConnection)
      return { matched: outcome.matched }
    },
  )

  app.get(
    '/api/sse/topics/:topic/presence',
    {
      preParsing: authenticate,
      schema: {
        tags: ['topics'],
        summary: 'Who is subscribed to a topic (the topic URL-encoded as one path segment: orders%2F42)',
        description:
          'sse:admin, or a token whose topic patterns allow the topic. Summed over every instance.',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ topic: Type.String() }),
        response: { 200: PresenceResponse, ...errorResponses(400, 401, 403, 503) },
      },
    },
    async (request) => {
      const auth = requireToken(request)
      const { topic } = request.params as { topic: string }
      if (!isValidTopic(topic))
        throw new errors.SSE_ERR_INVALID_TOPIC(JSON.stringify(String(topic).slice(0, 300)))
      if (!auth.scopes.includes(SCOPES.admin) && !new TopicPolicy(auth.topics, auth.userId).allows(topic)) {
        throw new errors.SSE_ERR_TOPIC_FORBIDDEN(topic)
      }
      return app.cluster.presence(topic)
    },
  )
}
