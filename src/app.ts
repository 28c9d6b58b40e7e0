import { randomUUID } from 'node:crypto'
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import cors from '@fastify/cors'
import rateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { TrustProxy } from './config/network.js'
import type { Config } from './config.js'
import { errors } from './errors.js'
import { createLogger, RequestLog, redactUrl } from './logger.js'
import { authPlugin } from './plugins/auth.js'
import { busPlugin } from './plugins/bus.js'
import { docsPlugin } from './plugins/docs.js'
import { http2Plugin } from './plugins/http2.js'
import { idempotencyPlugin } from './plugins/idempotency.js'
import { createSseMetrics, metricsPlugin } from './plugins/metrics.js'
import { ssePlugin } from './plugins/sse.js'
import { batchRoutes } from './routes/batch.js'
import { devTokenRoutes } from './routes/dev-token.js'
import { disconnectAllRoutes } from './routes/disconnect-all.js'
import { healthRoutes } from './routes/health.js'
import { pageRoutes } from './routes/pages.js'
import { sendRoutes } from './routes/send.js'
import { statsRoutes } from './routes/stats.js'
import { streamRoutes } from './routes/stream.js'
import { topicRoutes } from './routes/topics.js'
import { ErrorResponse } from './schemas.js'
import { fastifyTlsOptions } from './tls.js'

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
    allowedHeaders: ['authorization', 'content-type', 'last-event-id', 'cache-control', 'idempotency-key'],
    maxAge: 600,
  }
}

/** A client-sent request id is kept only when it is short and plain; anything else gets a fresh one. */
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

export function requestIdOf(request: IncomingMessage): string {
  const sent = request.headers['x-request-id']
  return typeof sent === 'string' && REQUEST_ID.test(sent) ? sent : randomUUID()
}

/**
 * Fastify takes addresses as they are but treats a bare hop count as "trust nobody"; a
 * count is given to it as the function proxy-addr would build: the nearest N hops.
 */
function trustProxyOption(trust: TrustProxy): false | string[] | ((address: string, hop: number) => boolean) {
  if (trust === false) return false
  if (typeof trust === 'number') return (_address, hop) => hop < trust
  return [...trust]
}

/** How often Node looks for requests past REQUEST_TIMEOUT_MS: a tenth of it, within 100 ms to 5 s. */
function checkingInterval(timeoutMs: number): number {
  return Math.min(5000, Math.max(100, Math.floor(timeoutMs / 10)))
}

/**
 * Answers what Node reports on a raw socket (a request past REQUEST_TIMEOUT_MS, a malformed or
 * oversized head) with the service's JSON error shape, once, then closes the socket.
 */
function clientErrorHandler(this: FastifyInstance, err: Error, socket: Socket): void {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ECONNRESET' || socket.destroyed) return
  const timeout = code === 'ERR_HTTP_REQUEST_TIMEOUT'
  const status = timeout ? 408 : code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
  const failure = timeout ? new errors.SSE_ERR_REQUEST_TIMEOUT() : new errors.SSE_ERR_BAD_REQUEST()
  this.log.info({ err: { code, message: err.message }, statusCode: status }, 'request rejected')
  // A response already on its way (a 404 or 401 answered before the body finished) cannot be
  // followed by another one on the same socket: just close it.
  const pending = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
  if (socket.writable && (pending == null || !pending.headersSent)) {
    const body = JSON.stringify({
      statusCode: status,
      error: STATUS_CODES[status],
      message: failure.message,
      code: failure.code,
    })
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}

/** Says at startup which permissive defaults are in force, and which are not. */
function warnAboutDefaults(app: FastifyInstance, config: Config): void {
  if (config.devLogin) {
    app.log.warn(
      config.jwt.ephemeral
        ? 'DEV_LOGIN is on (the default with a generated secret): POST /api/dev/token mints tokens for anyone'
        : 'DEV_LOGIN=true: POST /api/dev/token mints tokens signed with JWT_SECRET for anyone who asks',
    )
  } else if (!config.production && config.jwt.secret !== undefined && !config.jwt.ephemeral) {
    app.log.info('DEV_LOGIN is off: a JWT key is configured (set DEV_LOGIN=true to mint dev tokens)')
  }
  if (config.corsOrigins.includes('*')) {
    app.log.warn('CORS_ORIGINS is "*": any web page may open streams and call the API (without credentials)')
  } else if (config.corsOrigins.length === 0) {
    app.log.warn('CORS_ORIGINS is unset: no other origin may call the service (set it to the app origins)')
  }
  if (config.production && config.metricsToken === null) {
    app.log.warn('METRICS_TOKEN is unset: GET /metrics is open to anyone who can reach this instance')
  }
}

/** Builds the service from a config object. Tests call this; `server.ts` adds env and listening. */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: createLogger(config, {
      base: options.loggerInstance,
      pretty: options.prettyLogs ?? false,
    }),
    trustProxy: trustProxyOption(config.trustProxy),
    // A request (headers and body) must arrive whole within this; a stream, once its GET has
    // arrived, is not a request in progress and is never cut by it.
    requestTimeout: config.requestTimeoutMs,
    http: {
      requestTimeout: config.requestTimeoutMs,
      ...(config.requestTimeoutMs > 0
        ? { connectionsCheckingInterval: checkingInterval(config.requestTimeoutMs) }
        : {}),
    },
    // Streams are ended in preClose; whatever is left (a preconnect that never sent a request,
    // an idle keep-alive socket) must not hold a graceful shutdown open until it times out.
    // With TLS, http2Plugin does this for both protocols.
    forceCloseConnections: config.tls === null,
    // TLS_CERT and TLS_KEY: HTTPS, with HTTP/2 and HTTP/1.1 offered by ALPN.
    ...fastifyTlsOptions(config.tls),
    requestIdHeader: false,
    genReqId: requestIdOf,
    logController: new RequestLog(),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    clientErrorHandler,
  }) as unknown as FastifyInstance
  warnAboutDefaults(app, config)

  app.addSchema(ErrorResponse)

  // An empty JSON body (curl -X POST -H 'content-type: application/json') is "no body", not an error.
  // The API speaks JSON only: any other body is 415, and so is a compressed one (RFC 9110 15.5.16),
  // which would otherwise be read as text and refused as invalid JSON.
  app.removeContentTypeParser('text/plain')
  const defaultJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const encoding = request.headers['content-encoding']
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity')
      done(new errors.SSE_ERR_UNSUPPORTED_ENCODING(encoding.slice(0, 64)), undefined)
    else if (body === '') done(null, undefined)
    else defaultJson(request, body as string, done)
  })

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const status =
      err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
    const code = typeof err.code === 'string' ? err.code : ''
    // A 5xx says nothing of its cause unless it is one of this service's own, fixed messages.
    const known = code.startsWith('SSE_ERR_') || (status < 500 && code.startsWith('FST_'))
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
  await app.register(docsPlugin, { authCookie: config.jwt.cookie ?? null })
  await app.register(cors, corsOptions(config))
  // Per-IP limits, applied by the routes that opt in (publish and stream connects).
  await app.register(rateLimit, {
    global: false,
    timeWindow: config.rateLimitWindowMs,
    errorResponseBuilder: (_request, context) => new errors.SSE_ERR_RATE_LIMITED(context.after),
  })
  await app.register(authPlugin, { jwt: config.jwt, verifyCacheSize: config.jwtVerifyCacheSize })
  await app.register(busPlugin, { config })
  await app.register(idempotencyPlugin, { config })
  const metrics = createSseMetrics()
  await app.register(ssePlugin, { config, hooks: metrics.hooks })
  if (config.tls !== null) {
    // After ssePlugin: its preClose ends the streams before this one closes the connections.
    await app.register(http2Plugin, {
      requestTimeoutMs: config.requestTimeoutMs,
      checkingIntervalMs: config.requestTimeoutMs > 0 ? checkingInterval(config.requestTimeoutMs) : 30_000,
      graceMs: Math.min(2_000, Math.floor(config.shutdownTimeoutMs / 2)),
    })
  }
  await app.register(metricsPlugin, { metrics, token: config.metricsToken })

  await app.register(healthRoutes)
  await app.register(streamRoutes, { config })
  await app.register(sendRoutes, { config })
  await app.register(batchRoutes, { config })
  await app.register(statsRoutes)
  await app.register(disconnectAllRoutes)
  await app.register(topicRoutes, { config })
  await app.register(pageRoutes, { config })
  if (config.devLogin) await app.register(devTokenRoutes)
  return app
}
