import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import { type IdempotencyStore, MemoryIdempotency } from '../bus/idempotency.js'
import { MemoryBus } from '../bus/memory-bus.js'
import { RedisBus } from '../bus/redis-bus.js'
import { RedisConnections } from '../bus/redis-connections.js'
import { RedisControl } from '../bus/redis-control.js'
import { RedisHistory } from '../bus/redis-history.js'
import { RedisIdempotency } from '../bus/redis-idempotency.js'
import { RedisPresence } from '../bus/redis-presence.js'
import { RedisTopicPresence } from '../bus/redis-topic-presence.js'
import type { Config } from '../config.js'
import { Cluster } from './cluster.js'

export type { ClusterStats, InstanceSummary } from './cluster-views.js'

declare module 'fastify' {
  interface FastifyInstance {
    cluster: Cluster
    /** Where Idempotency-Keys are remembered: this process, or Redis for every instance. */
    idempotencyStore: IdempotencyStore
  }
}

/**
 * Chooses and builds the bus: in memory without REDIS_URL or REDIS_SENTINELS; otherwise Redis,
 * with its connections made here and passed in. Registered before the sse plugin, which
 * attaches its manager; everything is closed in `onClose`.
 */
export const busPlugin = fp<{ config: Config }>(
  async (app, { config }) => {
    const log = app.log.child({ component: 'bus' })
    const instanceId = randomUUID()
    let cluster: Cluster
    let store: IdempotencyStore
    if (config.redisUrl === null && config.redisSentinels === null) {
      const bus = new MemoryBus()
      store = new MemoryIdempotency(bus)
      cluster = new Cluster(config, instanceId, bus, log, null)
    } else {
      const target = config.redisSentinels
        ? { sentinels: config.redisSentinels, name: config.redisSentinelName, url: config.redisUrl }
        : (config.redisUrl as string)
      const connections = new RedisConnections(target, log, {
        name: `sse-manager:${instanceId}`,
        // WAIT holds the connection it is sent on: publishes get their own.
        publisher: config.redisWaitReplicas > 0,
      })
      await connections.connect(config.redisConnectTimeoutMs)
      const { commands, reader, subscriber } = connections
      const prefix = config.redisPrefix
      const bus = new RedisBus({
        commands,
        publisher: connections.publisher,
        reader,
        prefix,
        maxLength: config.historySize,
        maxBytes: config.historyMaxBytes,
        maxPendingBytes: config.redisMaxPendingBytes,
        waitReplicas: config.redisWaitReplicas,
        waitTimeoutMs: config.redisWaitTimeoutMs,
        lagWaitMs: config.redisLagWaitMs,
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
        trimBefore: (minId) => bus.trim(minId),
      })
      store = new RedisIdempotency({ bus, commands, prefix })
      const presence = new RedisPresence({
        commands,
        subscriber,
        prefix,
        instanceId,
        reportIntervalMs: config.statsReportIntervalMs,
        log,
      })
      const control = new RedisControl({ commands, subscriber, prefix, instanceId, log })
      const topicPresence = new RedisTopicPresence({ commands, prefix, instanceId })
      cluster = new Cluster(config, instanceId, bus, log, {
        connections,
        presence,
        history,
        control,
        topicPresence,
      })
    }
    app.decorate('cluster', cluster)
    app.decorate('idempotencyStore', store)
    app.addHook('onClose', async () => {
      await cluster.close()
    })
  },
  { name: 'sse-bus', fastify: '5.x' },
)
