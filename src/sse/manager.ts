import { randomUUID } from 'node:crypto'
import { type DisconnectReason, SseClient, type SseSink } from './client.js'
import { deliverTo } from './deliver.js'
import { createEventIdGenerator, type EventIdGenerator } from './event-id.js'
import { Fanout } from './fanout.js'
import { encodeFrame } from './frame.js'
import type { StoredEvent } from './history.js'
import { deadlineOf, goodbyeFrame, Timers } from './lifecycle.js'
import { ConnectionRegistry } from './registry.js'
import { StreamStart } from './stream-start.js'
import type { EventTarget } from './target.js'
import { planSubscriptions } from './topics.js'
import type {
  ConnectOptions,
  NotificationType,
  PublishResult,
  SseManagerHooks,
  SseManagerOptions,
  SubscriptionChange,
} from './types.js'

export type * from './types.js'

const kClient = Symbol('sse.client')
type TaggedSink = SseSink & { [kClient]?: SseClient }

/**
 * The registry of open streams. Clients are indexed by id, by user and by topic, so that
 * targeted sends touch only their recipients; each event is encoded once and the fan-out
 * queues the same bytes to every recipient, written once per turn per client.
 */
export class SseManager extends ConnectionRegistry {
  readonly #fanout: Fanout
  readonly #timers: Timers
  readonly #ids: EventIdGenerator
  readonly #retryMs: number
  readonly #lifetimeMs: number
  readonly #start: StreamStart
  readonly #hooks: SseManagerHooks
  readonly #onSinkClose: (this: TaggedSink) => void
  #closing = false

  constructor(options: SseManagerOptions) {
    const now = options.now ?? Date.now
    super(options.instanceId ?? randomUUID(), now, options.history)
    this.#ids = options.ids ?? createEventIdGenerator(now)
    this.#retryMs = options.retryMs
    this.#lifetimeMs = options.maxConnectionLifetimeMs ?? 0
    this.#hooks = options.hooks ?? {}
    this.#fanout = new Fanout({
      maxBufferedBytes: options.maxBufferedBytes,
      clients: this.indexes.clients,
      onSlow: (client) => this.#dropSlow(client),
      onFlush: this.#hooks.onFlush,
      maxFlushDelayMs: options.maxFlushDelayMs,
    })
    this.#timers = new Timers({
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      cleanupIntervalMs: options.cleanupIntervalMs,
      heartbeat: () => this.heartbeat(),
      sweep: () => this.sweep(),
      expire: () => this.#expire(),
    })
    this.#start = new StreamStart({
      fanout: this.#fanout,
      history: this.eventHistory,
      latestEventId: () => this.latestEventId(),
      retryMs: this.#retryMs,
      replayMaxBytes: options.replayMaxBytes ?? Number.POSITIVE_INFINITY,
      now: () => this.now(),
      onConnect: (client, info) => this.#hooks.onConnect?.(client, info),
    })
    const manager = this
    // One listener function shared by every sink: no closure per client.
    this.#onSinkClose = function onSinkClose(this: TaggedSink) {
      const client = this[kClient]
      if (client !== undefined) manager.#remove(client, 'client')
    }
  }

  get closing(): boolean {
    return this.#closing
  }

  /**
   * Registers a stream whose response headers are already sent, then writes the
   * `retry` hint, the `connected` event and, for a `Last-Event-ID`, the events the
   * client missed. Events published while an asynchronous history answers are held
   * and written after the replay, each exactly once.
   */
  connect(sink: SseSink, options: ConnectOptions): SseClient {
    const now = this.now()
    const { expiresAt, reason } = deadlineOf(now, this.#lifetimeMs, options.tokenExpiresAt)
    const client = new SseClient(sink, {
      userId: options.userId,
      ip: options.ip ?? null,
      scopes: options.scopes ?? [],
      expiresAt,
      expiryReason: reason,
      now,
    })
    if (options.topics !== undefined && options.topics.length > 0)
      client.topics = [...new Set(options.topics)]
    this.#register(client)
    const tagged = sink as TaggedSink
    tagged[kClient] = client
    // `on`, not `once`: `once` allocates a wrapper per call; the handler is idempotent anyway.
    sink.on('close', this.#onSinkClose)
    sink.on('error', this.#onSinkClose)

    this.#start.begin(client, options.lastEventId ?? null)
    return client
  }

  /** Assigns an id, encodes the frame once, records it and delivers it to local recipients. */
  publish(event: string, data: unknown, target: EventTarget): PublishResult {
    const stored = this.createEvent(this.#ids.next(), event, data, target)
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

  publishToTopics(event: string, data: unknown, topics: readonly string[]): PublishResult {
    return this.publish(event, data, { topics })
  }

  sendNotification(
    userId: string,
    title: string,
    message: string,
    type: NotificationType = 'info',
  ): PublishResult {
    const timestamp = new Date(this.now()).toISOString()
    return this.sendToUsers('notification', { title, message, type, timestamp }, [userId])
  }

  /** Builds the stored form of an event: encoded once, shared by every recipient. */
  createEvent(
    id: string,
    event: string,
    data: unknown,
    target: EventTarget,
    publishedAt = this.now(),
  ): StoredEvent {
    return { id, event, frame: encodeFrame({ id, event, data }), target, publishedAt }
  }

  /**
   * Delivers an event that already has its id (from this process or from the bus)
   * to the matching local connections, each once. `record: false` when a shared
   * history keeps it.
   */
  deliver(stored: StoredEvent, record = true): number {
    if (record) this.eventHistory?.append(stored)
    this.eventsPublished++
    const delivered = deliverTo(this.#fanout, this.indexes, stored.target, stored)
    this.eventsDelivered += delivered
    this.#hooks.onDeliver?.(stored, delivered)
    return delivered
  }

  /**
   * Changes a live connection's topics. Returns the change (empty when nothing changed), or
   * null when the result would pass `maxTopics` (then nothing changes).
   */
  changeSubscriptions(
    client: SseClient,
    add: readonly string[],
    remove: readonly string[],
    maxTopics: number,
  ): SubscriptionChange | null {
    const plan = planSubscriptions(client.topics, add, remove)
    if (plan.topics.length > maxTopics) return null
    if (client.closed || (plan.added.length === 0 && plan.removed.length === 0)) return plan
    for (const topic of plan.removed) this.indexes.byTopic.remove(topic, client)
    for (const topic of plan.added) this.indexes.byTopic.add(topic, client)
    client.topics = [...plan.topics]
    const frame = encodeFrame({ event: 'subscriptions', data: plan })
    this.#fanout.enqueueFrame(client, frame)
    this.#hooks.onSubscriptions?.(client, plan)
    return plan
  }

  /** Sends `event: heartbeat` to every client: one frame, one timer for all. */
  heartbeat(): void {
    if (this.indexes.clients.size === 0) return
    const started = performance.now()
    const frame = encodeFrame({
      event: 'heartbeat',
      data: { timestamp: new Date(this.now()).toISOString() },
    })
    this.#fanout.broadcastFrame(frame)
    this.#hooks.onHeartbeat?.(performance.now() - started, this.indexes.clients.size)
  }

  /** Removes clients whose socket can no longer be written. Returns how many were removed. */
  sweep(): number {
    let removed = 0
    for (const client of this.indexes.clients.values()) {
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
    // What this turn broadcast so far goes first: the goodbye is the last frame.
    if (client.started && client.held === null) this.#fanout.catchUp(client)
    this.#fanout.release(client)
    client.write(goodbyeFrame(reason, this.now(), retryMs), 0)
    this.#fanout.flushClient(client)
    this.#remove(client, reason)
    client.sink.end()
  }

  /**
   * Ends every stream with `event: disconnected`; returns how many were open. The turn's
   * broadcasts go out first, framed once for all, then each goodbye. `retryFor` gives each
   * client its `retry` hint.
   */
  disconnectAll(
    reason: DisconnectReason = 'server_disconnect',
    retryFor: () => number | undefined = () => undefined,
  ): number {
    this.#fanout.flushAll()
    const clients = [...this.indexes.clients.values()]
    for (const client of clients) this.disconnect(client, reason, retryFor())
    return clients.length
  }

  /**
   * Refuses new streams and ends every open one with reason `server_shutdown`. Each
   * client gets a random `retry` hint (1x to 3x the usual) so they do not all come
   * back in the same instant.
   */
  shutdown(): number {
    this.#closing = true
    const base = this.#retryMs
    const ended = this.disconnectAll('server_shutdown', () => base + Math.floor(Math.random() * base * 2))
    this.close()
    return ended
  }

  /** Stops the timers. Streams left open stay open; call `shutdown()` to end them. */
  close(): void {
    this.#timers.close()
  }

  #register(client: SseClient): void {
    this.indexes.add(client)
    this.#fanout.joined(client)
    if (client.expiresAt > 0) this.#timers.expiringAdded()
  }

  #dropSlow(client: SseClient): void {
    if (client.closed) return
    this.slowClientsDisconnected++
    this.#remove(client, 'slow')
    // A client that cannot keep up gets no goodbye: it would not read it.
    client.sink.destroy()
  }

  #expire(): void {
    const now = this.now()
    for (const client of this.indexes.clients.values()) {
      if (client.expiresAt > 0 && client.expiresAt <= now) this.disconnect(client, client.expiryReason)
    }
  }

  #remove(client: SseClient, reason: DisconnectReason): void {
    if (!client.markClosed()) return
    this.indexes.remove(client)
    this.#fanout.forget(client)
    if (client.expiresAt > 0) this.#timers.expiringRemoved()
    const tagged = client.sink as TaggedSink
    tagged[kClient] = undefined
    this.#hooks.onDisconnect?.(client, reason)
  }
}
