import type { InstanceReport } from '../bus/redis-presence.js'
import type { SseStats, TopicPresence, UserConnections } from '../sse/manager.js'

// What the deployment-wide answers (stats, presence) are made of: each instance's part, and how the
// parts add up. Pure functions: the cluster gathers the parts, these sum them.

export interface InstanceSummary {
  instanceId: string
  connections: number
  reportedAt: string
}

export interface ClusterStats extends SseStats {
  instances: InstanceSummary[]
}

/** One instance's part of a topic's presence, as it travels between instances. */
export interface LocalPresence {
  connections: number
  anonymous: number
  users: [string, number][]
}

/** Lists of users are cut to the busiest this many. */
export const TOP_USERS = 100

export function now(): string {
  return new Date().toISOString()
}

/** Most connections first, then by user id: the same order on every instance and every call. */
function byConnections(a: UserConnections, b: UserConnections): number {
  return b.connections - a.connections || (a.userId < b.userId ? -1 : 1)
}

/** A topic's presence: the parts of every live instance, summed. */
export function sumPresence(topic: string, parts: readonly LocalPresence[]): TopicPresence {
  const users = new Map<string, number>()
  let connections = 0
  let anonymous = 0
  for (const part of parts) {
    connections += part.connections
    anonymous += part.anonymous
    for (const [userId, n] of part.users) users.set(userId, (users.get(userId) ?? 0) + n)
  }
  const top = [...users].map(([userId, n]) => ({ userId, connections: n }))
  top.sort(byConnections)
  return { topic, connections, anonymous, uniqueUsers: users.size, users: top.slice(0, TOP_USERS) }
}

/** This instance's numbers as the others see them. `accepted`: events published through it. */
export function reportOf(instanceId: string, stats: SseStats, accepted: number): InstanceReport {
  return {
    instanceId,
    totalConnections: stats.totalConnections,
    authenticatedConnections: stats.authenticatedConnections,
    anonymousConnections: stats.anonymousConnections,
    eventsPublished: accepted,
    eventsDelivered: stats.eventsDelivered,
    slowClientsDisconnected: stats.slowClientsDisconnected,
    startedAt: stats.startedAt,
    reportedAt: now(),
  }
}

/**
 * The deployment's stats: this instance's own, with the counters summed over every report
 * (this instance's among them) and the users counted across instances.
 */
export function sumStats(
  local: SseStats,
  reports: InstanceReport[],
  userCounts: ReadonlyMap<string, number>,
): ClusterStats {
  reports.sort((a, b) => (a.instanceId < b.instanceId ? -1 : 1))
  const users: UserConnections[] = []
  for (const [userId, connections] of userCounts) users.push({ userId, connections })
  users.sort(byConnections)
  const sum = (pick: (r: InstanceReport) => number) => reports.reduce((n, r) => n + pick(r), 0)
  return {
    ...local,
    totalConnections: sum((r) => r.totalConnections),
    authenticatedConnections: sum((r) => r.authenticatedConnections),
    anonymousConnections: sum((r) => r.anonymousConnections),
    uniqueUsers: userCounts.size,
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
