import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Http2ServerResponse } from 'node:http2'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import { errorResponses } from '../schemas.js'
import type { SseSink } from '../sse/client.js'
import { isValidTopic, TopicPolicy } from '../sse/topics.js'
import { clientGone, Http2Sink, isHttp2 } from './http2-sink.js'

const StreamQuery = Type.Object(
  {
    token: Type.Optional(
      Type.String({
        description:
          'A JWT, for browsers whose EventSource cannot send headers (URLs are logged by proxies: prefer AUTH_COOKIE)',
      }),
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
    topic: Type.Optional(
      Type.Union([Type.String(), Type.Array(Type.String())], {
        description:
          'A topic to subscribe to; repeat the parameter for more (at most MAX_TOPICS_PER_CONNECTION). ' +
          "Each must be allowed by the token's topics claim or PUBLIC_TOPICS, else 403",
      }),
    ),
  },
  { additionalProperties: true },
)

const STREAM_DESCRIPTION = `A server-sent events stream (text/event-stream). The first bytes are a \`retry:\` hint
and \`event: connected\` with \`{clientId, userId, anonymous, timestamp, lastEventId, recovered, replayed, topics}\`.
Then: published events (named by their publisher, data is JSON, each with an \`id:\`),
\`event: heartbeat\` with \`{timestamp}\` every HEARTBEAT_INTERVAL_MS,
\`event: subscriptions\` with \`{topics, added, removed}\` when POST /api/sse/subscriptions changes this stream's topics,
\`event: presence\` with \`{topic, userId, action, connections}\` on PRESENCE_TOPICS, and finally
\`event: disconnected\` with \`{reason, message, timestamp}\` when the server ends the stream
(reasons: server_disconnect, server_shutdown, lifetime, token_expired).`

type RawResponse = ServerResponse & { writeRaw?: (bytes: Buffer) => boolean }

/**
 * Writes pre-framed HTTP/1.1 chunks to the response's socket, as `res.write` would after
 * framing them itself; `res.end()` still writes the last chunk. One function for every
 * response: no closure per connection.
 */
function writeRaw(this: ServerResponse, bytes: Buffer): boolean {
  const socket = this.socket
  return socket === null || socket.destroyed ? false : socket.write(bytes)
}

/** The `topic` parameters, each valid, without repeats, at most `max`; 400 otherwise. */
function topicsOf(query: { topic?: string | string[] }, max: number): string[] {
  const raw = query.topic
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]
  const topics = [...new Set(list)]
  if (topics.length > max) {
    throw new errors.SSE_ERR_INVALID_TOPIC(
      `more than ${max} topics on one connection (MAX_TOPICS_PER_CONNECTION)`,
    )
  }
  for (const topic of topics) {
    if (!isValidTopic(topic))
      throw new errors.SSE_ERR_INVALID_TOPIC(JSON.stringify(String(topic).slice(0, 300)))
  }
  return topics
}

/** Headers of every stream; CORS headers set by hooks are merged in, since the reply is hijacked. */
const STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
} as const

/** A HEAD's answer: the stream's headers, but the connection is Node's to manage as for any reply. */
const { connection: _connection, ...HEAD_HEADERS } = STREAM_HEADERS

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
function releaseFastifyListeners(res: ServerResponse | Http2ServerResponse): void {
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
        // Any one of these, or none (anonymous, when ALLOW_ANONYMOUS): header, then ?token=, then the cookie.
        security: [{ bearerAuth: [] }, { queryToken: [] }, { authCookie: [] }, {}],
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
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
      // After the per-IP rate limit (an onRequest hook), so that refused tokens are counted too.
      preParsing: async (request) => {
        await app.authenticate(request, { allowQueryToken: true, allowCookie: true })
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
      const topics = topicsOf(request.query as { topic?: string | string[] }, config.maxTopicsPerConnection)
      if (topics.length > 0) {
        const policy = new TopicPolicy(
          [...config.publicTopics, ...(auth?.topics ?? [])],
          auth?.userId ?? null,
        )
        const forbidden = policy.firstForbidden(topics)
        if (forbidden !== undefined) throw new errors.SSE_ERR_TOPIC_FORBIDDEN(forbidden)
      }
      if (manager.size >= config.maxConnections)
        throw new errors.SSE_ERR_TOO_MANY_CONNECTIONS(config.maxConnections)
      if (auth !== null && manager.userConnectionCount(auth.userId) >= config.maxConnectionsPerUser) {
        throw new errors.SSE_ERR_USER_CONNECTION_LIMIT(config.maxConnectionsPerUser)
      }
      if (auth === null && manager.anonymousConnectionCount(request.ip) >= config.maxAnonymousPerIp) {
        throw new errors.SSE_ERR_IP_CONNECTION_LIMIT(config.maxAnonymousPerIp)
      }
      if (request.method === 'HEAD') {
        // What a GET would answer, without its stream: a HEAD has no body, so nothing is held open.
        return reply.code(200).headers(HEAD_HEADERS).send()
      }
      // MAX_CONNECTIONS_PER_USER across every instance (always true without Redis).
      if (auth !== null && !(await app.cluster.acquireUser(auth.userId))) {
        throw new errors.SSE_ERR_USER_CONNECTION_LIMIT(config.maxConnectionsPerUser)
      }
      if (auth !== null && clientGone(request.raw)) {
        // Gone while the slot was being taken: give it back, there is no one to stream to.
        app.cluster.releaseUser(auth.userId)
        return reply
      }

      const header = request.headers['last-event-id']
      const lastEventId =
        (typeof header === 'string' ? header : undefined) ??
        (request.query as { lastEventId?: string }).lastEventId

      reply.hijack()
      const res = reply.raw as ServerResponse | Http2ServerResponse
      releaseFastifyListeners(res)
      const headers: OutgoingHttpHeaders = {
        ...corsHeadersOf(reply.getHeaders()),
        ...STREAM_HEADERS,
      }
      let sink: SseSink
      if (isHttp2(res)) {
        // One socket carries many streams: its options are set once per connection (src/tls.ts).
        sink = Http2Sink.open(res, headers)
      } else {
        const socket = request.raw.socket
        socket.setNoDelay(true)
        // Finds peers that vanished without a FIN even when nothing is being written.
        socket.setKeepAlive(true, 30_000)
        res.writeHead(200, headers)
        sink = res
        if (res.chunkedEncoding) {
          // Headers out now; from here the core writes its own chunks, framed once for all.
          res.flushHeaders()
          ;(res as RawResponse).writeRaw = writeRaw
        }
      }
      try {
        manager.connect(sink, {
          userId: auth?.userId ?? null,
          ip: request.ip,
          scopes: auth?.scopes ?? [],
          tokenExpiresAt: auth?.expiresAt,
          lastEventId: lastEventId ?? null,
          topics,
        })
      } catch (err) {
        // The reply is hijacked: Fastify can no longer answer, so end the stream here.
        request.log.error({ err }, 'could not start the stream')
        sink.destroy()
      }
      return reply
    },
  )
}
