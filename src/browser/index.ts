/**
 * sse-manager's browser client: one stream per browser rather than per tab, token refresh,
 * resume by last event id. An ES module without dependencies (the service serves it at
 * /sse-client/sse-manager.js); native EventSource remains the zero-code alternative.
 */
import { fetchToken, runConnection } from './connection.js'
import { isAfter } from './event-id.js'
import { canShare, type Group, type GroupMessage, joinGroup } from './leader.js'
import type { ParsedMessage } from './parser.js'
import type {
  ConnectionState,
  ConnectOptions,
  EventHandler,
  ShareInfo,
  SseClient,
  SseEvent,
  StateDetail,
} from './types.js'

export type {
  ConnectionState,
  ConnectOptions,
  EventHandler,
  ShareInfo,
  SseClient,
  SseEvent,
  StateDetail,
  TokenSource,
} from './types.js'

/** `*` cannot be an event name (the service allows letters, digits and `_ - . : /`). */
const ANY = '*'
/** Control events carry the stream's position, not a new event: never dropped as already seen. */
const CONTROL = new Set(['connected', 'heartbeat', 'disconnected'])
/** How often the leader counts the tabs, which notices tabs that closed without a word. */
const COUNT_EVERY_MS = 1000

function toEvent(message: ParsedMessage): SseEvent {
  let data: unknown = message.data
  try {
    data = JSON.parse(message.data)
  } catch {
    // not JSON: handlers get the text
  }
  return { name: message.event, data, text: message.data, id: message.id }
}

/** Cheap and stable: a group name must not carry a token, and needs no cryptography. */
function hash(text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(36)
}

/**
 * Which user the token is for, read without verifying (the service verifies): only so that tabs
 * signed in as different users never share a stream.
 */
function identity(token: string | undefined): string {
  if (token === undefined) return 'anonymous'
  try {
    const part = (token.split('.')[1] ?? '').replace(/-/g, '+').replace(/_/g, '/')
    const sub: unknown = JSON.parse(atob(part)).sub
    if (typeof sub === 'string') return `user:${sub}`
  } catch {
    // not a JWT
  }
  return `token:${hash(token)}`
}

export function connect(options: ConnectOptions): SseClient {
  const controller = new AbortController()
  const signal = controller.signal
  const handlers = new Map<string, Set<EventHandler>>()
  const base = new URL(String(options.url), globalThis.location?.href)
  let topics = [...new Set(options.topics ?? [])].sort()
  /** With the topics the stream has now: the service may have changed them (`subscriptions`). */
  const streamUrl = () => {
    const url = new URL(base)
    for (const topic of topics) url.searchParams.append('topic', topic)
    return url.href
  }
  let state: ConnectionState = 'connecting'
  let clientId: string | null = null
  let lastEventId = options.lastEventId
  let detail: StateDetail = {}
  let share: ShareInfo = {
    shared: false,
    tabs: 1,
    leader: false,
    tabId: Math.random().toString(36).slice(2, 10),
    leaderTab: null,
  }
  let group: Group | undefined

  function setState(next: ConnectionState, why: StateDetail): void {
    detail = why
    if (state === 'closed' || next === state) return
    state = next
    options.onStateChange?.(next, why)
  }

  function setShare(patch: Partial<ShareInfo>): void {
    const next = { ...share, ...patch }
    if (JSON.stringify(next) === JSON.stringify(share)) return
    share = next
    options.onShareChange?.(share)
  }

  function call(handler: EventHandler, event: SseEvent): void {
    try {
      handler(event)
    } catch (err) {
      // One broken handler must not stop the others, nor the stream: report it as uncaught.
      setTimeout(() => {
        throw err
      })
    }
  }

  /** Every event passes here once per tab, whether it came off this tab's stream or the leader's. */
  function deliver(event: SseEvent): void {
    if (state === 'closed') return
    if (event.id) {
      // A new leader resumes from where it was, so other tabs may have had the first events again.
      if (!isAfter(event.id, lastEventId)) {
        if (!CONTROL.has(event.name)) return
      } else {
        lastEventId = event.id
      }
    }
    const data = event.data as { clientId?: unknown; topics?: unknown } | null
    if (event.name === 'connected' && typeof data?.clientId === 'string') clientId = data.clientId
    if ((event.name === 'connected' || event.name === 'subscriptions') && Array.isArray(data?.topics)) {
      topics = data.topics.filter((topic): topic is string => typeof topic === 'string')
    }
    for (const handler of [...(handlers.get(event.name) ?? []), ...(handlers.get(ANY) ?? [])]) {
      call(handler, event)
    }
  }

  function finish(why: StateDetail): void {
    setState('closed', why)
    controller.abort()
  }

  function status(): Extract<GroupMessage, { type: 'status' }> {
    return { type: 'status', state, detail, clientId, topics, leader: share.tabId, tabs: share.tabs }
  }

  async function lead(group: Group, initialToken: string | undefined): Promise<void> {
    setShare({ leader: true, leaderTab: share.tabId })
    // Told to the others when the count changes (and to each tab that says hello, below).
    const count = async () => {
      const tabs = await group.countTabs()
      if (tabs === share.tabs) return
      setShare({ tabs })
      group.post(status())
    }
    const timer = setInterval(() => count().catch(() => {}), COUNT_EVERY_MS)
    await count().catch(() => {})
    group.post(status())
    const end = await runConnection(
      {
        url: streamUrl,
        token: options.token,
        withCredentials: options.withCredentials,
        initialToken,
        lastEventId: () => lastEventId,
        onMessage(message) {
          const event = toEvent(message)
          deliver(event)
          group.post({ type: 'event', event })
        },
        onState(next, why) {
          setState(next, why)
          group.post(status())
        },
      },
      signal,
    )
    clearInterval(timer)
    if (end !== undefined) {
      group.post({ type: 'end', detail: end })
      finish(end)
    }
  }

  function onMessage(message: GroupMessage): void {
    if (message.type === 'hello' || message.type === 'bye') {
      if (share.leader) {
        group
          ?.countTabs()
          .then((tabs) => {
            setShare({ tabs })
            group?.post(status())
          })
          .catch(() => {})
      }
    } else if (share.leader) {
      // Only the leader speaks for the stream; nothing to take from others.
    } else if (message.type === 'event') {
      deliver(message.event)
    } else if (message.type === 'status') {
      if (message.clientId !== null) clientId = message.clientId
      topics = message.topics
      setShare({ tabs: message.tabs, leaderTab: message.leader })
      setState(message.state, message.detail)
    } else {
      finish(message.detail)
    }
  }

  async function start(): Promise<void> {
    // No callback runs inside connect(): the caller has not got its client yet.
    await Promise.resolve()
    const sharing = options.share !== false && canShare()
    if (!sharing) {
      setShare({ leader: true, leaderTab: share.tabId })
      const end = await runConnection(
        {
          url: streamUrl,
          token: options.token,
          withCredentials: options.withCredentials,
          lastEventId: () => lastEventId,
          onMessage: (message) => deliver(toEvent(message)),
          onState: setState,
        },
        signal,
      )
      if (end !== undefined) finish(end)
      return
    }
    // The group is per user: the token says which, so a token source is asked once up front.
    let token: string | undefined
    if (typeof options.share !== 'string' && options.token !== undefined) {
      token = await fetchToken(options.token, signal)
      if (signal.aborted) return
    }
    const who = typeof options.share === 'string' ? `share:${options.share}` : identity(token)
    setShare({ shared: true })
    group = joinGroup(`sse-manager ${streamUrl()} ${who}`, share.tabId, signal, onMessage, (g) =>
      lead(g, token),
    )
  }

  function off<T>(name: string, handler: EventHandler<T>): void {
    handlers.get(name)?.delete(handler as EventHandler)
  }

  function on<T>(name: string, handler: EventHandler<T>): () => void {
    let set = handlers.get(name)
    if (set === undefined) {
      set = new Set()
      handlers.set(name, set)
    }
    set.add(handler as EventHandler)
    return () => off(name, handler)
  }

  start()

  return {
    get state() {
      return state
    },
    get clientId() {
      return clientId
    },
    get lastEventId() {
      return lastEventId
    },
    get share() {
      return share
    },
    get topics() {
      return topics
    },
    on,
    off,
    onAny: (handler) => on(ANY, handler),
    close() {
      if (state === 'closed') return
      if (share.leader && group !== undefined) {
        // The others wait for the next leader, which the browser picks once this tab lets go.
        group.post({ ...status(), state: 'connecting', leader: null, tabs: share.tabs - 1 })
      }
      group?.post({ type: 'bye' })
      finish({})
      handlers.clear()
    },
  }
}
