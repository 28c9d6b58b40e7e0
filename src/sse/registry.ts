import type { SseClient } from './client.js'
import type { EventHistory } from './history.js'
import { ConnectionIndexes } from './indexes.js'
import type { SseStats } from './types.js'

const TOP = 100

/**
 * The read side of the manager: who is connected here, by id, user, IP and topic, and the
 * counters of what was published and delivered. `SseManager` extends it with everything that
 * changes those (connect, publish, disconnect).
 */
export abstract class ConnectionRegistry {
  readonly instanceId: string
  readonly startedAt: number
  protected readonly indexes = new ConnectionIndexes()
  protected readonly now: () => number
  protected readonly eventHistory: EventHistory | undefined
  protected eventsPublished = 0
  protected eventsDelivered = 0
  protected slowClientsDisconnected = 0

  protected constructor(instanceId: string, now: () => number, history: EventHistory | undefined) {
    this.instanceId = instanceId
    this.now = now
    this.eventHistory = history
    this.startedAt = now()
  }

  get size(): number {
    return this.indexes.clients.size
  }

  /** How many topics have subscribers here. */
  get topicCount(): number {
    return this.indexes.byTopic.size
  }

  get history(): EventHistory | undefined {
    return this.eventHistory
  }

  getClient(id: string): SseClient | undefined {
    return this.indexes.clients.get(id)
  }

  /** The open connections of a user here. */
  clientsOf(userId: string): Iterable<SseClient> {
    return this.indexes.byUser.get(userId) ?? []
  }

  userConnectionCount(userId: string): number {
    return this.indexes.byUser.count(userId)
  }

  anonymousConnectionCount(ip: string): number {
    return this.indexes.anonymousByIp.count(ip)
  }

  latestEventId(): string | null {
    return this.eventHistory?.latestId() ?? null
  }

  stats(): SseStats {
    const { clients, byUser, byTopic, authenticated } = this.indexes
    return {
      totalConnections: clients.size,
      authenticatedConnections: authenticated,
      anonymousConnections: clients.size - authenticated,
      uniqueUsers: byUser.size,
      users: byUser.top(TOP).map(({ key, connections }) => ({ userId: key, connections })),
      topics: byTopic.size,
      topTopics: byTopic.top(TOP).map(({ key, connections }) => ({ topic: key, connections })),
      eventsPublished: this.eventsPublished,
      eventsDelivered: this.eventsDelivered,
      slowClientsDisconnected: this.slowClientsDisconnected,
      uptimeSeconds: Math.floor((this.now() - this.startedAt) / 1000),
      instanceId: this.instanceId,
      startedAt: new Date(this.startedAt).toISOString(),
    }
  }

  /** Who is subscribed to `topic` here: every user's connection count (not only the top). */
  presence(topic: string): { connections: number; anonymous: number; users: Map<string, number> } {
    return this.indexes.presence(topic)
  }

  /** The ids of the users with open streams here (for cluster-wide stats). */
  userIds(): IterableIterator<string> {
    return this.indexes.byUser.keys()
  }

  /** How many of this user's connections here are subscribed to `topic`. */
  userTopicCount(userId: string, topic: string): number {
    return this.indexes.userTopicCount(userId, topic)
  }
}
