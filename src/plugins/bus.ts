import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { Bus, BusEvent, BusStatus } from '../bus/bus.js'
import { MemoryBus } from '../bus/memory-bus.js'
import { type BusLogger, REDIS_UNAVAILABLE, RedisBus } from '../bus/redis-bus.js'
import { RedisConnections } from '../bus/redis-connections.js'
import { RedisHistory } from '../bus/redis-history.js'
import { type InstanceReport, RedisPresence } from '../bus/redis-presence.js'
import type { Config } from '../config.js'
import type { SseClient } from '../sse/client.js'
import type { EventHistory } from '../sse/history.js'
import type {
  NotificationType,
  PublishResult,
  SseManager,
  SseStats,
  UserConnections,
} from '../sse/manager.js'
import type { EventTarget } from '../sse/target.js'

declare module 'fastify' {
  interface FastifyInstance {
    cluster: Cluster
  }
}

export interface InstanceSummary {
  instanceId: string
  connections: number
  reportedAt: string
}

export interface ClusterStats extends SseStats {
  instances: InstanceSummary[]
}

/** How long a POST waits to hear its own event back from Redis, to count local deliveries. */
const LOCAL_DELIVERY_WAIT_MS = 1000
const TOP_USERS = 100

interface RedisParts {
  connections: RedisConnections
  presence: RedisPresence
  history: RedisHistory
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
  readonly #pending = new Map<string, (delivered: number) => void>()
  #manager: SseManager | undefined
  #timer: NodeJS.Timeout | undefined
  #seq = 0
  #accepted = 0

  constructor(config: Config, instanceId: string, bus: Bus, log: BusLogger, redis: RedisParts | null) {
    this.#config = config
    this.instanceId = instanceId
    this.bus = bus
    this.#log = log
    this.#redis = redis
  }

  /** The shared history when events live in Redis; undefined keeps the manager's in-memory one. */
  get history(): EventHistory | undefined {
    return this.#redis?.history
  }

  /** Encodes an event from the bus once for this instance: every local recipient shares the bytes. */
  toStored = (event: BusEvent) => {
    const manager = this.#requireManager()
    return manager.createEvent(event.id, event.event, event.data, event.target, event.publishedAt)
  }

  /** Starts receiving from the bus into `manager`, and reporting to the other instances. */
  async attach(manager: SseManager): Promise<void> {
    this.#manager = manager
    const record = this.bus.kind === 'memory'
    await this.bus.subscribe((event) => {
      const delivered = manager.deliver(this.toStored(event), record)
      this.#pending.get(event.origin)?.(delivered)
    })
    const redis = this.#redis
    if (redis === null) return
    redis.presence.start({
      report: () => this.#report(),
      userCounts: () => this.#userCounts(),
      disconnectAll: () => manager.disconnectAll('server_disconnect'),
    })
    const resync = () =>
      redis.presence.resync().catch((err) => this.#log.warn({ err }, 'could not report to redis'))
    redis.connections.onUp(resync)
    if (redis.connections.ready) await resync()
    this.#timer = setInterval(() => {
      if (!redis.connections.ready) return
      Promise.all([redis.presence.report(), redis.history.maintain()]).catch(() => undefined)
    }, this.#config.statsReportIntervalMs).unref()
  }

  /**
   * Publishes to every instance. Resolves with the event id and how many connections
   * of this instance got it; rejects with SSE_ERR_BUS_UNAVAILABLE when the bus cannot
   * take it.
   */
  async publish(event: string, data: unknown, target: EventTarget): Promise<PublishResult> {
    const origin = `${this.instanceId}:${++this.#seq}`
    let delivered: number | undefined
    let wake: (() => void) | undefined
    this.#pending.set(origin, (n) => {
      delivered = n
      wake?.()
    })
    try {
      const id = await this.bus.publish({ event, data, target, origin })
      this.#accepted++
      if (delivered === undefined) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, LOCAL_DELIVERY_WAIT_MS)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      return { id, delivered: delivered ?? 0 }
    } finally {
      this.#pending.delete(origin)
    }
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

  /** Ends every stream of every instance; resolves with the total. */
  async disconnectAll(): Promise<number> {
    if (this.#redis === null) return this.#requireManager().disconnectAll('server_disconnect')
    return this.#redis.presence.disconnectAll()
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
    reports.sort((a, b) => (a.instanceId < b.instanceId ? -1 : 1))
    const users: UserConnections[] = []
    for (const [userId, connections] of view.users) users.push({ userId, connections })
    users.sort((a, b) => b.connections - a.connections || (a.userId < b.userId ? -1 : 1))
    const sum = (pick: (r: InstanceReport) => number) => reports.reduce((n, r) => n + pick(r), 0)
    return {
      ...local,
      totalConnections: sum((r) => r.totalConnections),
      authenticatedConnections: sum((r) => r.authenticatedConnections),
      anonymousConnections: sum((r) => r.anonymousConnections),
      uniqueUsers: view.users.size,
      users: users.slice(0, TOP_USERS),
      eventsPublished: sum((r) => r.eventsPublished),
      eventsDelivered: sum((r) => r.eventsDelivered),
      slowClientsDisconnected: sum((r) => r.slowClientsDisconnected),
      instances: reports.map((r) => ({
        instanceId: r.instanceId,
        connections: r.totalConnections,
        reportedAt: r.reportedAt,
      })),
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer)
    this.#redis?.connections.closing()
    if (this.#redis !== null) await this.#redis.presence.close()
    await this.bus.close()
    if (this.#redis !== null) await this.#redis.connections.close()
  }

  #requireManager(): SseManager {
    if (this.#manager === undefined) throw new TypeError('the cluster is not attached to a manager yet')
    return this.#manager
  }

  #report(): InstanceReport {
    const s = this.#requireManager().stats()
    return {
      instanceId: this.instanceId,
      totalConnections: s.totalConnections,
      authenticatedConnections: s.authenticatedConnections,
      anonymousConnections: s.anonymousConnections,
      eventsPublished: this.#accepted,
      eventsDelivered: s.eventsDelivered,
      slowClientsDisconnected: s.slowClientsDisconnected,
      startedAt: s.startedAt,
      reportedAt: now(),
    }
  }

  *#userCounts(): Iterable<[string, number]> {
    const manager = this.#requireManager()
    for (const userId of manager.userIds()) yield [userId, manager.userConnectionCount(userId)]
  }
}

function now(): string {
  return new Date().toISOString()
}

/**
 * Chooses and builds the bus: in memory without REDIS_URL; otherwise Redis, with
 * its connections made here and passed in. Registered before the sse plugin, which
 * attaches its manager; everything is closed in `onClose`.
 */
export const busPlugin = fp<{ config: Config }>(
  async (app, { config }) => {
    const log = app.log.child({ component: 'bus' })
    const instanceId = randomUUID()
    let cluster: Cluster
    if (config.redisUrl === null) {
      cluster = new Cluster(config, instanceId, new MemoryBus(), log, null)
    } else {
      const connections = new RedisConnections(config.redisUrl, log, {
        name: `sse-manager:${instanceId}`,
      })
      await connections.connect(config.redisConnectTimeoutMs)
      const { commands, reader, subscriber } = connections
      const prefix = config.redisPrefix
      const bus = new RedisBus({
        commands,
        reader,
        prefix,
        maxLength: config.historySize,
        log,
        // Entries this instance never read are gone: its streams missed events no one can
        // replay. Ending them makes the clients reconnect and learn `recovered: false`.
        onGap: () => app.sse?.disconnectAll('error'),
      })
      const history = new RedisHistory({
        client: commands,
        prefix,
        maxEvents: config.historySize,
        ttlMs: config.historyTtlMs,
        replayMaxBytes: config.replayMaxBytes,
        toStored: (event) => cluster.toStored(event),
        latestId: () => (bus.lastId === '0-0' ? null : bus.lastId),
      })
      const presence = new RedisPresence({
        commands,
        subscriber,
        prefix,
        instanceId,
        reportIntervalMs: config.statsReportIntervalMs,
        log,
      })
      cluster = new Cluster(config, instanceId, bus, log, { connections, presence, history })
    }
    app.decorate('cluster', cluster)
    app.addHook('onClose', async () => {
      await cluster.close()
    })
  },
  { name: 'sse-bus', fastify: '5.x' },
)
