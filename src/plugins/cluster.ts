import type { Bus, BusEvent, BusStatus } from '../bus/bus.js'
import { type BusLogger, REDIS_UNAVAILABLE } from '../bus/redis-client.js'
import type { RedisConnections } from '../bus/redis-connections.js'
import type { RedisControl } from '../bus/redis-control.js'
import type { RedisHistory } from '../bus/redis-history.js'
import type { InstanceReport, RedisPresence } from '../bus/redis-presence.js'
import type { RedisTopicPresence } from '../bus/redis-topic-presence.js'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import type { SseClient } from '../sse/client.js'
import type { EventHistory, StoredEvent } from '../sse/history.js'
import { LazyStoredEvent } from '../sse/lazy-event.js'
import type { NotificationType, PublishResult, SseManager, TopicPresence } from '../sse/manager.js'
import {
  applySubscriptions,
  type SubscriptionOutcome,
  type SubscriptionRequest,
} from '../sse/subscriptions.js'
import type { EventTarget } from '../sse/target.js'
import { type BatchItem, type BusSender, Publishing } from './cluster-publish.js'
import {
  type ClusterStats,
  type LocalPresence,
  now,
  reportOf,
  sumPresence,
  sumStats,
} from './cluster-views.js'
import { PresenceEvents } from './presence-events.js'

export interface RedisParts {
  connections: RedisConnections
  presence: RedisPresence
  history: RedisHistory
  control: RedisControl
  topicPresence: RedisTopicPresence
}

/**
 * What the routes use to act on the whole deployment: publish through the bus,
 * disconnect-all, stats and the per-user limit across instances, readiness. With no
 * REDIS_URL it is the one process, exactly as without it.
 */
export class Cluster {
  readonly instanceId: string
  readonly bus: Bus
  readonly #config: Config
  readonly #redis: RedisParts | null
  readonly #log: BusLogger
  readonly #publishing: Publishing
  #manager: SseManager | undefined
  #presenceEvents: PresenceEvents | undefined
  #timer: NodeJS.Timeout | undefined

  constructor(config: Config, instanceId: string, bus: Bus, log: BusLogger, redis: RedisParts | null) {
    this.#config = config
    this.instanceId = instanceId
    this.bus = bus
    this.#log = log
    this.#redis = redis
    this.#publishing = new Publishing(instanceId, bus)
  }

  /** The shared history when events live in Redis; undefined keeps the manager's in-memory one. */
  get history(): EventHistory | undefined {
    return this.#redis?.history
  }

  /**
   * An event from the bus as this instance stores and sends it: encoded once, the first time
   * something reads its frame (a local recipient, the in-memory history), and never when nothing
   * here does (an event for connections on other instances, with the history in Redis).
   */
  toStored = (event: BusEvent): StoredEvent => new LazyStoredEvent(event)

  /** Starts receiving from the bus into `manager`, and reporting to the other instances. */
  async attach(manager: SseManager): Promise<void> {
    this.#manager = manager
    const topicPresence = this.#redis?.topicPresence
    this.#presenceEvents = new PresenceEvents({
      patterns: this.#config.presenceTopics,
      count: (topic, userId, delta) =>
        topicPresence ? topicPresence.change(topic, userId, delta) : manager.userTopicCount(userId, topic),
      publish: (data) => this.publish('presence', data, { topics: [data.topic] }),
      onError: (err) => this.#log.warn({ err }, 'could not publish a presence event'),
    })
    const record = this.bus.kind === 'memory'
    await this.bus.subscribe((event) => {
      const delivered = manager.deliver(this.toStored(event), record)
      this.#publishing.heard(event.origin, delivered)
    })
    const redis = this.#redis
    if (redis === null) return
    redis.presence.start({ report: () => this.#report(), userCounts: () => this.#userCounts() })
    redis.control.start((type, payload) => this.#answer(type, payload))
    const resync = () =>
      redis.presence.resync().catch((err) => this.#log.warn({ err }, 'could not report to redis'))
    redis.connections.onUp(resync)
    if (redis.connections.ready) await resync()
    this.#timer = setInterval(() => {
      if (!redis.connections.ready) return
      Promise.all([redis.presence.report(), redis.history.maintain(), this.#reap()]).catch(() => undefined)
    }, this.#config.statsReportIntervalMs).unref()
  }

  /**
   * Publishes to every instance. Resolves with the event id and how many connections
   * of this instance got it; rejects with SSE_ERR_BUS_UNAVAILABLE when the bus cannot
   * take it.
   */
  async publish(event: string, data: unknown, target: EventTarget, send?: BusSender): Promise<PublishResult> {
    const result = (await this.publishBatch([{ event, data, target }], send))[0]
    if (result === undefined || result instanceof Error) throw result ?? new errors.SSE_ERR_INTERNAL()
    return result
  }

  /**
   * Publishes several events in order, in one round trip to the bus; each settles on its own
   * (an id and this instance's deliveries, or the error).
   */
  publishBatch(items: readonly BatchItem[], send?: BusSender): Promise<(PublishResult | Error)[]> {
    return this.#publishing.publishBatch(items, send)
  }

  /** `notification` with `{title, message, type, timestamp}` to every connection of `userId`, on every instance. */
  sendNotification(
    userId: string,
    title: string,
    message: string,
    type: NotificationType = 'info',
  ): Promise<PublishResult> {
    const data = { title, message, type, timestamp: new Date().toISOString() }
    return this.publish('notification', data, { userIds: [userId] })
  }

  /** A local connection's topics changed (connect, subscriptions, disconnect): presence events. */
  topicsChanged(client: SseClient, added: readonly string[], removed: readonly string[]): void {
    this.#presenceEvents?.changed(client, added, removed)
  }

  /** Leave events for the users that only a dead instance held on a presence topic. */
  async #reap(): Promise<void> {
    const events = this.#presenceEvents
    const redis = this.#redis
    if (redis === null || events === undefined || !events.enabled) return
    for (const { topic, userId } of await redis.topicPresence.reap()) events.left(topic, userId)
  }

  /** Ends every stream of every instance; resolves with the total. */
  async disconnectAll(): Promise<number> {
    if (this.#redis === null) return this.#requireManager().disconnectAll('server_disconnect')
    this.#assertReady()
    const replies = await this.#redis.control.ask('disconnect-all')
    return replies.reduce<number>((sum, r) => sum + ((r as { disconnected?: number })?.disconnected ?? 0), 0)
  }

  /** Changes the topics of the connections a request selects, on every instance. */
  async changeSubscriptions(request: SubscriptionRequest): Promise<SubscriptionOutcome> {
    const max = this.#config.maxTopicsPerConnection
    if (this.#redis === null) return applySubscriptions(this.#requireManager(), request, max)
    this.#assertReady()
    const replies = (await this.#redis.control.ask(
      'subscriptions',
      request,
    )) as (SubscriptionOutcome | null)[]
    return {
      matched: replies.reduce((sum, r) => sum + (r?.matched ?? 0), 0),
      tooMany: replies.some((r) => r?.tooMany === true),
    }
  }

  /** Who is subscribed to `topic`, summed over every live instance. */
  async presence(topic: string): Promise<TopicPresence> {
    let parts: LocalPresence[]
    if (this.#redis === null) parts = [this.#localPresence(topic)]
    else {
      this.#assertReady()
      const replies = (await this.#redis.control.ask('presence', { topic })) as (LocalPresence | null)[]
      parts = replies.filter((p): p is LocalPresence => p !== null)
    }
    return sumPresence(topic, parts)
  }

  /** Takes a connection slot for `userId` across instances (the local limit is checked by the caller). */
  acquireUser(userId: string): boolean | Promise<boolean> {
    if (this.#redis === null) return true
    return this.#redis.presence.acquireUser(userId, this.#config.maxConnectionsPerUser)
  }

  /** Gives back the slot of a connection that ended. */
  released(client: SseClient): void {
    if (client.userId !== null) this.releaseUser(client.userId)
  }

  releaseUser(userId: string): void {
    this.#redis?.presence.releaseUser(userId)
  }

  /**
   * Whether this instance can do its job now, with a fixed public reason (the detail of a
   * Redis failure is in the log, never in the answer).
   */
  readiness(): BusStatus {
    if (this.#manager?.closing === true) return { ready: false, reason: 'shutting down' }
    const redis = this.#redis
    const checks = redis
      ? [redis.connections.status(), this.bus.status(), redis.presence.status()]
      : [this.bus.status()]
    const failed = checks.find((s) => !s.ready)
    if (failed === undefined) return { ready: true, reason: null }
    return { ready: false, reason: redis ? REDIS_UNAVAILABLE : 'the bus is closed' }
  }

  async stats(): Promise<ClusterStats> {
    const manager = this.#requireManager()
    const local = manager.stats()
    const redis = this.#redis
    if (redis === null) {
      const self = { instanceId: this.instanceId, connections: local.totalConnections, reportedAt: now() }
      return { ...local, instances: [self] }
    }
    const view = await redis.presence.view()
    // This instance answers with its numbers of now, the others with their last report.
    const reports = [this.#report(), ...view.instances.filter((r) => r.instanceId !== this.instanceId)]
    return sumStats(local, reports, view.users)
  }

  async close(): Promise<void> {
    clearInterval(this.#timer)
    // Leave events of the streams just ended go out before the bus closes.
    await this.#presenceEvents?.idle()
    this.#redis?.connections.closing()
    this.#redis?.control.close()
    if (this.#redis !== null) await this.#redis.presence.close()
    await this.bus.close()
    if (this.#redis !== null) await this.#redis.connections.close()
  }

  #assertReady(): void {
    if (this.#redis !== null && !this.#redis.presence.status().ready) {
      throw new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
    }
  }

  #localPresence(topic: string): LocalPresence {
    const local = this.#requireManager().presence(topic)
    return { connections: local.connections, anonymous: local.anonymous, users: [...local.users] }
  }

  /** Answers a request from another instance (or this one) over Redis. */
  #answer(type: string, payload: unknown): unknown {
    const manager = this.#requireManager()
    if (type === 'disconnect-all') {
      const disconnected = manager.disconnectAll('server_disconnect')
      this.#log.info({ disconnected }, 'disconnected every local stream')
      return { disconnected }
    }
    if (type === 'subscriptions') {
      return applySubscriptions(manager, payload as SubscriptionRequest, this.#config.maxTopicsPerConnection)
    }
    if (type === 'presence') {
      const topic = (payload as { topic?: unknown } | null)?.topic
      return typeof topic === 'string' ? this.#localPresence(topic) : null
    }
    return null
  }

  #requireManager(): SseManager {
    if (this.#manager === undefined) throw new TypeError('the cluster is not attached to a manager yet')
    return this.#manager
  }

  #report(): InstanceReport {
    return reportOf(this.instanceId, this.#requireManager().stats(), this.#publishing.accepted)
  }

  *#userCounts(): Iterable<[string, number]> {
    const manager = this.#requireManager()
    for (const userId of manager.userIds()) yield [userId, manager.userConnectionCount(userId)]
  }
}
