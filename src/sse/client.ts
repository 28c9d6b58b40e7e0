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
  on(event: 'close', listener: () => void): unknown
  on(event: 'error', listener: (err: Error) => void): unknown
}

/** Up to this many queued bytes are joined into one buffer before writing; more are written without copying. */
const COPY_LIMIT = 64 * 1024

/**
 * Joins batches during one flush pass. After a broadcast burst, client after client has
 * queued the very same frames: they then share one joined buffer instead of a copy each.
 */
export class JoinCache {
  #parts: Buffer[] | null = null
  #joined: Buffer | null = null

  join(parts: Buffer[], bytes: number): Buffer {
    const last = this.#parts
    if (last !== null && this.#joined !== null && last.length === parts.length) {
      let same = true
      for (let i = 0; i < parts.length; i++) {
        if (last[i] !== parts[i]) {
          same = false
          break
        }
      }
      if (same) return this.#joined
    }
    const joined = Buffer.concat(parts, bytes)
    this.#parts = parts
    this.#joined = joined
    return joined
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
