/** `connecting` until the stream's first event, `open` while it streams, `closed` for good. */
export type ConnectionState = 'connecting' | 'open' | 'closed'

/** One event, as every handler receives it. */
export interface SseEvent<T = unknown> {
  /** The event's name (`message` when the server gave none). */
  name: string
  /** The data parsed as JSON, or the text itself when it is not JSON. */
  data: T
  /** The data as it arrived. */
  text: string
  /** The event's own `id:`, when it had one (heartbeats and `disconnected` have none). */
  id: string | undefined
}

export type EventHandler<T = unknown> = (event: SseEvent<T>) => void

/** A token, or a function the client calls for a fresh one when the server says the last one expired. */
export type TokenSource = string | (() => string | Promise<string>)

/** Why the state changed, when the server or the network said so. */
export interface StateDetail {
  /** The `disconnected` event's reason (`server_disconnect`, `token_expired`, ...). */
  reason?: string
  /** The HTTP status of a refused (re)connect. */
  status?: number
  /** The service's error code (`SSE_ERR_...`) of a refused (re)connect. */
  code?: string
  message?: string
}

/** How this tab takes part in the stream its tabs share. */
export interface ShareInfo {
  /** False when this tab holds a stream of its own (`share: false`, or no Web Locks or BroadcastChannel). */
  shared: boolean
  /** How many tabs share the stream, this one included. */
  tabs: number
  /** Whether this tab holds the stream. */
  leader: boolean
  /** This tab's id within the group. */
  tabId: string
  /** The leading tab's id, when one is known. */
  leaderTab: string | null
}

export interface ConnectOptions {
  /** The stream's URL (`/api/sse` of the service), relative to the page or absolute. */
  url: string | URL
  /** Without one the stream is anonymous; with one the client never falls back to anonymous. */
  token?: TokenSource
  /** Sent as `?topic=a&topic=b`. */
  topics?: readonly string[]
  /** Send cookies to a service on another origin (`AUTH_COOKIE`), as EventSource's `withCredentials`. */
  withCredentials?: boolean
  /** Resume after this event id when this tab opens the stream. */
  lastEventId?: string
  /**
   * `true` (the default): one stream for all tabs of this origin with the same URL, topics and user.
   * `false`: a stream of its own. A string: share only with tabs that pass the same string.
   */
  share?: boolean | string
  onStateChange?: (state: ConnectionState, detail: StateDetail) => void
  onShareChange?: (share: ShareInfo) => void
}

export interface SseClient {
  readonly state: ConnectionState
  /** The id the service gave the stream (`connected.clientId`), or null before it is known. */
  readonly clientId: string | null
  /** The newest event id this tab has received; a reconnect resumes after it. */
  readonly lastEventId: string | undefined
  readonly share: ShareInfo
  /** The stream's topics: those asked for, then those the service confirms (`connected`, `subscriptions`). */
  readonly topics: readonly string[]
  /** Calls `handler` for each event named `name`; returns a function that removes it. */
  on<T = unknown>(name: string, handler: EventHandler<T>): () => void
  /** Removes a handler added with `on` (or with `onAny` when `name` is `*`). */
  off<T = unknown>(name: string, handler: EventHandler<T>): void
  /** Calls `handler` for every event whatever its name; returns a function that removes it. */
  onAny(handler: EventHandler): () => void
  /** Ends the stream (another tab takes it over when this one led) and every handler call. */
  close(): void
}
