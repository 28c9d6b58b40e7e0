import type { DisconnectReason, SseClient } from './client.js'
import type { EventIdGenerator } from './event-id.js'
import type { EventHistory, StoredEvent } from './history.js'

export interface SseManagerHooks {
  onConnect?(client: SseClient, replay: ConnectInfo): void
  onDisconnect?(client: SseClient, reason: DisconnectReason): void
  onDeliver?(event: StoredEvent, recipients: number): void
  onFlush?(bytes: number): void
  onHeartbeat?(durationMs: number, clients: number): void
  /** A live connection's topics changed (not on connect or disconnect). */
  onSubscriptions?(client: SseClient, change: SubscriptionChange): void
}

export interface SseManagerOptions {
  heartbeatIntervalMs: number
  cleanupIntervalMs: number
  /** The `retry:` hint sent first on every stream. */
  retryMs: number
  /** A client whose unsent bytes pass this is disconnected as too slow. */
  maxBufferedBytes: number
  /**
   * Under load, the longest a flush waits after the previous one ended (ms): a flush that took
   * long makes the next wait as long, up to this, so that more events share each write. 0 (the
   * default here) writes every turn of the event loop.
   */
  maxFlushDelayMs?: number
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
  /** Topics to subscribe to, already validated and authorized. */
  topics?: readonly string[]
}

export interface ConnectInfo {
  /** The `Last-Event-ID` the client sent, when it sent one (unvalidated), else null. */
  readonly requestedLastEventId: string | null
  /** The newest id this stream is caught up to. */
  readonly lastEventId: string | null
  readonly recovered: boolean
  readonly replayed: number
}

export interface SubscriptionChange {
  readonly topics: readonly string[]
  readonly added: readonly string[]
  readonly removed: readonly string[]
}

export interface PublishResult {
  readonly id: string
  readonly delivered: number
}

export interface UserConnections {
  userId: string
  connections: number
}

export interface TopicConnections {
  topic: string
  connections: number
}

export interface TopicPresence {
  topic: string
  connections: number
  anonymous: number
  uniqueUsers: number
  users: UserConnections[]
}

export interface SseStats {
  totalConnections: number
  authenticatedConnections: number
  anonymousConnections: number
  uniqueUsers: number
  users: UserConnections[]
  /** How many topics have subscribers here. */
  topics: number
  topTopics: TopicConnections[]
  eventsPublished: number
  eventsDelivered: number
  slowClientsDisconnected: number
  uptimeSeconds: number
  instanceId: string
  startedAt: string
}

export type NotificationType = 'info' | 'success' | 'warning' | 'error'
