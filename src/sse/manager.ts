import { randomUUID } from 'node:crypto'
import { type DisconnectReason, JoinCache, SseClient, type SseSink } from './client.js'
import { compareEventIds, createEventIdGenerator, type EventIdGenerator } from './event-id.js'
import { encodeFrame, encodeFrameText, isValidEventId } from './frame.js'
import type { EventHistory, ReplayWindow, StoredEvent } from './history.js'
import { type EventTarget, isEntitled } from './target.js'

export interface SseManagerHooks {
  onConnect?(client: SseClient, replay: ConnectInfo): void
  onDisconnect?(client: SseClient, reason: DisconnectReason): void
  onDeliver?(event: StoredEvent, recipients: number): void
  onFlush?(bytes: number): void
  onHeartbeat?(durationMs: number, clients: number): void
}

export interface SseManagerOptions {
  heartbeatIntervalMs: number
  cleanupIntervalMs: number
  /** The `retry:` hint sent first on every stream. */
  retryMs: number
  /** A client whose unsent bytes pass this is disconnected as too slow. */
  maxBufferedBytes: number
  /** 0 for unlimited; each connection gets a random lifetime between 80% and 100% of it. */
  maxConnectionLifetimeMs?: number
  /**
   * The most bytes of missed events one connection is replayed; past it nothing is
   * replayed and the client is told `recovered: false` (never a partial replay).
   */
  replayMaxBytes?: number
  history?: EventHistory
  ids?: EventIdGenerator
  instanceId?: string
  now?: () => number
  hooks?: SseManagerHooks
}

export interface ConnectOptions {
  userId: string | null
  ip?: string | null
  scopes?: readonly string[]
  /** Epoch ms when the token that opened the stream expires; the stream ends then. */
  tokenExpiresAt?: number
  /** The `Last-Event-ID` the client sent, if any (unvalidated). */
  lastEventId?: string | null
}

export interface ConnectInfo {
  /** The `Last-Event-ID` the client sent, when it sent one (unvalidated), else null. */
  readonly requestedLastEventId: string | null
  /** The newest id this stream is caught up to. */
  readonly lastEventId: string | null
  readonly recovered: boolean
  readonly replayed: number
}

export interface PublishResult {
  readonly id: string
  readonly delivered: number
}

export interface UserConnections {
  userId: string
  connections: number
}

export interface SseStats {
  totalConnections: number
  authenticatedConnections: number
  anonymousConnections: number
  uniqueUsers: number
  users: UserConnections[]
  eventsPublished: number
  eventsDelivered: number
  slowClientsDisconnected: number
  uptimeSeconds: number
  instanceId: string
  startedAt: string
}

export type NotificationType = 'info' | 'success' | 'warning' | 'error'

const DISCONNECT_MESSAGES: Record<DisconnectReason, string> = {
  client: 'The client closed the connection',
  slow: 'The client did not read its events fast enough',
  lifetime: 'The connection reached its maximum lifetime; reconnect to continue',
  token_expired: 'The token that opened this connection has expired',
  server_disconnect: 'All clients have been disconnected by the server',
  server_shutdown: 'The server is shutting down; reconnect to continue',
  error: 'The connection failed',
}

const kClient = Symbol('sse.client')
type TaggedSink = SseSink & { [kClient]?: SseClient }

const EXPIRY_CHECK_MS = 1000
/** How many times maxBufferedBytes one turn may queue for a client before the flush. */
const QUEUE_ALLOWANCE = 4
const TOP_USERS = 100

/**
 * The registry of open streams and the fan-out. Clients are indexed by id and by
 * user id, so targeted sends touch only their recipients; each event is encoded
 * once and the same bytes are queued to every recipient, then written once per
 * turn of the event loop per client.
 */
export class SseManager {
  readonly instanceId: string
  readonly startedAt: number
  readonly #clients = new Map<string, SseClient>()
  readonly #byUser = new Map<string, Set<SseClient>>()
  readonly #anonymousByIp = new Map<string, number>()
  readonly #options: Required<Omit<SseManagerOptions, 'history' | 'hooks'>>
  readonly #history: EventHistory | undefined
  readonly #hooks: SseManagerHooks
  readonly #now: () => number
  readonly #onSinkClose: (this: TaggedSink) => void
  #dirty: SseClient[] = []
  #flushScheduled = false
  readonly #queueAllowance: number
  #expiring = 0
  #heartbeatTimer: NodeJS.Timeout | undefined
  #cleanupTimer: NodeJS.Timeout | undefined
  #expiryTimer: NodeJS.Timeout | undefined
  #authenticated = 0
  #eventsPublished = 0
  #eventsDelivered = 0
  #slowClientsDisconnected = 0
  #closing = false

  constructor(options: SseManagerOptions) {
    this.#now = options.now ?? Date.now
    this.#options = {
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      cleanupIntervalMs: options.cleanupIntervalMs,
      retryMs: options.retryMs,
      maxBufferedBytes: options.maxBufferedBytes,
      maxConnectionLifetimeMs: options.maxConnectionLifetimeMs ?? 0,
      replayMaxBytes: options.replayMaxBytes ?? Number.POSITIVE_INFINITY,
      ids: options.ids ?? createEventIdGenerator(this.#now),
      instanceId: options.instanceId ?? randomUUID(),
      now: this.#now,
    }
    this.instanceId = this.#options.instanceId
    this.#queueAllowance = options.maxBufferedBytes * QUEUE_ALLOWANCE
    this.#history = options.history
    this.#hooks = options.hooks ?? {}
    this.startedAt = this.#now()
    const manager = this
    // One listener function shared by every sink: no closure per client.
    this.#onSinkClose = function onSinkClose(this: TaggedSink) {
      const client = this[kClient]
      if (client !== undefined) manager.#remove(client, 'client')
    }
    if (options.heartbeatIntervalMs > 0) {
      this.#heartbeatTimer = setInterval(() => this.heartbeat(), options.heartbeatIntervalMs).unref()
    }
    if (options.cleanupIntervalMs > 0) {
      this.#cleanupTimer = setInterval(() => this.sweep(), options.cleanupIntervalMs).unref()
    }
  }

  get size(): number {
    return this.#clients.size
  }

  get closing(): boolean {
    return this.#closing
  }

  get history(): EventHistory | undefined {
    return this.#history
  }

  getClient(id: string): SseClient | undefined {
    return this.#clients.get(id)
  }

  userConnectionCount(userId: string): number {
    return this.#byUser.get(userId)?.size ?? 0
  }

  anonymousConnectionCount(ip: string): number {
    return this.#anonymousByIp.get(ip) ?? 0
  }

  latestEventId(): string | null {
    return this.#history?.latestId() ?? null
  }

  /**
   * Registers a stream whose response headers are already sent, then writes the
   * `retry` hint, the `connected` event and, for a `Last-Event-ID`, the events the
   * client missed. Events published while an asynchronous history answers are held
   * and written after the replay, each exactly once.
   */
  connect(sink: SseSink, options: ConnectOptions): SseClient {
    const now = this.#now()
    const { expiresAt, reason } = this.#deadline(now, options.tokenExpiresAt)
    const client = new SseClient(sink, {
      userId: options.userId,
      ip: options.ip ?? null,
      scopes: options.scopes ?? [],
      expiresAt,
      expiryReason: reason,
      now,
    })
    this.#register(client)
    const tagged = sink as TaggedSink
    tagged[kClient] = client
    // `on`, not `once`: `once` allocates a wrapper per call; the handler is idempotent anyway.
    sink.on('close', this.#onSinkClose)
    sink.on('error', this.#onSinkClose)

    const lastEventId = options.lastEventId ?? null
    if (lastEventId === null || this.#history === undefined) {
      this.#start(client, lastEventId, null)
      return client
    }
    const limit = {
      maxBytes: this.#options.replayMaxBytes,
      entitled: (target: EventTarget) => isEntitled(target, client.id, client.userId),
    }
    const window = isValidEventId(lastEventId)
      ? this.#history.since(lastEventId, limit)
      : { recovered: false, events: [] }
    if (window instanceof Promise) {
      client.held = []
      client.heldBytes = 0
      window.then(
        (w) => this.#start(client, lastEventId, w),
        () => this.#start(client, lastEventId, { recovered: false, events: [] }),
      )
    } else {
      this.#start(client, lastEventId, window)
    }
    return client
  }

  /** Assigns an id, encodes the frame once, records it and delivers it to local recipients. */
  publish(event: string, data: unknown, target: EventTarget): PublishResult {
    const stored = this.createEvent(this.#options.ids.next(), event, data, target)
    return { id: stored.id, delivered: this.deliver(stored) }
  }

  broadcast(event: string, data: unknown): PublishResult {
    return this.publish(event, data, { broadcast: true })
  }

  sendToUsers(event: string, data: unknown, userIds: readonly string[]): PublishResult {
    return this.publish(event, data, { userIds })
  }

  sendToClients(event: string, data: unknown, clientIds: readonly string[]): PublishResult {
    return this.publish(event, data, { clientIds })
  }

  sendNotification(
    userId: string,
    title: string,
    message: string,
    type: NotificationType = 'info',
  ): PublishResult {
    const timestamp = new Date(this.#now()).toISOString()
    return this.sendToUsers('notification', { title, message, type, timestamp }, [userId])
  }

  /** Builds the stored form of an event: encoded once, shared by every recipient. */
  createEvent(
    id: string,
    event: string,
    data: unknown,
    target: EventTarget,
    publishedAt = this.#now(),
  ): StoredEvent {
    return { id, event, frame: encodeFrame({ id, event, data }), target, publishedAt }
  }

  /**
   * Delivers an event that already has its id (from this process or from the bus)
   * to the matching local connections. `record: false` when a shared history keeps it.
   */
  deliver(stored: StoredEvent, record = true): number {
    if (record) this.#history?.append(stored)
    this.#eventsPublished++
    let delivered = 0
    const target = stored.target
    if (target.broadcast === true) {
      for (const client of this.#clients.values()) delivered += this.#enqueue(client, stored)
    } else {
      const seen =
        target.userIds !== undefined && target.clientIds !== undefined ? new Set<SseClient>() : null
      if (target.userIds !== undefined) {
        for (const userId of target.userIds) {
          const set = this.#byUser.get(userId)
          if (set === undefined) continue
          for (const client of set) {
            seen?.add(client)
            delivered += this.#enqueue(client, stored)
          }
        }
      }
      if (target.clientIds !== undefined) {
        for (const clientId of target.clientIds) {
          const client = this.#clients.get(clientId)
          if (client === undefined || seen?.has(client)) continue
          seen?.add(client)
          delivered += this.#enqueue(client, stored)
        }
      }
    }
    this.#eventsDelivered += delivered
    this.#hooks.onDeliver?.(stored, delivered)
    return delivered
  }

  /** Sends `event: heartbeat` to every client: one frame, one timer for all. */
  heartbeat(): void {
    if (this.#clients.size === 0) return
    const started = performance.now()
    const frame = encodeFrame({
      event: 'heartbeat',
      data: { timestamp: new Date(this.#now()).toISOString() },
    })
    for (const client of this.#clients.values()) {
      if (client.held !== null) continue
      if (client.write(frame, 0)) this.#schedule(client)
      this.#checkBuffer(client)
    }
    this.#hooks.onHeartbeat?.(performance.now() - started, this.#clients.size)
  }

  /** Removes clients whose socket can no longer be written. Returns how many were removed. */
  sweep(): number {
    let removed = 0
    for (const client of this.#clients.values()) {
      const sink = client.sink
      if (sink.destroyed || sink.writableEnded) {
        this.#remove(client, 'client')
        removed++
      }
    }
    return removed
  }

  /** Ends one client's stream with `event: disconnected`. */
  disconnect(client: SseClient, reason: DisconnectReason, retryMs?: number): void {
    if (client.closed) return
    const data = {
      reason,
      message: DISCONNECT_MESSAGES[reason],
      timestamp: new Date(this.#now()).toISOString(),
    }
    client.held = null
    client.write(Buffer.from(encodeFrameText({ event: 'disconnected', data, retry: retryMs }), 'utf8'), 0)
    client.flush()
    this.#remove(client, reason)
    client.sink.end()
  }

  /** Ends every stream with `event: disconnected`; returns how many were open. */
  disconnectAll(reason: DisconnectReason = 'server_disconnect'): number {
    const clients = [...this.#clients.values()]
    for (const client of clients) this.disconnect(client, reason)
    return clients.length
  }

  /**
   * Refuses new streams and ends every open one with reason `server_shutdown`. Each
   * client gets a random `retry` hint (1x to 3x the usual) so they do not all come
   * back in the same instant.
   */
  shutdown(): number {
    this.#closing = true
    this.#flushNow()
    const clients = [...this.#clients.values()]
    const base = this.#options.retryMs
    for (const client of clients) {
      this.disconnect(client, 'server_shutdown', base + Math.floor(Math.random() * base * 2))
    }
    this.close()
    return clients.length
  }

  /** Stops the timers. Streams left open stay open; call `shutdown()` to end them. */
  close(): void {
    clearInterval(this.#heartbeatTimer)
    clearInterval(this.#cleanupTimer)
    clearInterval(this.#expiryTimer)
    this.#heartbeatTimer = undefined
    this.#cleanupTimer = undefined
    this.#expiryTimer = undefined
  }

  stats(): SseStats {
    const users: UserConnections[] = []
    for (const [userId, set] of this.#byUser) users.push({ userId, connections: set.size })
    users.sort((a, b) => b.connections - a.connections || (a.userId < b.userId ? -1 : 1))
    if (users.length > TOP_USERS) users.length = TOP_USERS
    const now = this.#now()
    return {
      totalConnections: this.#clients.size,
      authenticatedConnections: this.#authenticated,
      anonymousConnections: this.#clients.size - this.#authenticated,
      uniqueUsers: this.#byUser.size,
      users,
      eventsPublished: this.#eventsPublished,
      eventsDelivered: this.#eventsDelivered,
      slowClientsDisconnected: this.#slowClientsDisconnected,
      uptimeSeconds: Math.floor((now - this.startedAt) / 1000),
      instanceId: this.instanceId,
      startedAt: new Date(this.startedAt).toISOString(),
    }
  }

  /** The ids of the users with open streams here (for cluster-wide stats). */
  userIds(): IterableIterator<string> {
    return this.#byUser.keys()
  }

  #deadline(
    now: number,
    tokenExpiresAt: number | undefined,
  ): { expiresAt: number; reason: 'lifetime' | 'token_expired' } {
    const lifetime = this.#options.maxConnectionLifetimeMs
    const lifetimeAt = lifetime > 0 ? now + Math.floor(lifetime * (0.8 + Math.random() * 0.2)) : 0
    if (
      tokenExpiresAt !== undefined &&
      tokenExpiresAt > 0 &&
      (lifetimeAt === 0 || tokenExpiresAt <= lifetimeAt)
    ) {
      return { expiresAt: tokenExpiresAt, reason: 'token_expired' }
    }
    return { expiresAt: lifetimeAt, reason: 'lifetime' }
  }

  #register(client: SseClient): void {
    this.#clients.set(client.id, client)
    if (client.userId !== null) {
      this.#authenticated++
      let set = this.#byUser.get(client.userId)
      if (set === undefined) {
        set = new Set()
        this.#byUser.set(client.userId, set)
      }
      set.add(client)
    } else if (client.ip !== null) {
      this.#anonymousByIp.set(client.ip, (this.#anonymousByIp.get(client.ip) ?? 0) + 1)
    }
    if (client.expiresAt > 0) {
      this.#expiring++
      if (this.#expiryTimer === undefined) {
        this.#expiryTimer = setInterval(() => this.#expire(), EXPIRY_CHECK_MS).unref()
      }
    }
  }

  #start(client: SseClient, requestedId: string | null, window: ReplayWindow | null): void {
    if (client.closed) return
    const held = client.held
    client.held = null
    client.heldBytes = 0
    let replayed = 0
    let lastReplayed: string | null = null
    let frames: Buffer[] = []
    let recovered = window?.recovered ?? false
    if (window !== null) {
      let bytes = 0
      for (const event of window.events) {
        if (!isEntitled(event.target, client.id, client.userId)) continue
        frames.push(event.frame)
        bytes += event.frame.length
        replayed++
      }
      const last = window.events[window.events.length - 1]
      if (last !== undefined) lastReplayed = last.id
      if (bytes > this.#options.replayMaxBytes) {
        // All or nothing: a partial replay would hide a gap.
        frames = []
        replayed = 0
        lastReplayed = null
        recovered = false
      }
    }
    // A client-sent id is echoed only when well formed: it came from outside.
    const latest = lastReplayed ?? this.latestEventId() ?? (isValidEventId(requestedId) ? requestedId : null)
    const info: ConnectInfo = {
      requestedLastEventId: requestedId,
      lastEventId: latest,
      recovered,
      replayed,
    }
    const connected = encodeFrameText({
      retry: this.#options.retryMs,
      // Without replayed frames, the connected event carries the latest id so that a
      // reconnect resumes from here rather than from nothing.
      id: replayed === 0 && latest !== null ? latest : undefined,
      event: 'connected',
      data: {
        clientId: client.id,
        userId: client.userId,
        anonymous: client.userId === null,
        timestamp: new Date(this.#now()).toISOString(),
        lastEventId: latest,
        recovered: info.recovered,
        replayed,
      },
    })
    client.write(Buffer.from(connected, 'utf8'), 1)
    for (const frame of frames) client.write(frame)
    if (held !== null) {
      for (const event of held) {
        if (lastReplayed === null || compareEventIds(event.id, lastReplayed) > 0) client.write(event.frame)
      }
    }
    // First bytes go out now, not on the next turn; a replay is judged by how fast it drains.
    const before = client.bytesSent
    client.flush()
    this.#hooks.onFlush?.(client.bytesSent - before)
    this.#hooks.onConnect?.(client, info)
  }

  #enqueue(client: SseClient, stored: StoredEvent): number {
    if (client.closed) return 0
    if (client.held !== null) {
      // Held back while a replay is fetched: bounded like any queue of a slow client.
      client.held.push(stored)
      client.heldBytes += stored.frame.length
      if (client.heldBytes > this.#options.maxBufferedBytes) this.#dropSlow(client)
      return 1
    }
    if (client.write(stored.frame)) this.#schedule(client)
    // Only the queue here, per event; the socket backlog is judged once per flush.
    if (client.queuedBytes > this.#queueAllowance) this.#dropSlow(client)
    return 1
  }

  #schedule(client: SseClient): void {
    this.#dirty.push(client)
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(this.#flush)
    }
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false
    this.#flushNow()
  }

  #flushNow(): void {
    const dirty = this.#dirty
    this.#dirty = []
    const cache = new JoinCache()
    for (const client of dirty) this.#flushClient(client, cache)
  }

  #flushClient(client: SseClient, cache?: JoinCache): void {
    // What the socket still holds from earlier turns decides whether the client keeps up.
    this.#checkBuffer(client)
    if (client.closed) return
    const before = client.bytesSent
    client.flush(cache)
    this.#hooks.onFlush?.(client.bytesSent - before)
  }

  /**
   * A client is too slow when its socket still holds more than maxBufferedBytes when new
   * data arrives, or when one turn queues more than the queue allowance for it. The socket
   * is not judged right after a flush: a burst bigger than the limit, written in one go,
   * drains within moments for a client that reads.
   */
  #checkBuffer(client: SseClient): void {
    if (client.closed) return
    if (client.socketBacklog <= this.#options.maxBufferedBytes && client.queuedBytes <= this.#queueAllowance)
      return
    this.#dropSlow(client)
  }

  #dropSlow(client: SseClient): void {
    this.#slowClientsDisconnected++
    this.#remove(client, 'slow')
    // A client that cannot keep up gets no goodbye: it would not read it.
    client.sink.destroy()
  }

  #expire(): void {
    const now = this.#now()
    for (const client of this.#clients.values()) {
      if (client.expiresAt > 0 && client.expiresAt <= now) this.disconnect(client, client.expiryReason)
    }
  }

  #remove(client: SseClient, reason: DisconnectReason): void {
    if (!client.markClosed()) return
    this.#clients.delete(client.id)
    if (client.userId !== null) {
      this.#authenticated--
      const set = this.#byUser.get(client.userId)
      if (set !== undefined) {
        set.delete(client)
        if (set.size === 0) this.#byUser.delete(client.userId)
      }
    } else if (client.ip !== null) {
      const count = (this.#anonymousByIp.get(client.ip) ?? 1) - 1
      if (count <= 0) this.#anonymousByIp.delete(client.ip)
      else this.#anonymousByIp.set(client.ip, count)
    }
    if (client.expiresAt > 0 && --this.#expiring === 0) {
      clearInterval(this.#expiryTimer)
      this.#expiryTimer = undefined
    }
    const tagged = client.sink as TaggedSink
    tagged[kClient] = undefined
    this.#hooks.onDisconnect?.(client, reason)
  }
}
