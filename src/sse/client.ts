import { randomUUID } from 'node:crypto'
import type { StoredEvent } from './history.js'

/**
 * The part of a writable HTTP response the core needs. Node's `ServerResponse`
 * satisfies it; tests use small fakes. Keeping it this narrow keeps the core
 * free of any framework.
 */
export interface SseSink {
  write(chunk: Buffer): boolean
  end(): void
  destroy(): void
  readonly writableLength: number
  readonly writableEnded: boolean
  readonly destroyed: boolean
  cork?(): void
  uncork?(): void
  /**
   * Writes bytes to the connection as they are, the caller having framed them as HTTP/1.1
   * chunks (`<hex length>\r\n<data>\r\n`, exactly what `ServerResponse.write` would send).
   * Set on chunked HTTP/1.1 responses: a chunk framed once is then shared by every client.
   */
  writeRaw?(bytes: Buffer): boolean
  on(event: 'close', listener: () => void): unknown
  on(event: 'error', listener: (err: Error) => void): unknown
}

/** The topics of a stream without any: one shared, frozen array (a list is replaced, never changed). */
export const NO_TOPICS: readonly string[] = Object.freeze([])

/** Up to this many queued bytes are joined into one buffer before writing; more are written without copying. */
const COPY_LIMIT = 64 * 1024

const CRLF = Buffer.from('\r\n', 'latin1')

/** `data` as one HTTP/1.1 chunk, byte for byte what `ServerResponse.write(data)` sends. */
export function frameChunk(data: Buffer): Buffer {
  const head = Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1')
  return Buffer.concat([head, data, CRLF], head.length + data.length + 2)
}

/**
 * Joins (and frames) batches during one flush pass. Client after client may have queued the
 * very same frames: they then share one joined buffer instead of a copy each.
 */
export class JoinCache {
  #parts: Buffer | Buffer[] | null = null
  #joined: Buffer | null = null
  #framed: Buffer | null = null

  join(parts: Buffer[], bytes: number): Buffer {
    if (this.#same(parts) && this.#joined !== null) return this.#joined
    const joined = Buffer.concat(parts, bytes)
    this.#parts = parts
    this.#joined = joined
    this.#framed = null
    return joined
  }

  /** The batch as one chunk, framed once for every client that queued the same frames. */
  framed(parts: Buffer | Buffer[], bytes: number): Buffer {
    if (this.#same(parts) && this.#framed !== null) return this.#framed
    const joined = Array.isArray(parts) ? this.join(parts, bytes) : parts
    this.#parts = parts
    this.#joined = joined
    this.#framed = frameChunk(joined)
    return this.#framed
  }

  #same(parts: Buffer | Buffer[]): boolean {
    const last = this.#parts
    if (last === parts) return true
    if (!Array.isArray(last) || !Array.isArray(parts) || last.length !== parts.length) return false
    for (let i = 0; i < parts.length; i++) if (last[i] !== parts[i]) return false
    return true
  }
}

/** Why a connection ended; each maps to a metric label and a log line. */
export type DisconnectReason =
  | 'client'
  | 'slow'
  | 'lifetime'
  | 'token_expired'
  | 'server_disconnect'
  | 'server_shutdown'
  | 'error'

export interface SseClientInit {
  userId: string | null
  /** The peer address; kept for anonymous clients only (per-IP limits). */
  ip?: string | null
  /** Epoch ms after which the connection is closed (lifetime or token expiry), 0 for never. */
  expiresAt?: number
  /** Which deadline `expiresAt` is. */
  expiryReason?: 'lifetime' | 'token_expired'
  /** Any extra facts about the connection (token scopes, ...) the service wants to keep. */
  scopes?: readonly string[]
  now?: number
}

/**
 * One open event stream. Frames are queued and written by the manager once per
 * turn of the event loop, so a burst becomes one socket write. Idle clients hold
 * no timers, no closures and no payload copies.
 */
export class SseClient {
  readonly id: string
  readonly userId: string | null
  readonly ip: string | null
  readonly connectedAt: number
  readonly scopes: readonly string[]
  expiresAt: number
  expiryReason: 'lifetime' | 'token_expired'
  eventsSent = 0
  bytesSent = 0
  readonly sink: SseSink
  /** Live events held back while a replay is being fetched; null otherwise. */
  held: StoredEvent[] | null = null
  /** Bytes of `held` frames; they count toward the slow-client limit. */
  heldBytes = 0
  /** The topics this stream is subscribed to (a small array: at most MAX_TOPICS_PER_CONNECTION). */
  topics: readonly string[] = NO_TOPICS
  /** True once `connected` was written (a replay may keep a stream waiting before that). */
  started = false
  /** The fan-out's stamp of the last delivery that reached this client, so a union reaches it once. */
  mark = 0
  /** Which flush pass `turnIndex` belongs to. */
  turnSeq = -1
  /** How many of the current turn's broadcasts this client has queued (or was born after). */
  turnIndex = 0
  /** The flush pass in which this client was last put on the dirty list. */
  dirtySeq = -1
  #pending: Buffer | Buffer[] | null = null
  #pendingBytes = 0
  #pendingEvents = 0
  #closed = false

  constructor(sink: SseSink, init: SseClientInit) {
    this.id = randomUUID()
    this.sink = sink
    this.userId = init.userId
    this.ip = init.userId === null ? (init.ip ?? null) : null
    this.connectedAt = init.now ?? Date.now()
    this.expiresAt = init.expiresAt ?? 0
    this.expiryReason = init.expiryReason ?? 'lifetime'
    this.scopes = init.scopes ?? []
  }

  get anonymous(): boolean {
    return this.userId === null
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Bytes queued here, not yet handed to the socket. */
  get queuedBytes(): number {
    return this.#pendingBytes
  }

  /** Bytes handed to the socket that it has not sent yet. */
  get socketBacklog(): number {
    return this.#closed ? 0 : this.sink.writableLength
  }

  /**
   * Queues a frame. Returns true when the queue was empty, so that the caller
   * schedules exactly one flush for this client.
   */
  write(frame: Buffer, events = 1): boolean {
    if (this.#closed) return false
    this.#pendingBytes += frame.length
    this.#pendingEvents += events
    const pending = this.#pending
    if (pending === null) {
      this.#pending = frame
      return true
    }
    if (Array.isArray(pending)) pending.push(frame)
    else this.#pending = [pending, frame]
    return false
  }

  /**
   * Writes everything queued. Small batches are joined into one buffer (one chunk, one
   * syscall); large ones are written buffer by buffer under cork, so the shared frames
   * are not copied per client.
   */
  flush(cache?: JoinCache): boolean {
    const pending = this.#pending
    if (pending === null || this.#closed) return true
    const bytes = this.#pendingBytes
    this.#pending = null
    this.#pendingBytes = 0
    this.eventsSent += this.#pendingEvents
    this.#pendingEvents = 0
    this.bytesSent += bytes
    const sink = this.sink
    if (sink.destroyed) return false
    if (sink.writeRaw !== undefined) return this.#flushRaw(sink, pending, bytes, cache)
    if (!Array.isArray(pending)) return sink.write(pending)
    if (bytes <= COPY_LIMIT || sink.cork === undefined) {
      return sink.write(cache ? cache.join(pending, bytes) : Buffer.concat(pending, bytes))
    }
    sink.cork()
    let ok = true
    for (const frame of pending) ok = sink.write(frame) && ok
    sink.uncork?.()
    return ok
  }

  /**
   * Writes what a whole turn of broadcasts made, joined and framed once for every client
   * (`joined` for sinks that frame themselves, `framed` for raw HTTP/1.1 ones). Only for a
   * client with nothing else queued.
   */
  writeShared(joined: Buffer, framed: Buffer, events: number): boolean {
    if (this.#closed) return true
    this.eventsSent += events
    this.bytesSent += joined.length
    const sink = this.sink
    if (sink.destroyed) return false
    return sink.writeRaw !== undefined ? sink.writeRaw(framed) : sink.write(joined)
  }

  /** One chunk; a large batch as one chunk written piece by piece under cork, nothing copied. */
  #flushRaw(sink: SseSink, pending: Buffer | Buffer[], bytes: number, cache?: JoinCache): boolean {
    const raw = sink.writeRaw as (bytes: Buffer) => boolean
    if (!Array.isArray(pending) || bytes <= COPY_LIMIT || sink.cork === undefined) {
      return raw.call(
        sink,
        cache
          ? cache.framed(pending, bytes)
          : frameChunk(Array.isArray(pending) ? Buffer.concat(pending, bytes) : pending),
      )
    }
    sink.cork()
    let ok = raw.call(sink, Buffer.from(`${bytes.toString(16)}\r\n`, 'latin1'))
    for (const frame of pending) ok = raw.call(sink, frame) && ok
    ok = raw.call(sink, CRLF) && ok
    sink.uncork?.()
    return ok
  }

  /** Marks the client closed and drops its queue; returns false when it already was. */
  markClosed(): boolean {
    if (this.#closed) return false
    this.#closed = true
    this.#pending = null
    this.#pendingBytes = 0
    this.#pendingEvents = 0
    return true
  }
}
