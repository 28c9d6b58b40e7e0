import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import { errorResponses } from '../schemas.js'

const StreamQuery = Type.Object(
  {
    token: Type.Optional(
      Type.String({ description: 'A JWT, for browsers whose EventSource cannot send headers' }),
    ),
    userId: Type.Optional(
      Type.String({
        maxLength: 256,
        description: 'An assertion: must equal the token subject, or the answer is 403',
      }),
    ),
    lastEventId: Type.Optional(
      Type.String({ description: 'Resume after this event id (the Last-Event-ID header takes precedence)' }),
    ),
  },
  { additionalProperties: true },
)

const STREAM_DESCRIPTION = `A server-sent events stream (text/event-stream). The first bytes are a \`retry:\` hint
and \`event: connected\` with \`{clientId, userId, anonymous, timestamp, lastEventId, recovered, replayed}\`.
Then: published events (named by their publisher, data is JSON, each with an \`id:\`),
\`event: heartbeat\` with \`{timestamp}\` every HEARTBEAT_INTERVAL_MS, and finally
\`event: disconnected\` with \`{reason, message, timestamp}\` when the server ends the stream
(reasons: server_disconnect, server_shutdown, lifetime, token_expired).`

/** Headers of every stream; CORS headers set by hooks are merged in, since the reply is hijacked. */
const STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
} as const

/** The CORS headers hooks set on the reply: the only ones a hijacked stream carries over. */
function corsHeadersOf(headers: Record<string, unknown>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (const name in headers) {
    if (name.startsWith('access-control-') || name === 'vary') out[name] = headers[name] as string
  }
  return out
}

/**
 * Fastify keeps each reply, with its request and request logger, reachable through
 * `finish`/`error` listeners until the response finishes: for a stream, hours of about
 * 2 KB per idle connection. A hijacked stream logs its own end, so those go.
 */
function releaseFastifyListeners(res: ServerResponse): void {
  for (const event of ['finish', 'error'] as const) {
    for (const listener of res.listeners(event)) {
      if (listener.name === 'onResFinished')
        res.removeListener(event, listener as (...args: unknown[]) => void)
    }
  }
}

export const streamRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  app.get(
    '/api/sse',
    {
      config: config.rateLimitConnect > 0 ? { rateLimit: { max: config.rateLimitConnect } } : {},
      schema: {
        tags: ['stream'],
        summary: 'Open an event stream',
        description: STREAM_DESCRIPTION,
        querystring: StreamQuery,
        headers: Type.Object(
          { 'last-event-id': Type.Optional(Type.String()) },
          { additionalProperties: true },
        ),
        response: {
          200: {
            description: STREAM_DESCRIPTION,
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          ...errorResponses(401, 403, 429, 503),
        },
      },
      // After the per-IP rate limit (an onRequest hook), so that refused tokens are counted too.
      preParsing: async (request) => {
        app.authenticate(request, { allowQueryToken: true })
      },
    },
    async (request, reply) => {
      const manager = app.sse
      if (manager.closing) throw new errors.SSE_ERR_SHUTTING_DOWN()
      const auth = request.auth
      const { userId } = request.query as { userId?: string }
      if (auth === null) {
        if (userId !== undefined) {
          throw new errors.SSE_ERR_TOKEN_REQUIRED(
            'userId can only be used with a token whose subject it matches',
          )
        }
        if (!config.allowAnonymous) throw new errors.SSE_ERR_TOKEN_REQUIRED('anonymous streams are disabled')
      } else if (userId !== undefined && userId !== auth.userId) {
        throw new errors.SSE_ERR_USER_MISMATCH()
      }
      if (manager.size >= config.maxConnections)
        throw new errors.SSE_ERR_TOO_MANY_CONNECTIONS(config.maxConnections)
      if (auth !== null && manager.userConnectionCount(auth.userId) >= config.maxConnectionsPerUser) {
        throw new errors.SSE_ERR_USER_CONNECTION_LIMIT(config.maxConnectionsPerUser)
      }
      if (auth === null && manager.anonymousConnectionCount(request.ip) >= config.maxAnonymousPerIp) {
        throw new errors.SSE_ERR_IP_CONNECTION_LIMIT(config.maxAnonymousPerIp)
      }
      // MAX_CONNECTIONS_PER_USER across every instance (always true without Redis).
      if (auth !== null && !(await app.cluster.acquireUser(auth.userId))) {
        throw new errors.SSE_ERR_USER_CONNECTION_LIMIT(config.maxConnectionsPerUser)
      }
      if (auth !== null && request.raw.socket.destroyed) {
        // Gone while the slot was being taken: give it back, there is no one to stream to.
        app.cluster.releaseUser(auth.userId)
        return reply
      }

      const header = request.headers['last-event-id']
      const lastEventId =
        (typeof header === 'string' ? header : undefined) ??
        (request.query as { lastEventId?: string }).lastEventId

      reply.hijack()
      const res = reply.raw
      releaseFastifyListeners(res)
      const socket = request.raw.socket
      socket.setNoDelay(true)
      // Finds peers that vanished without a FIN even when nothing is being written.
      socket.setKeepAlive(true, 30_000)
      const headers: OutgoingHttpHeaders = {
        ...corsHeadersOf(reply.getHeaders()),
        ...STREAM_HEADERS,
      }
      res.writeHead(200, headers)
      try {
        manager.connect(res, {
          userId: auth?.userId ?? null,
          ip: request.ip,
          scopes: auth?.scopes ?? [],
          tokenExpiresAt: auth?.expiresAt,
          lastEventId: lastEventId ?? null,
        })
      } catch (err) {
        // The reply is hijacked: Fastify can no longer answer, so end the stream here.
        request.log.error({ err }, 'could not start the stream')
        res.destroy()
      }
      return reply
    },
  )
}
