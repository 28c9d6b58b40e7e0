import { isValidEventId } from '../sse/frame.js'
import type { EventHistory, ReplayLimit, ReplayWindow, StoredEvent } from '../sse/history.js'
import { targetBytes } from '../sse/target.js'
import type { BusEvent } from './bus.js'
import { idTime } from './bus.js'
import type { RedisClient } from './redis-client.js'
import { decodeEntry, eventsKey } from './redis-entries.js'

export interface RedisHistoryOptions {
  /** A command connection (never the blocked reader). */
  client: RedisClient
  prefix: string
  /** HISTORY_SIZE: a client further behind than this many events is not recovered. */
  maxEvents: number
  /** HISTORY_TTL_MS: events older than this are not replayed; 0 for no age limit. */
  ttlMs: number
  /**
   * REPLAY_MAX_BYTES: one replay reads at most READ_FACTOR times this from Redis (events for
   * others included) before it gives up with `recovered: false`.
   */
  replayMaxBytes: number
  /** An event as the wire needs it, framed once (the cluster's `toStored`). */
  toStored(event: BusEvent): StoredEvent
  /** The last id this instance delivered: what a new stream is told is the latest. */
  latestId(): string | null
  /**
   * Trims entries older than an id (the bus's `trim`, which keeps the stream's byte total
   * exact); without it, `maintain()` trims with XTRIM MINID.
   */
  trimBefore?: (minId: string) => Promise<void>
  now?: () => number
}

const UNKNOWN: ReplayWindow = Object.freeze({ recovered: false, events: [] })
const NOTHING_MISSED: ReplayWindow = Object.freeze({ recovered: true, events: [] })
/** How many times REPLAY_MAX_BYTES one replay may read, counting the events of others. */
export const READ_FACTOR = 4
/** Pages start small and grow to about a quarter of REPLAY_MAX_BYTES, so reading stops soon past it. */
const FIRST_PAGE = 8
const MAX_PAGE = 1024

interface StreamEntry {
  id: string
  message: Record<string, string>
}

function entryBytes(entry: StreamEntry): number {
  let bytes = entry.id.length
  for (const key in entry.message) bytes += key.length + (entry.message[key] as string).length
  return bytes
}

/** A decoded event's frame and its target's ids: a send to 1,000 users holds 1,000 strings. */
function heldBytes(stored: StoredEvent): number {
  return stored.frame.length + targetBytes(stored.target)
}

/**
 * The replay history shared by every instance: the bus's own stream, read with XRANGE.
 * Appending is the bus's job (XADD), so `append` does nothing here.
 *
 * What one reconnect can cost is bounded: an id that is not in the stream reads one entry
 * at most; otherwise the stream is read in pages until the connection's own events pass
 * REPLAY_MAX_BYTES or everything read passes READ_FACTOR times it. Decoded frames are kept in
 * a cache bounded by bytes and concurrent replays share page reads, so a reconnect storm
 * decodes each event once, not once per connection.
 */
export class RedisHistory implements EventHistory {
  readonly #client: RedisClient
  readonly #key: string
  readonly #maxEvents: number
  readonly #ttlMs: number
  readonly #maxBytes: number
  readonly #toStored: (event: BusEvent) => StoredEvent
  readonly #latestId: () => string | null
  readonly #now: () => number
  readonly #trimBefore: ((minId: string) => Promise<void>) | undefined
  readonly #frames = new Map<string, StoredEvent>()
  /** What the decoded events kept for sharing hold: frames and target ids (REPLAY_MAX_BYTES at most). */
  #frameBytes = 0
  readonly #pages = new Map<string, Promise<StreamEntry[]>>()
  #size = 0
  #bytesRead = 0

  constructor(options: RedisHistoryOptions) {
    this.#client = options.client
    this.#key = eventsKey(options.prefix)
    this.#maxEvents = Math.max(0, Math.floor(options.maxEvents))
    this.#ttlMs = options.ttlMs
    this.#maxBytes = options.replayMaxBytes
    this.#toStored = options.toStored
    this.#latestId = options.latestId
    this.#now = options.now ?? Date.now
    this.#trimBefore = options.trimBefore
  }

  /** The stream length when `maintain()` last ran. */
  get size(): number {
    return this.#size
  }

  /** The decoded events kept for replays to share, and what they hold (for tests). */
  get decoded(): { readonly events: number; readonly bytes: number } {
    return { events: this.#frames.size, bytes: this.#frameBytes }
  }

  /** Bytes of entries read from Redis for replays so far (for tests and metrics). */
  get bytesRead(): number {
    return this.#bytesRead
  }

  append(): void {}

  latestId(): string | null {
    return this.#latestId()
  }

  async since(lastEventId: string, limit?: ReplayLimit): Promise<ReplayWindow> {
    if (this.#maxEvents === 0 || !isValidEventId(lastEventId)) return UNKNOWN
    // Only an id that is still in the stream is worth reading after.
    const self = await this.#page(lastEventId, lastEventId, 1)
    const kept = self.length > 0 && !this.#expired(lastEventId)
    if (!kept) return lastEventId === this.#latestId() ? NOTHING_MISSED : UNKNOWN

    const maxBytes = Math.min(limit?.maxBytes ?? this.#maxBytes, this.#maxBytes)
    const readLimit = maxBytes * READ_FACTOR
    const events: StoredEvent[] = []
    let read = 0
    let entitledBytes = 0
    let count = 0
    let cursor = lastEventId
    for (;;) {
      // The page size depends only on what was read, so concurrent replays from the same id
      // ask for the same pages and share them.
      const average = count === 0 ? 0 : read / count
      const size =
        count === 0
          ? FIRST_PAGE
          : Math.max(1, Math.min(MAX_PAGE, Math.floor(maxBytes / 4 / Math.max(1, average))))
      const page = await this.#page(`(${cursor}`, '+', size)
      for (const entry of page) {
        read += entryBytes(entry)
        count++
        const stored = this.#decode(entry)
        if (stored !== null && (limit === undefined || limit.entitled(stored.target))) {
          entitledBytes += stored.frame.length
          events.push(stored)
        }
        if (count > this.#maxEvents || entitledBytes > maxBytes || read > readLimit) return UNKNOWN
      }
      if (page.length < size) break
      cursor = (page[page.length - 1] as StreamEntry).id
    }
    if (events.length === 0) return NOTHING_MISSED
    return { recovered: true, events }
  }

  /** Trims entries past HISTORY_TTL_MS (`MINID ~`) and refreshes `size`. Run now and then. */
  async maintain(): Promise<void> {
    if (this.#ttlMs > 0) {
      const cutoff = `${Math.max(0, this.#now() - this.#ttlMs)}-0`
      if (this.#trimBefore) await this.#trimBefore(cutoff)
      else await this.#client.xTrim(this.#key, 'MINID', cutoff, { strategyModifier: '~' })
    }
    this.#size = await this.#client.xLen(this.#key)
  }

  /** One XRANGE, shared by every caller asking for the same page at the same time. */
  #page(start: string, end: string, count: number): Promise<StreamEntry[]> {
    const key = `${start} ${end} ${count}`
    let pending = this.#pages.get(key)
    if (pending === undefined) {
      pending = this.#client
        .xRange(this.#key, start, end, { COUNT: count })
        .then((entries) => {
          const page = (entries ?? []) as unknown as StreamEntry[]
          for (const entry of page) this.#bytesRead += entryBytes(entry)
          return page
        })
        .finally(() => this.#pages.delete(key))
      this.#pages.set(key, pending)
    }
    return pending
  }

  /** Decodes an entry once; replays that overlap share the encoded frame. */
  #decode(entry: StreamEntry): StoredEvent | null {
    const cached = this.#frames.get(entry.id)
    if (cached !== undefined) return cached
    const event = decodeEntry(entry)
    if (event === null) return null
    const stored = this.#toStored(event)
    this.#frames.set(entry.id, stored)
    this.#frameBytes += heldBytes(stored)
    // Oldest first out, within what one connection may be replayed.
    for (const [id, old] of this.#frames) {
      if (this.#frameBytes <= this.#maxBytes) break
      this.#frames.delete(id)
      this.#frameBytes -= heldBytes(old)
    }
    return stored
  }

  #expired(id: string): boolean {
    return this.#ttlMs > 0 && idTime(id) < this.#now() - this.#ttlMs
  }
}
