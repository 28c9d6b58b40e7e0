import type { SseClient } from './client.js'
import type { SseManager } from './manager.js'
import { planSubscriptions } from './topics.js'

/** A change of topics for the connections some selectors name. */
export interface SubscriptionRequest {
  readonly clientIds?: readonly string[]
  readonly userIds?: readonly string[]
  readonly add: readonly string[]
  readonly remove: readonly string[]
  /** Only connections of this user may be changed; null for an admin, who may change any. */
  readonly owner: string | null
}

export interface SubscriptionOutcome {
  /** How many connections here the selectors matched (and the change was applied to). */
  readonly matched: number
  /** True when the change would take a connection past the limit: then nothing changed. */
  readonly tooMany: boolean
}

/** The local connections a request selects, each once. */
export function selectConnections(manager: SseManager, request: SubscriptionRequest): SseClient[] {
  const out = new Set<SseClient>()
  const allowed = (client: SseClient) => request.owner === null || client.userId === request.owner
  for (const id of request.clientIds ?? []) {
    const client = manager.getClient(id)
    if (client !== undefined && allowed(client)) out.add(client)
  }
  for (const userId of request.userIds ?? []) {
    for (const client of manager.clientsOf(userId)) if (allowed(client)) out.add(client)
  }
  return [...out]
}

/**
 * Applies a request to this instance's connections: all of them or none, so that a change
 * that would take one connection past `maxTopics` changes nothing here.
 */
export function applySubscriptions(
  manager: SseManager,
  request: SubscriptionRequest,
  maxTopics: number,
): SubscriptionOutcome {
  const clients = selectConnections(manager, request)
  for (const client of clients) {
    if (planSubscriptions(client.topics, request.add, request.remove).topics.length > maxTopics) {
      return { matched: 0, tooMany: true }
    }
  }
  for (const client of clients) manager.changeSubscriptions(client, request.add, request.remove, maxTopics)
  return { matched: clients.length, tooMany: false }
}
