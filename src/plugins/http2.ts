import type { Http2SecureServer, ServerHttp2Session } from 'node:http2'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import fp from 'fastify-plugin'

export interface Http2PluginOptions {
  /** REQUEST_TIMEOUT_MS for HTTP/1.1 requests on the secure server (0 = no limit). */
  requestTimeoutMs: number
  /** How often Node looks for HTTP/1.1 requests past it. */
  checkingIntervalMs: number
  /**
   * How long a shutdown lets HTTP/2 streams deliver their last frames (`disconnected`)
   * before the connections still open are cut: only a client that stopped reading is.
   */
  graceMs: number
}

/**
 * The lifecycle of the secure server (HTTP/2 and HTTP/1.1 by ALPN), which Fastify's
 * `forceCloseConnections` does not cover: it only knows HTTP/1.1 sockets that asked for
 * keep-alive, and closes HTTP/2 sessions without a deadline. Registered after `ssePlugin`,
 * so its `preClose` runs once every stream has been sent `disconnected` and ended:
 * sessions then get GOAWAY and close as soon as their streams are flushed; HTTP/1.1
 * sockets are ended; whatever is still open after `graceMs` (a reader whose flow-control
 * window stays shut, a TCP connection that never began TLS) is destroyed.
 */
export const http2Plugin = fp<Http2PluginOptions>(
  async (app, { requestTimeoutMs, checkingIntervalMs, graceMs }) => {
    const server = app.server as unknown as Http2SecureServer & {
      requestTimeout: number
      headersTimeout: number
      connectionsCheckingInterval: number
    }
    // Node gives HTTP/1.1 on the secure server its own defaults (5 min); use the service's.
    server.requestTimeout = requestTimeoutMs
    server.headersTimeout = requestTimeoutMs > 0 ? Math.min(60_000, requestTimeoutMs) : 60_000
    server.connectionsCheckingInterval = checkingIntervalMs

    const connections = new Set<Socket>()
    const http1 = new Set<TLSSocket>()
    const sessions = new Set<ServerHttp2Session>()
    let closing = false
    let deadline: NodeJS.Timeout | undefined

    const cutTheRest = () => {
      clearTimeout(deadline)
      for (const socket of connections) socket.destroy()
    }
    const settled = () => {
      if (closing && sessions.size === 0 && http1.size === 0) cutTheRest()
    }
    // Shared listeners (no closure per connection); `this` is the emitter.
    function forgetConnection(this: Socket) {
      connections.delete(this)
    }
    function forgetHttp1(this: TLSSocket) {
      http1.delete(this)
      settled()
    }
    function forgetSession(this: ServerHttp2Session) {
      sessions.delete(this)
      settled()
    }

    server.on('connection', (socket: Socket) => {
      connections.add(socket)
      socket.once('close', forgetConnection)
    })
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'h2') return
      http1.add(socket)
      socket.once('close', forgetHttp1)
    })
    server.on('session', (session: ServerHttp2Session) => {
      sessions.add(session)
      session.once('close', forgetSession)
    })
    server.on('sessionError', (err: Error) => {
      app.log.debug(
        { err: { code: (err as NodeJS.ErrnoException).code, message: err.message } },
        'http2 session error',
      )
    })

    app.addHook('preClose', async () => {
      closing = true
      for (const session of sessions) session.close()
      for (const socket of http1) socket.end()
      deadline = setTimeout(cutTheRest, graceMs).unref()
      settled()
    })
  },
  { name: 'sse-http2', fastify: '5.x', dependencies: ['sse-manager'] },
)
