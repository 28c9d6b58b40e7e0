import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'

/** Liveness: about the process alone, never about its dependencies. */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    '/health',
    {
      logLevel: 'warn',
      schema: {
        tags: ['operations'],
        summary: 'Liveness probe',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  )

  const Ready = Type.Object({
    status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
    bus: Type.Union([Type.Literal('memory'), Type.Literal('redis')]),
    reason: Type.Optional(Type.String({ description: 'Why the instance is not ready' })),
  })

  // Readiness: whether this instance can do its job now (Redis reachable, not shutting
  // down). A load balancer stops sending it traffic on 503; open streams are not touched.
  app.get(
    '/ready',
    {
      logLevel: 'warn',
      schema: {
        tags: ['operations'],
        summary: 'Readiness probe: 503 with a reason while Redis is unreachable or the server is stopping',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_request, reply) => {
      const { ready, reason } = app.cluster.readiness()
      const bus = app.cluster.bus.kind
      if (ready) return { status: 'ready' as const, bus }
      return reply.code(503).send({ status: 'unavailable' as const, bus, reason: reason ?? 'not ready' })
    },
  )
}
