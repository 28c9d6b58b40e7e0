import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { SCOPES } from '../plugins/auth.js'
import { errorResponses } from '../schemas.js'

export const StatsResponse = Type.Object({
  totalConnections: Type.Integer(),
  authenticatedConnections: Type.Integer(),
  anonymousConnections: Type.Integer(),
  uniqueUsers: Type.Integer(),
  users: Type.Array(Type.Object({ userId: Type.String(), connections: Type.Integer() }), {
    description: 'The 100 users with the most connections',
  }),
  topics: Type.Integer({ description: 'How many topics have subscribers on this instance' }),
  topTopics: Type.Array(Type.Object({ topic: Type.String(), connections: Type.Integer() }), {
    description: 'The 100 topics with the most subscribers on this instance',
  }),
  eventsPublished: Type.Integer(),
  eventsDelivered: Type.Integer(),
  slowClientsDisconnected: Type.Integer(),
  uptimeSeconds: Type.Integer(),
  instanceId: Type.String({ description: 'The instance that answered' }),
  startedAt: Type.String({ format: 'date-time' }),
  instances: Type.Array(
    Type.Object({
      instanceId: Type.String(),
      connections: Type.Integer(),
      reportedAt: Type.String({ format: 'date-time' }),
    }),
    { description: 'Every live instance (one without REDIS_URL); the others as of their last report' },
  ),
})

/** Connection and delivery statistics, behind `sse:admin`. */
export const statsRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    '/api/sse/stats',
    {
      preParsing: app.requireScope(SCOPES.admin),
      schema: {
        tags: ['admin'],
        summary: 'Connection and delivery statistics',
        security: [{ bearerAuth: [] }],
        response: { 200: StatsResponse, ...errorResponses(401, 403, 503) },
      },
    },
    async () => app.cluster.stats(),
  )
}
