import { compareEventIds } from './event-id.js'
import { type EventTarget, targetBytes } from './target.js'

/** A published event as kept for replay: its encoded frame and whom it was for. */
export interface StoredEvent {
  readonly id: string
  readonly event: string
  readonly frame: Buffer
  readonly target: EventTarget
  readonly publishedAt: number
}

export interface ReplayWindow {
  /** True when every event after the requested id is still known. */
  readonly recovered: boolean
  /** The events after the requested id, oldest first, for every target (the caller filters). */
  readonly events: readonly StoredEvent[]
}

/** What one connection may be replayed: the history may stop reading past it. */
export interface ReplayLimit {
  /** The most bytes of frames the connection is entitled to; past it the window is not recovered. */
  readonly maxBytes: number
  /** Whether the connection may receive an event for `target`. */
  entitled(target: EventTarget): boolean
}

/**
 * Recent events, for clients that reconnect with `Last-Event-ID`. A backend may answer
 * synchronously (memory) or asynchronously (a shared store); the manager handles both.
 * Either way the frames are shared, never copied per connection.
 */
export interface EventHistory {
  append(event: StoredEvent): void
  since(lastEventId: string, limit?: ReplayLimit): ReplayWindow | Promise<ReplayWindow>
  latestId(): string | null
  readonly size: number
}

export interface MemoryHistoryOptions {
  /** The most events kept. 0 keeps none. */
  maxEvents: number
  /** The most bytes of frames kept (HISTORY_MAX_BYTES); the oldest go first past it. */
  maxBytes?: number
  /** How long an event is kept, in milliseconds. 0 keeps events until pushed out by count. */
  ttlMs: number
  now?: () => number
}

const UNKNOWN: ReplayWindow = Object.freeze({ recovered: false, events: [] })
const NOTHING_MISSED: ReplayWindow = Object.freeze({ recovered: true, events: [] })

/** What an event costs besides its frame and its target's ids: the object, its id and name (an estimate). */
export const EVENT_OVERHEAD_BYTES = 256

/**
 * What keeping `event` costs: its frame, its own objects and its target's ids (a send to 1,000
 * users holds 1,000 strings, far more than its frame).
 */
export function storedEventBytes(event: StoredEvent): number {
  return event.frame.length + EVENT_OVERHEAD_BYTES + targetBytes(event.target)
}

/** A ring buffer bounded by count, by bytes and by age. */
export class MemoryHistory implements EventHistory {
  readonly #ring: (StoredEvent | undefined)[]
  readonly #capacity: number
  readonly #maxBytes: number
  #bytes = 0
  readonly #ttlMs: number
  readonly #now: () => number
  #head = 0
  #count = 0
  /** The newest id that was pushed out: a client holding it has missed nothing that is lost. */
  #lastEvictedId: string | null = null

  constructor(options: MemoryHistoryOptions) {
    this.#capacity = Math.max(0, Math.floor(options.maxEvents))
    this.#maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY
    // Grown as events come, never allocated up front for a large HISTORY_SIZE.
    this.#ring = []
    this.#ttlMs = options.ttlMs
    this.#now = options.now ?? Date.now
  }

  get size(): number {
    this.#expire()
    return this.#count
  }

  /** Bytes held: frames plus an estimate of each event's own objects and of its target's ids. */
  get bytes(): number {
    return this.#bytes
  }

  append(event: StoredEvent): void {
    if (this.#capacity === 0) {
      this.#lastEvictedId = event.id
      return
    }
    const cost = storedEventBytes(event)
    if (cost > this.#maxBytes) {
      // Larger than the whole budget: nothing older survives it, and it is not kept either.
      while (this.#count > 0) this.#evictOldest()
      this.#lastEvictedId = event.id
      return
    }
    if (this.#count === this.#capacity) this.#evictOldest()
    while (this.#count > 0 && this.#bytes + cost > this.#maxBytes) this.#evictOldest()
    this.#ring[(this.#head + this.#count) % this.#capacity] = event
    this.#count++
    this.#bytes += cost
    this.#expire()
  }

  latestId(): string | null {
    if (this.#count === 0) return this.#lastEvictedId
    return this.#at(this.#count - 1).id
  }

  since(lastEventId: string): ReplayWindow {
    this.#expire()
    if (this.#count === 0) return lastEventId === this.#lastEvictedId ? NOTHING_MISSED : UNKNOWN
    if (lastEventId === this.#lastEvictedId) return { recovered: true, events: this.#slice(0) }
    // Binary search: ids in the ring are strictly increasing.
    let lo = 0
    let hi = this.#count - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const cmp = compareEventIds(this.#at(mid).id, lastEventId)
      if (cmp === 0)
        return mid === this.#count - 1 ? NOTHING_MISSED : { recovered: true, events: this.#slice(mid + 1) }
      if (cmp < 0) lo = mid + 1
      else hi = mid - 1
    }
    return UNKNOWN
  }

  #at(index: number): StoredEvent {
    return this.#ring[(this.#head + index) % this.#capacity] as StoredEvent
  }

  #slice(from: number): StoredEvent[] {
    const out = new Array<StoredEvent>(this.#count - from)
    for (let i = from; i < this.#count; i++) out[i - from] = this.#at(i)
    return out
  }

  #evictOldest(): void {
    const oldest = this.#at(0)
    this.#lastEvictedId = oldest.id
    this.#bytes -= storedEventBytes(oldest)
    this.#ring[this.#head] = undefined
    this.#head = (this.#head + 1) % this.#capacity
    this.#count--
  }

  #expire(): void {
    if (this.#ttlMs <= 0) return
    const cutoff = this.#now() - this.#ttlMs
    while (this.#count > 0 && this.#at(0).publishedAt < cutoff) this.#evictOldest()
  }
}
