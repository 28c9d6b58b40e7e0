/**
 * The publisher SDK's types: what its calls take and answer. Types only (erased at run time).
 */
// Types only: the SDK loads nothing of the server.
import type { Dispatcher } from 'undici'
import type { SseStats, TopicPresence, UserConnections } from '../sse/manager.js'

export type NotificationType = 'info' | 'success' | 'warning' | 'error'

/** The body of a `notification` event, as `sendNotification` sends it. */
export interface NotificationData {
  title: string
  message: string
  type: NotificationType
  /** ISO 8601, set by the SDK when the notification is sent. */
  timestamp: string
}

/** Event names mapped to the type of their `data`; the default allows any name and any JSON. */
export type EventMap = Record<string, unknown>

/** What the service answers to a publish. */
export interface PublishResult {
  /** The event id, as sent in the stream's `id:` field. */
  id: string
  /** How many connections it was written to (on the instance that took the request). */
  delivered: number
}

export type { UserConnections }

/** `GET /api/sse/stats`; a clustered service adds `instances`. */
export type Stats = SseStats & {
  instances: { instanceId: string; connections: number; reportedAt: string }[]
  [extra: string]: unknown
}

/** Whom an event is for: everyone, or the union of users, connections and topics. */
export type Target =
  | { broadcast: true }
  | { userIds?: readonly string[]; clientIds?: readonly string[]; topics?: readonly string[] }

/** One event of a batch: a name, its data and a target. */
export type BatchEvent<Events extends EventMap = EventMap> = {
  [K in keyof Events & string]: { event: K; data: Events[K] } & Target
}[keyof Events & string]

export interface BatchResult {
  results: (PublishResult | { error: { statusCode: number; code: string; message: string } })[]
}

export interface SubscriptionChange {
  clientIds?: readonly string[]
  userIds?: readonly string[]
  add?: readonly string[]
  remove?: readonly string[]
}

/** `GET /api/sse/topics/{topic}/presence`: who is subscribed, across the deployment. */
export type { TopicPresence }

export interface DisconnectAllResult {
  disconnected: number
}

export interface PublisherOptions {
  /** The service's base URL, e.g. `http://sse-manager:3000` (a path prefix is kept). */
  url: string
  /** A JWT with `sse:publish` (and `sse:admin` for stats and disconnectAll), or a function returning one (rotation). */
  token: string | (() => string | Promise<string>)
  /** Per attempt, from sending the request to the end of the answer. Default 10000. */
  timeoutMs?: number
  /**
   * Extra attempts after a network error, a 503, and for publishes also after a timeout or a 409
   * (each publish carries an Idempotency-Key that its retries reuse, so a retry never doubles an
   * event). Default 2.
   */
  retries?: number
  /** First retry delay; each next one doubles, with full jitter. Default 100. */
  retryDelayMs?: number
  /** Cap of one retry delay (a server's Retry-After is capped too). Default 5000. */
  maxRetryDelayMs?: number
  /** Keep-alive connections to the service. Default 10. */
  connections?: number
  /** Your own undici dispatcher (a proxy agent, a mock); `close()` then leaves it open. */
  dispatcher?: Dispatcher
}

/** Per-call options of `publish` and `publishBatch`. */
export interface PublishOptions {
  /**
   * The Idempotency-Key to send (1 to 128 visible ASCII characters). By default each call makes
   * a fresh one; pass your own to make retries of your own (a job run again) safe as well.
   */
  idempotencyKey?: string
}

export interface Publisher<Events extends EventMap = EventMap> {
  /** Sends `event` to every open connection. */
  broadcastMessage<K extends keyof Events & string>(event: K, data: Events[K]): Promise<PublishResult>
  /** Sends `event` to every connection (every tab) of these users. */
  sendToUsers<K extends keyof Events & string>(
    event: K,
    data: Events[K],
    userIds: readonly string[],
  ): Promise<PublishResult>
  /** Sends `event` to these connections (the `clientId` of their `connected` event). */
  sendToClients<K extends keyof Events & string>(
    event: K,
    data: Events[K],
    clientIds: readonly string[],
  ): Promise<PublishResult>
  /** Sends `event` to every connection subscribed to one of these topics. */
  publishToTopics<K extends keyof Events & string>(
    event: K,
    data: Events[K],
    topics: readonly string[],
  ): Promise<PublishResult>
  /** Sends `event` to a target: everyone, or the union of users, connections and topics (each connection once). */
  publish<K extends keyof Events & string>(
    event: K,
    data: Events[K],
    target: Target,
    options?: PublishOptions,
  ): Promise<PublishResult>
  /**
   * Publishes up to 1000 events in one request, in order. Each is accepted or refused on its
   * own: `results[i]` is `{id, delivered}` or `{error: {statusCode, code, message}}`.
   */
  publishBatch(events: readonly BatchEvent<Events>[], options?: PublishOptions): Promise<BatchResult>
  /** Changes the topics of live connections (an admin: any; otherwise only the token's own). */
  changeSubscriptions(change: SubscriptionChange): Promise<{ matched: number }>
  /** Who is subscribed to a topic, across the deployment. */
  presence(topic: string): Promise<TopicPresence>
  /** Sends event `notification` with `{title, message, type, timestamp}` to one user. */
  sendNotification(
    userId: string,
    title: string,
    message: string,
    type?: NotificationType,
  ): Promise<PublishResult>
  /** Connection and delivery statistics (needs `sse:admin`). */
  stats(): Promise<Stats>
  /** Ends every stream with `event: disconnected` (needs `sse:admin`). */
  disconnectAll(): Promise<DisconnectAllResult>
  /** Closes the connection pool; later calls fail. */
  close(): Promise<void>
}

/** Codes the SDK uses when the service gave no answer of its own. */
export type ClientErrorCode =
  | 'SSE_CLIENT_NETWORK'
  | 'SSE_CLIENT_TIMEOUT'
  | 'SSE_CLIENT_BAD_RESPONSE'
  | 'SSE_CLIENT_CLOSED'

export interface PublisherErrorInit {
  statusCode: number | null
  code: string
  error?: string
  attempts: number
  cause?: unknown
}
