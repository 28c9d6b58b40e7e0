import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { SCOPES } from '../plugins/auth.js'
import { errorResponses } from '../schemas.js'

/** Ends every stream with `event: disconnected`, behind `sse:admin`. */
export const disconnectAllRoutes: FastifyPluginAsync = async (app) => {
  app.post(
    '/api/sse/disconnect-all',
    {
      preParsing: app.requireScope(SCOPES.admin),
      schema: {
        tags: ['admin'],
        summary: 'End every stream with event: disconnected (reason server_disconnect)',
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object({ disconnected: Type.Integer() }),
          ...errorResponses(401, 403, 503),
        },
      },
    },
    async (request) => {
      // Every instance ends its streams; the answer is the total.
      const disconnected = await app.cluster.disconnectAll()
      request.log.info({ disconnected }, 'disconnected every stream')
      return { disconnected }
    },
  )
}
