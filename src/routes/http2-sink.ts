import { EventEmitter } from 'node:events'
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { constants, Http2ServerRequest, Http2ServerResponse, type ServerHttp2Stream } from 'node:http2'
import type { SseSink } from '../sse/client.js'

/** Connection-specific headers, which HTTP/2 forbids in a response (RFC 9113, 8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
])

export function isHttp2(res: ServerResponse | Http2ServerResponse): res is Http2ServerResponse {
  return res instanceof Http2ServerResponse
}

/** Whether the client went away: its own HTTP/2 stream (the session's socket is shared), or its socket. */
export function clientGone(req: IncomingMessage | Http2ServerRequest): boolean {
  return req instanceof Http2ServerRequest ? req.stream.destroyed || req.stream.closed : req.socket.destroyed
}

/** The same response headers without the ones HTTP/2 forbids. */
export function http2Headers(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (const name in headers) {
    if (!CONNECTION_SPECIFIC.has(name.toLowerCase())) out[name] = headers[name]
  }
  return out
}

const kSink = Symbol('sse.http2Sink')
type TaggedStream = ServerHttp2Stream & { [kSink]?: Http2Sink }

// Shared by every stream, so that a connection costs no closures.
function forwardClose(this: TaggedStream): void {
  this[kSink]?.emit('close')
}
function forwardError(this: TaggedStream, err: Error): void {
  const sink = this[kSink]
  if (sink !== undefined && sink.listenerCount('error') > 0) sink.emit('error', err)
}

/**
 * An event stream over one HTTP/2 stream. Many streams share one TCP socket, so a client
 * is judged by what its own stream still holds (`writableLength`: written and not yet
 * taken by the HTTP/2 layer, which only takes what the peer's flow-control window allows),
 * never by the shared socket. A slow client's stream is reset with CANCEL: the session and
 * the other streams on it go on.
 */
export class Http2Sink extends EventEmitter implements SseSink {
  readonly #stream: ServerHttp2Stream

  constructor(stream: ServerHttp2Stream) {
    super()
    this.#stream = stream
    const tagged = stream as TaggedStream
    tagged[kSink] = this
    stream.on('close', forwardClose)
    stream.on('error', forwardError)
  }

  /** Sends the response headers, less the connection-specific ones, and wraps the stream. */
  static open(res: Http2ServerResponse, headers: OutgoingHttpHeaders): Http2Sink {
    res.writeHead(200, http2Headers(headers))
    return new Http2Sink(res.stream)
  }

  get writableLength(): number {
    return this.#stream.writableLength
  }

  get writableEnded(): boolean {
    return this.#stream.writableEnded
  }

  get destroyed(): boolean {
    return this.#stream.destroyed
  }

  write(chunk: Buffer): boolean {
    return this.#stream.write(chunk)
  }

  end(): void {
    this.#stream.end()
  }

  destroy(): void {
    const stream = this.#stream
    if (!stream.closed && !stream.destroyed) stream.close(constants.NGHTTP2_CANCEL)
  }

  cork(): void {
    this.#stream.cork()
  }

  uncork(): void {
    this.#stream.uncork()
  }
}
