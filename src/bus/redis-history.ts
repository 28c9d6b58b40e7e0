import { isValidEventId } from '../sse/frame.js'
import type { EventHistory, ReplayWindow, StoredEvent } from '../sse/history.js'
import type { BusEvent } from './bus.js'
import { idTime } from './bus.js'
import { decodeEntry, eventsKey, type RedisClient } from './redis-bus.js'

export interface RedisHistoryOptions {
  /** A command connection (never the blocked reader). */
  client: RedisClient
  prefix: string
  /** HISTORY_SIZE: a client further behind than this many events is not recovered. */
  maxEvents: number
  /** HISTORY_TTL_MS: events older than this are not replayed; 0 for no age limit. */
  ttlMs: number
  /** Encodes an event for the wire (the manager's `createEvent`). */
  toStored(event: BusEvent): StoredEvent
  /** The last id this instance delivered: what a new stream is told is the latest. */
  latestId(): string | null
  now?: () => number
}

const UNKNOWN: ReplayWindow = Object.freeze({ recovered: false, events: [] })
const NOTHING_MISSED: ReplayWindow = Object.freeze({ recovered: true, events: [] })

interface StreamEntry {
  id: string
  message: Record<string, string>
}

/**
 * The replay history shared by every instance: the bus's own stream, read with
 * XRANGE. Appending is the bus's job (XADD), so `append` does nothing here.
 */
export class RedisHistory implements EventHistory {
  readonly #client: RedisClient
  readonly #key: string
  readonly #maxEvents: number
  readonly #ttlMs: number
  readonly #toStored: (event: BusEvent) => StoredEvent
  readonly #latestId: () => string | null
  readonly #now: () => number
  #size = 0

  constructor(options: RedisHistoryOptions) {
    this.#client = options.client
    this.#key = eventsKey(options.prefix)
    this.#maxEvents = Math.max(0, Math.floor(options.maxEvents))
    this.#ttlMs = options.ttlMs
    this.#toStored = options.toStored
    this.#latestId = options.latestId
    this.#now = options.now ?? Date.now
  }

  /** The stream length when `maintain()` last ran. */
  get size(): number {
    return this.#size
  }

  append(): void {}

  latestId(): string | null {
    return this.#latestId()
  }

  async since(lastEventId: string): Promise<ReplayWindow> {
    if (this.#maxEvents === 0 || !isValidEventId(lastEventId)) return UNKNOWN
    // One round trip, one snapshot: is the id still kept, and what came after it.
    const [self, after] = (await this.#client
      .multi()
      .xRange(this.#key, lastEventId, lastEventId)
      .xRange(this.#key, `(${lastEventId}`, '+', { COUNT: this.#maxEvents + 1 })
      .exec()) as unknown as [StreamEntry[] | null, StreamEntry[] | null]
    const events = after ?? []
    const kept = (self ?? []).length > 0 && !this.#expired(lastEventId)
    if (!kept) {
      // Trimmed away by age with nothing after it: the client missed nothing.
      return events.length === 0 && lastEventId === this.#latestId() ? NOTHING_MISSED : UNKNOWN
    }
    if (events.length > this.#maxEvents) return UNKNOWN
    if (events.length === 0) return NOTHING_MISSED
    const stored: StoredEvent[] = []
    for (const entry of events) {
      const event = decodeEntry(entry)
      if (event !== null) stored.push(this.#toStored(event))
    }
    return { recovered: true, events: stored }
  }

  /** Trims entries past HISTORY_TTL_MS (`MINID ~`) and refreshes `size`. Run now and then. */
  async maintain(): Promise<void> {
    if (this.#ttlMs > 0) {
      const cutoff = Math.max(0, this.#now() - this.#ttlMs)
      await this.#client.xTrim(this.#key, 'MINID', `${cutoff}-0`, { strategyModifier: '~' })
    }
    this.#size = await this.#client.xLen(this.#key)
  }

  #expired(id: string): boolean {
    return this.#ttlMs > 0 && idTime(id) < this.#now() - this.#ttlMs
  }
}
