import type { BusLogger } from './redis-client.js'
import type { StreamReader } from './redis-reader.js'

/** Waiting publishes are logged at most this often. */
const PACE_LOG_MS = 10_000

export interface ReaderPacerOptions {
  reader: StreamReader
  /** The stream's bounds: max(HISTORY_SIZE, 1000) entries, HISTORY_MAX_BYTES. */
  maxLength: number
  maxBytes: number
  /** REDIS_LAG_WAIT_MS: the longest a publish waits for the reader (0 = never). */
  lagWaitMs: number
  log: BusLogger
}

/**
 * Backpressure on publishers. The stream is also every reader's buffer: publishers that
 * outrun this instance's reader (a busy process, a slow loop) would have entries trimmed
 * before it reads them, a gap that ends every stream here. So a publish that would put the
 * reader more than half the stream behind (counting what is in flight) first waits for it to
 * catch up; past REDIS_LAG_WAIT_MS it is refused (503, nothing stored). "The stream" is what
 * its bounds keep: HISTORY_SIZE entries, or fewer when HISTORY_MAX_BYTES comes first (estimated
 * from the entries' size at the last publish). This paces the publishers of this instance
 * only; the others' publishes count as this instance learns of them, at its next answer.
 */
export class ReaderPacer {
  readonly #reader: StreamReader
  readonly #maxLength: number
  readonly #maxBytes: number
  readonly #lagWaitMs: number
  readonly #log: BusLogger
  /** Publishes that waited for the reader; when that was last logged, and the count then. */
  #paced = 0
  #pacedLoggedAt = 0
  #pacedAtLog = 0
  /** The stream's `entries-added` at the last answer, what this instance has in flight, half the stream. */
  #lastAdded = 0
  /** The reader's epoch when `#lastAdded` was learnt: a count from before a failover means nothing now. */
  #lastAddedEpoch = -1
  #inFlight = 0
  #allowed: number

  constructor(options: ReaderPacerOptions) {
    this.#reader = options.reader
    this.#maxLength = options.maxLength
    this.#maxBytes = options.maxBytes
    this.#lagWaitMs = options.lagWaitMs
    this.#log = options.log
    this.#allowed = Math.floor(this.#maxLength / 2)
  }

  /** Publishes that waited for this instance's reader to catch up. */
  get paced(): number {
    return this.#paced
  }

  /**
   * Waits until `n` more events may go; false when the reader stayed behind for REDIS_LAG_WAIT_MS.
   * When true, the `n` events count as in flight until `settled(n)`.
   */
  async room(n: number): Promise<boolean> {
    const deadline = Date.now() + this.#lagWaitMs
    let waited = false
    for (;;) {
      const epoch = this.#reader.epoch
      const target = this.#target(n)
      if (target === null || this.#reader.ordinal >= target) {
        // Counted at once, so that publishes woken together do not all pass on the same count.
        this.#inFlight += n
        return true
      }
      const left = deadline - Date.now()
      if (left <= 0) return false
      if (!waited) {
        waited = true
        this.#paced++
        this.#logPacing(target)
      }
      await this.#reader.waitFor(target, left)
      // The reader started counting anew (a failover): the old target means nothing; look again.
      if (this.#reader.epoch !== epoch) continue
    }
  }

  /** Redis answered (or failed) the publish of `n` events that `room` let go. */
  settled(n: number): void {
    this.#inFlight -= n
  }

  /** What an answer says of the stream: how many entries it ever had, how many it has, their bytes. */
  learn(added: number, length: number, bytes: number): void {
    if (!(added > 0)) return
    this.#lastAdded = added
    this.#lastAddedEpoch = this.#reader.epoch
    const byBytes = bytes > 0 ? Math.floor((length * this.#maxBytes) / bytes) : Number.POSITIVE_INFINITY
    this.#allowed = Math.max(1, Math.floor(Math.min(this.#maxLength, byBytes) / 2))
  }

  /** The entry the reader must have delivered before `n` more may go; null when nothing holds them back. */
  #target(n: number): number | null {
    if (this.#lagWaitMs === 0 || n === 0 || !this.#reader.reading) return null
    const base = this.#lastAddedEpoch === this.#reader.epoch ? this.#lastAdded : this.#reader.ordinal
    const known = base + this.#inFlight
    // A batch larger than half the stream goes once the reader has read everything before it.
    return Math.min(known, known + n - this.#allowed)
  }

  /** Once per PACE_LOG_MS at most, however many publishes wait: the metric counts each. */
  #logPacing(target: number): void {
    const now = Date.now()
    if (now - this.#pacedLoggedAt < PACE_LOG_MS) return
    this.#log.warn(
      { readerAt: this.#reader.ordinal, mustReach: target, paced: this.#paced - this.#pacedAtLog },
      "this instance's reader is more than half the Redis stream behind: publishes wait for it",
    )
    this.#pacedLoggedAt = now
    this.#pacedAtLog = this.#paced
  }
}
