/** Who an event is for. Kept with the event so that replay applies the same rules as live delivery. */
export type EventTarget =
  | { readonly broadcast: true }
  | {
      readonly broadcast?: false
      readonly userIds?: readonly string[]
      readonly clientIds?: readonly string[]
    }

/** Whether a connection of `userId` with id `clientId` may receive an event sent to `target`. */
export function isEntitled(target: EventTarget, clientId: string, userId: string | null): boolean {
  if (target.broadcast === true) return true
  if (userId !== null && target.userIds?.includes(userId)) return true
  return target.clientIds?.includes(clientId) === true
}
