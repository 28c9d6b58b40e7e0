/** Who an event is for. Kept with the event so that replay applies the same rules as live delivery. */
export type EventTarget =
  | { readonly broadcast: true }
  | {
      readonly broadcast?: false
      readonly userIds?: readonly string[]
      readonly clientIds?: readonly string[]
      /** Every connection subscribed to one of these topics. */
      readonly topics?: readonly string[]
    }

/**
 * Whether a connection of `userId` with id `clientId`, subscribed to `topics`, may receive an
 * event sent to `target`.
 */
export function isEntitled(
  target: EventTarget,
  clientId: string,
  userId: string | null,
  topics: readonly string[] = [],
): boolean {
  if (target.broadcast === true) return true
  if (userId !== null && target.userIds?.includes(userId)) return true
  if (target.clientIds?.includes(clientId) === true) return true
  if (target.topics !== undefined && topics.length > 0) {
    for (const topic of target.topics) if (topics.includes(topic)) return true
  }
  return false
}

/**
 * What the ids of a target hold in memory, an estimate from above: each id is its own string
 * (a header and up to two bytes per character) and a slot in its array. A broadcast holds none.
 */
export function targetBytes(target: EventTarget): number {
  if (target.broadcast === true) return 0
  return idsBytes(target.userIds) + idsBytes(target.clientIds) + idsBytes(target.topics)
}

function idsBytes(ids: readonly string[] | undefined): number {
  if (ids === undefined) return 0
  let bytes = 16
  for (const id of ids) bytes += 32 + 2 * id.length
  return bytes
}
