import type { ConnectionState, SseEvent, StateDetail } from './types.js'

/** What the tabs of one group tell each other over their BroadcastChannel. */
export type GroupMessage =
  /** From the leader: one event off the stream. */
  | { type: 'event'; event: SseEvent }
  /** From the leader: the stream's state, who leads, how many tabs share it. */
  | {
      type: 'status'
      state: ConnectionState
      detail: StateDetail
      clientId: string | null
      topics: string[]
      leader: string | null
      tabs: number
    }
  /** From the leader: the stream ended for good (`server_disconnect`, a refusal): every tab closes. */
  | { type: 'end'; detail: StateDetail }
  /** A tab joined, or left: the leader counts again and answers with its status. */
  | { type: 'hello' }
  | { type: 'bye' }

export interface Group {
  /** To every other tab of the group (a BroadcastChannel never echoes to its sender). */
  post(message: GroupMessage): void
  /** The tabs in the group, this one included. */
  countTabs(): Promise<number>
}

/** Web Locks elect the leader and BroadcastChannel carries the events; both are needed to share. */
export function canShare(): boolean {
  return typeof BroadcastChannel === 'function' && typeof navigator === 'object' && !!navigator.locks
}

const noop = () => {}

/**
 * Joins the tabs that share the stream named `key`. Each tab holds a lock of its own while it is
 * open (so the leader can count the tabs, and a crashed tab counts no more) and queues for the
 * group's lock; the browser grants that lock to one tab at a time and passes it on as soon as the
 * holder closes, which is the whole election. `lead` runs while this tab holds it.
 */
export function joinGroup(
  key: string,
  tabId: string,
  signal: AbortSignal,
  onMessage: (message: GroupMessage) => void,
  lead: (group: Group) => Promise<void>,
): Group {
  const channel = new BroadcastChannel(key)
  const member = `${key}#`
  channel.onmessage = (e: MessageEvent<GroupMessage>) => onMessage(e.data)
  const closed = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()))
  closed.then(() => channel.close())
  const group: Group = {
    post(message) {
      if (!signal.aborted) channel.postMessage(message)
    },
    async countTabs() {
      const { held = [] } = await navigator.locks.query()
      return held.filter((lock) => lock.name?.startsWith(member)).length || 1
    },
  }
  navigator.locks
    .request(member + tabId, { signal }, () => {
      group.post({ type: 'hello' })
      navigator.locks.request(key, { signal }, () => lead(group)).catch(noop)
      return closed
    })
    .catch(noop)
  return group
}
