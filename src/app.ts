import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import cors from '@fastify/cors'
import rateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { errors } from './errors.js'
import { createLogger, redactUrl } from './logger.js'
import { authPlugin } from './plugins/auth.js'
import { busPlugin } from './plugins/bus.js'
import { docsPlugin } from './plugins/docs.js'
import { createSseMetrics, metricsPlugin } from './plugins/metrics.js'
import { ssePlugin } from './plugins/sse.js'
import { devTokenRoutes } from './routes/dev-token.js'
import { disconnectAllRoutes } from './routes/disconnect-all.js'
import { healthRoutes } from './routes/health.js'
import { pageRoutes } from './routes/pages.js'
import { sendRoutes } from './routes/send.js'
import { statsRoutes } from './routes/stats.js'
import { streamRoutes } from './routes/stream.js'
import { ErrorResponse } from './schemas.js'

export interface BuildOptions {
  /** A pino logger to use (tests pass one writing to memory); otherwise one is made from the config. */
  loggerInstance?: Logger
  /** Pretty, human-friendly logs (development). */
  prettyLogs?: boolean
}

function corsOptions(config: Config) {
  const any = config.corsOrigins.includes('*')
  const allowed = new Set(config.corsOrigins)
  return {
    // `Origin: null` (sandboxed frames, file: pages) is never trusted, even with `*`.
    origin: (origin: string | undefined, cb: (err: Error | null, allow: boolean | string) => void) => {
      if (origin === undefined) cb(null, false)
      else if (origin === 'null') cb(null, false)
      else if (any) cb(null, '*')
      else cb(null, allowed.has(origin))
    },
    credentials: !any,
    methods: ['GET', 'POST', 'OPTIONS'],
    allowedHeaders: ['authorization', 'content-type', 'last-event-id', 'cache-control'],
    maxAge: 600,
  }
}

/** Builds the service from a config object. Tests call this; `server.ts` adds env and listening. */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: createLogger(config, {
      base: options.loggerInstance,
      pretty: options.prettyLogs ?? false,
    }),
    trustProxy: config.trustProxy,
    // Streams are ended in preClose; whatever is left (a preconnect that never sent a request,
    // an idle keep-alive socket) must not hold a graceful shutdown open until it times out.
    forceCloseConnections: true,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  }) as unknown as FastifyInstance

  app.addSchema(ErrorResponse)

  // An empty JSON body (curl -X POST -H 'content-type: application/json') is "no body", not an error.
  // The API speaks JSON only: any other body is 415.
  app.removeContentTypeParser('text/plain')
  const defaultJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') done(null, undefined)
    else defaultJson(request, body as string, done)
  })

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const status =
      err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
    const known =
      typeof err.code === 'string' && (err.code.startsWith('SSE_ERR_') || err.code.startsWith('FST_'))
    if (status >= 500 && !known) {
      request.log.error({ err }, 'request failed')
      const internal = new errors.SSE_ERR_INTERNAL()
      return reply.code(500).send({
        statusCode: 500,
        error: STATUS_CODES[500],
        message: internal.message,
        code: internal.code,
      })
    }
    request.log.info(
      { err: { code: err.code, message: err.message }, statusCode: status },
      'request rejected',
    )
    return reply.code(status).send({
      statusCode: status,
      error: STATUS_CODES[status] ?? 'Error',
      message: err.message,
      code: err.code ?? 'SSE_ERR_BAD_REQUEST',
    })
  })

  app.setNotFoundHandler((request, reply) => {
    const err = new errors.SSE_ERR_NOT_FOUND(`${request.method} ${redactUrl(request.url)}`)
    reply.code(404).send({ statusCode: 404, error: STATUS_CODES[404], message: err.message, code: err.code })
  })

  // Before every route: it collects them as they are added.
  await app.register(docsPlugin)
  await app.register(cors, corsOptions(config))
  // Per-IP limits, applied by the routes that opt in (publish and stream connects).
  await app.register(rateLimit, {
    global: false,
    timeWindow: config.rateLimitWindowMs,
    errorResponseBuilder: (_request, context) => new errors.SSE_ERR_RATE_LIMITED(context.after),
  })
  await app.register(authPlugin, { jwt: config.jwt })
  await app.register(busPlugin, { config })
  const metrics = createSseMetrics()
  await app.register(ssePlugin, { config, hooks: metrics.hooks })
  await app.register(metricsPlugin, { metrics, token: config.metricsToken })

  await app.register(healthRoutes)
  await app.register(streamRoutes, { config })
  await app.register(sendRoutes, { config })
  await app.register(statsRoutes)
  await app.register(disconnectAllRoutes)
  await app.register(pageRoutes, { config })
  if (config.devLogin) await app.register(devTokenRoutes)
  return app
}
