import type { DisconnectReason } from './client.js'
import { encodeFrameText } from './frame.js'

export const DISCONNECT_MESSAGES: Record<DisconnectReason, string> = {
  client: 'The client closed the connection',
  slow: 'The client did not read its events fast enough',
  lifetime: 'The connection reached its maximum lifetime; reconnect to continue',
  token_expired: 'The token that opened this connection has expired',
  server_disconnect: 'All clients have been disconnected by the server',
  server_shutdown: 'The server is shutting down; reconnect to continue',
  error: 'The connection failed',
}

/** `event: disconnected`, the last frame of a stream the server ends. */
export function goodbyeFrame(reason: DisconnectReason, now: number, retryMs?: number): Buffer {
  const data = { reason, message: DISCONNECT_MESSAGES[reason], timestamp: new Date(now).toISOString() }
  return Buffer.from(encodeFrameText({ event: 'disconnected', data, retry: retryMs }), 'utf8')
}

export interface Deadline {
  /** Epoch ms at which the stream ends; 0 for never. */
  expiresAt: number
  reason: 'lifetime' | 'token_expired'
}

/**
 * When a stream must end: at its token's expiry or after MAX_CONNECTION_LIFETIME_MS (a random
 * 80-100% of it, so that reconnects spread out), whichever comes first.
 */
export function deadlineOf(now: number, lifetimeMs: number, tokenExpiresAt: number | undefined): Deadline {
  const lifetimeAt = lifetimeMs > 0 ? now + Math.floor(lifetimeMs * (0.8 + Math.random() * 0.2)) : 0
  if (
    tokenExpiresAt !== undefined &&
    tokenExpiresAt > 0 &&
    (lifetimeAt === 0 || tokenExpiresAt <= lifetimeAt)
  ) {
    return { expiresAt: tokenExpiresAt, reason: 'token_expired' }
  }
  return { expiresAt: lifetimeAt, reason: 'lifetime' }
}

export interface TimersOptions {
  heartbeatIntervalMs: number
  cleanupIntervalMs: number
  heartbeat(): void
  sweep(): void
  expire(): void
}

const EXPIRY_CHECK_MS = 1000

/**
 * The manager's few timers, shared by every connection: one heartbeat, one sweep, and an
 * expiry check that runs only while some connection has a deadline. All unref'd.
 */
export class Timers {
  readonly #options: TimersOptions
  #heartbeat: NodeJS.Timeout | undefined
  #cleanup: NodeJS.Timeout | undefined
  #expiry: NodeJS.Timeout | undefined
  #expiring = 0

  constructor(options: TimersOptions) {
    this.#options = options
    if (options.heartbeatIntervalMs > 0) {
      this.#heartbeat = setInterval(options.heartbeat, options.heartbeatIntervalMs).unref()
    }
    if (options.cleanupIntervalMs > 0) {
      this.#cleanup = setInterval(options.sweep, options.cleanupIntervalMs).unref()
    }
  }

  /** A connection with a deadline opened. */
  expiringAdded(): void {
    this.#expiring++
    if (this.#expiry === undefined) this.#expiry = setInterval(this.#options.expire, EXPIRY_CHECK_MS).unref()
  }

  /** A connection with a deadline ended. */
  expiringRemoved(): void {
    if (--this.#expiring > 0) return
    this.#expiring = 0
    clearInterval(this.#expiry)
    this.#expiry = undefined
  }

  close(): void {
    clearInterval(this.#heartbeat)
    clearInterval(this.#cleanup)
    clearInterval(this.#expiry)
    this.#heartbeat = undefined
    this.#cleanup = undefined
    this.#expiry = undefined
  }
}
