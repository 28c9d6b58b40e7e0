import type { SseClient } from './client.js'
import type { Fanout } from './fanout.js'
import { isValidEventId } from './frame.js'
import type { EventHistory, ReplayWindow } from './history.js'
import { writeStart } from './replay.js'
import { type EventTarget, isEntitled } from './target.js'
import type { ConnectInfo } from './types.js'

export interface StreamStartOptions {
  fanout: Fanout
  history: EventHistory | undefined
  /** The newest id delivered here: a stream without a replay is caught up to it. */
  latestEventId: () => string | null
  retryMs: number
  /** REPLAY_MAX_BYTES: a larger replay is none at all. */
  replayMaxBytes: number
  now: () => number
  onConnect?: (client: SseClient, info: ConnectInfo) => void
}

/**
 * The first bytes of a registered stream: the `retry` hint, `event: connected` and, for a
 * `Last-Event-ID`, the events the client missed. When the history answers asynchronously
 * (Redis), the live events published meanwhile are held and follow the replay, each once.
 */
export class StreamStart {
  readonly #o: StreamStartOptions

  constructor(options: StreamStartOptions) {
    this.#o = options
  }

  begin(client: SseClient, lastEventId: string | null): void {
    const history = this.#o.history
    if (lastEventId === null || history === undefined) {
      this.#write(client, lastEventId, null)
      return
    }
    const limit = {
      maxBytes: this.#o.replayMaxBytes,
      entitled: (target: EventTarget) => isEntitled(target, client.id, client.userId, client.topics),
    }
    const window = isValidEventId(lastEventId)
      ? history.since(lastEventId, limit)
      : { recovered: false, events: [] }
    if (!(window instanceof Promise)) {
      this.#write(client, lastEventId, window)
      return
    }
    // Live events are held from here on and follow whatever is replayed: without a replay, the
    // stream is caught up to what was delivered before them, not to the newest of them.
    const caughtUpTo = this.#o.latestEventId()
    this.#o.fanout.hold(client)
    window.then(
      (w) => this.#write(client, lastEventId, w, caughtUpTo),
      () => this.#write(client, lastEventId, { recovered: false, events: [] }, caughtUpTo),
    )
  }

  #write(
    client: SseClient,
    requestedId: string | null,
    window: ReplayWindow | null,
    latestId = this.#o.latestEventId(),
  ): void {
    if (client.closed) return
    const { fanout } = this.#o
    const held = client.held
    fanout.release(client)
    const info = writeStart(client, held, window, {
      requestedId,
      latestId,
      retryMs: this.#o.retryMs,
      now: this.#o.now(),
      maxBytes: this.#o.replayMaxBytes,
    })
    // First bytes go out now, not on the next turn; a replay is judged by how fast it drains.
    fanout.flushClient(client)
    this.#o.onConnect?.(client, info)
  }
}
