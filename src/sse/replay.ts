import type { SseClient } from './client.js'
import { compareEventIds } from './event-id.js'
import { encodeFrameText, isValidEventId } from './frame.js'
import type { ReplayWindow, StoredEvent } from './history.js'
import { isEntitled } from './target.js'
import type { ConnectInfo } from './types.js'

export interface Replay {
  frames: Buffer[]
  replayed: number
  /** The id of the last event of the window (replayed or not), null when nothing is replayed. */
  lastReplayed: string | null
  recovered: boolean
}

/**
 * The frames of a window that `client` may see. All or nothing: past `maxBytes` nothing is
 * replayed and the window counts as not recovered, since a partial replay would hide a gap.
 */
export function replayFor(client: SseClient, window: ReplayWindow | null, maxBytes: number): Replay {
  if (window === null) return { frames: [], replayed: 0, lastReplayed: null, recovered: false }
  const frames: Buffer[] = []
  let bytes = 0
  for (const event of window.events) {
    if (!isEntitled(event.target, client.id, client.userId, client.topics)) continue
    frames.push(event.frame)
    bytes += event.frame.length
  }
  if (bytes > maxBytes) return { frames: [], replayed: 0, lastReplayed: null, recovered: false }
  const last = window.events[window.events.length - 1]
  return { frames, replayed: frames.length, lastReplayed: last?.id ?? null, recovered: window.recovered }
}

/**
 * The first bytes of every stream: the `retry` hint and `event: connected`. Without replayed
 * frames it carries the latest id, so that a reconnect resumes from here, not from nothing.
 */
export function connectedFrame(
  client: SseClient,
  replay: Replay,
  requestedId: string | null,
  latestId: string | null,
  retryMs: number,
  now: number,
): { frame: Buffer; info: ConnectInfo } {
  // A client-sent id is echoed only when well formed: it came from outside.
  const latest = replay.lastReplayed ?? latestId ?? (isValidEventId(requestedId) ? requestedId : null)
  const { recovered, replayed } = replay
  const text = encodeFrameText({
    retry: retryMs,
    id: replayed === 0 && latest !== null ? latest : undefined,
    event: 'connected',
    data: {
      clientId: client.id,
      userId: client.userId,
      anonymous: client.userId === null,
      timestamp: new Date(now).toISOString(),
      lastEventId: latest,
      recovered,
      replayed,
      topics: client.topics,
    },
  })
  const info = { requestedLastEventId: requestedId, lastEventId: latest, recovered, replayed }
  return { frame: Buffer.from(text, 'utf8'), info }
}

export interface StartOptions {
  requestedId: string | null
  latestId: string | null
  retryMs: number
  now: number
  /** REPLAY_MAX_BYTES: a larger replay is none at all (`recovered: false`). */
  maxBytes: number
}

/**
 * Queues the first frames of a stream: `connected`, the events it missed, then those published
 * while its replay was being read (`held`), each exactly once: a held event the replay already
 * carried is skipped.
 */
export function writeStart(
  client: SseClient,
  held: readonly StoredEvent[] | null,
  window: ReplayWindow | null,
  options: StartOptions,
): ConnectInfo {
  const replay = replayFor(client, window, options.maxBytes)
  const { requestedId, latestId, retryMs, now } = options
  const { frame, info } = connectedFrame(client, replay, requestedId, latestId, retryMs, now)
  client.write(frame, 1)
  client.started = true
  for (const replayed of replay.frames) client.write(replayed)
  const after = replay.lastReplayed
  for (const event of held ?? []) {
    if (after === null || compareEventIds(event.id, after) > 0) client.write(event.frame)
  }
  return info
}
