import type { Bus, BusMessage } from './bus.js'

/** What a publish with an Idempotency-Key carries to the store. */
export interface IdempotentPublish {
  /** The record's key: scoped to the publisher and the route by the caller, and hashed. */
  readonly key: string
  /** A hash of the request body: the same key with another body is a mismatch. */
  readonly fingerprint: string
  readonly ttlMs: number
}

/** What the first request with a key left behind. */
export interface IdempotencyRecord {
  /** The ids its events got, in order. */
  readonly ids: readonly string[]
  /** Its final answer (JSON), once it gave one; null while it is in flight or when it never did. */
  readonly answer: string | null
  /** It was stored but failed afterwards (its replicas did not confirm it): it will not answer. */
  readonly failed: boolean
  /** How long ago it published. */
  readonly ageMs: number
}

export type PublishOutcome =
  /** The key was new: the events were published (or refused, each id then an Error, and nothing kept). */
  | { kind: 'published'; ids: (string | Error)[] }
  /** The key was seen with the same body: nothing was published. */
  | { kind: 'seen'; record: IdempotencyRecord }
  /** The key was seen with another body: nothing was published. */
  | { kind: 'mismatch' }

/**
 * Remembers publishes by key for a while, so that a repeat is answered, not published again.
 * Checking the key and publishing are one step: over Redis one script both records the key and
 * appends the events, so even a reply lost on the way back cannot let a retry publish twice.
 */
export interface IdempotencyStore {
  publish(
    key: string,
    fingerprint: string,
    messages: readonly BusMessage[],
    ttlMs: number,
  ): Promise<PublishOutcome>
  /** The record of `key`, as `publish` would report it; null when there is none (expired, or nothing was kept). */
  read(key: string, fingerprint: string): Promise<PublishOutcome | null>
  /** Stores the first request's answer (the record keeps its expiry). */
  complete(key: string, answer: string): Promise<void>
  /** Resolves once what was published under `key` is as durable as a publish must be (REDIS_WAIT_REPLICAS). */
  confirm(key: string): Promise<void>
}

/** How many keys the in-memory store holds within IDEMPOTENCY_TTL_MS; past it the oldest are forgotten. */
export const MEMORY_IDEMPOTENCY_MAX_KEYS = 100_000
/** ... and how many bytes of records (ids and answers: a batch's answer can be large); the oldest go first. */
export const MEMORY_IDEMPOTENCY_MAX_BYTES = 32 * 1024 * 1024
/** What a record costs besides its ids and answer: the key, the fingerprint, the object. */
const RECORD_OVERHEAD_BYTES = 256

interface Entry {
  readonly fingerprint: string
  ids: string[]
  answer: string | null
  bytes: number
  readonly at: number
  readonly expiresAt: number
}

function sizeOf(entry: Entry): number {
  let bytes = RECORD_OVERHEAD_BYTES + (entry.answer?.length ?? 0)
  // Each id is a string of its own (a header of about 24 bytes) and a slot in its array.
  for (const id of entry.ids) bytes += id.length + 32
  return bytes
}

function outcomeOf(entry: Entry, fingerprint: string, now: number): PublishOutcome {
  if (entry.fingerprint !== fingerprint) return { kind: 'mismatch' }
  return {
    kind: 'seen',
    record: { ids: entry.ids, answer: entry.answer, failed: false, ageMs: now - entry.at },
  }
}

/**
 * The single-process store: a Map in insertion order, so the oldest key is first and expiry
 * and the bounds (count and bytes) cost O(1) per publish. The key is reserved before the bus is called,
 * so a repeat arriving meanwhile sees the first in flight; a publish the bus refused keeps nothing.
 */
export class MemoryIdempotency implements IdempotencyStore {
  readonly #bus: Bus
  readonly #maxKeys: number
  readonly #maxBytes: number
  readonly #now: () => number
  readonly #entries = new Map<string, Entry>()
  #bytes = 0
  #forgotten = 0

  constructor(bus: Bus, options: { maxKeys?: number; maxBytes?: number; now?: () => number } = {}) {
    this.#bus = bus
    this.#maxKeys = options.maxKeys ?? MEMORY_IDEMPOTENCY_MAX_KEYS
    this.#maxBytes = options.maxBytes ?? MEMORY_IDEMPOTENCY_MAX_BYTES
    this.#now = options.now ?? Date.now
  }

  /** Bytes of records held (an estimate: ids, answers and a fixed cost per record). */
  get bytes(): number {
    return this.#bytes
  }

  get size(): number {
    return this.#entries.size
  }

  /** Keys dropped before their TTL because the store was full. */
  get forgotten(): number {
    return this.#forgotten
  }

  async publish(
    key: string,
    fingerprint: string,
    messages: readonly BusMessage[],
    ttlMs: number,
  ): Promise<PublishOutcome> {
    const now = this.#now()
    this.#expire(now)
    const seen = this.#entries.get(key)
    if (seen !== undefined) return outcomeOf(seen, fingerprint, now)
    const entry: Entry = { fingerprint, ids: [], answer: null, bytes: 0, at: now, expiresAt: now + ttlMs }
    this.#set(key, entry)
    const ids = await this.#bus.publishMany(messages)
    const published = ids.filter((id): id is string => typeof id === 'string')
    if (published.length === 0) {
      if (this.#entries.get(key) === entry) this.#delete(key, entry)
    } else if (this.#entries.get(key) === entry) {
      entry.ids = published
      this.#set(key, entry)
    }
    return { kind: 'published', ids }
  }

  async read(key: string, fingerprint: string): Promise<PublishOutcome | null> {
    const now = this.#now()
    this.#expire(now)
    const entry = this.#entries.get(key)
    return entry === undefined ? null : outcomeOf(entry, fingerprint, now)
  }

  async complete(key: string, answer: string): Promise<void> {
    const entry = this.#entries.get(key)
    if (entry === undefined) return
    entry.answer = answer
    this.#set(key, entry)
  }

  async confirm(): Promise<void> {}

  /** (Re)counts `entry` and forgets the oldest records past either bound (never `key` itself). */
  #set(key: string, entry: Entry): void {
    this.#bytes -= entry.bytes
    entry.bytes = sizeOf(entry)
    this.#bytes += entry.bytes
    this.#entries.set(key, entry)
    for (const [oldest, old] of this.#entries) {
      if (this.#entries.size <= this.#maxKeys && this.#bytes <= this.#maxBytes) break
      if (oldest === key) continue
      this.#delete(oldest, old)
      this.#forgotten++
    }
  }

  #delete(key: string, entry: Entry): void {
    this.#entries.delete(key)
    this.#bytes -= entry.bytes
  }

  #expire(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt > now) break
      this.#delete(key, entry)
    }
  }
}
