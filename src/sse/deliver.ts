import type { SseClient } from './client.js'
import type { Fanout } from './fanout.js'
import type { StoredEvent } from './history.js'
import type { ConnectionIndexes } from './indexes.js'
import type { EventTarget } from './target.js'

/**
 * Queues `stored` to every local connection `target` names, each once: one list of one key
 * cannot reach a client twice; a union (users and topics, several topics) is deduplicated
 * with a per-delivery stamp on the client, which costs no allocation.
 */
export function deliverTo(
  fanout: Fanout,
  indexes: ConnectionIndexes,
  target: EventTarget,
  stored: StoredEvent,
): number {
  let delivered = 0
  if (target.broadcast === true) return fanout.broadcast(stored)
  const { userIds, clientIds, topics } = target
  const keys = (userIds?.length ?? 0) + (clientIds?.length ?? 0) + (topics?.length ?? 0)
  if (keys === 1) {
    if (clientIds !== undefined && clientIds.length === 1) {
      const client = indexes.clients.get(clientIds[0] as string)
      return client === undefined ? 0 : fanout.enqueue(client, stored)
    }
    const entry =
      userIds !== undefined && userIds.length === 1
        ? indexes.byUser.entry(userIds[0] as string)
        : indexes.byTopic.entry(topics?.[0] as string)
    if (entry === undefined) return 0
    if (!(entry instanceof Set)) return fanout.enqueue(entry as SseClient, stored)
    for (const client of entry) delivered += fanout.enqueue(client, stored)
    return delivered
  }
  const stamp = nextStamp()
  const reach = (client: SseClient) => {
    if (client.mark === stamp) return
    client.mark = stamp
    delivered += fanout.enqueue(client, stored)
  }
  for (const userId of userIds ?? []) for (const client of indexes.byUser.get(userId) ?? []) reach(client)
  for (const clientId of clientIds ?? []) {
    const client = indexes.clients.get(clientId)
    if (client !== undefined) reach(client)
  }
  for (const topic of topics ?? []) for (const client of indexes.byTopic.get(topic) ?? []) reach(client)
  return delivered
}

let stamps = 0
function nextStamp(): number {
  stamps = stamps >= Number.MAX_SAFE_INTEGER ? 1 : stamps + 1
  return stamps
}
