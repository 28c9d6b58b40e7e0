import { setTimeout as sleep } from 'node:timers/promises'
import { compareEventIds } from '../sse/event-id.js'
import type { BusHandler } from './bus.js'
import { type BusLogger, messageOf, type RedisClient } from './redis-client.js'
import { decodeRaw } from './redis-entries.js'
import { runScript, TAIL } from './redis-scripts.js'
import { READ_COUNT, rangeRead, type StreamRead, scriptRead, smallUpTo } from './redis-stream-read.js'

/** A delivery longer than this makes where the stream ended before it old news (see `#run`). */
const STALE_AFTER_MS = 1

export interface StreamReaderOptions {
  /** A dedicated connection: XREAD BLOCK holds it. */
  reader: RedisClient
  key: string
  /** Where publishing records the newest large entry's id. */
  largeKey: string
  /** How long one XREAD blocks before the loop looks around again. */
  blockMs: number
  log: BusLogger
  /** Entries this instance never read were trimmed: its connections missed events no one can replay. */
  onGap?: (lastId: string) => void
}

/** A publish waiting for the reader to deliver the stream's `ordinal`-th entry. */
interface Waiter {
  ordinal: number
  wake: () => void
}

/**
 * Reads the stream on its own connection, from the last id it delivered, so that after an outage
 * or a failover it resumes exactly where it stopped. Each read also says, atomically, what was
 * trimmed, so a gap is seen whatever kept the reader away (an outage, a stalled process, a slow
 * loop); XREAD BLOCK only waits for new entries, with the next read pipelined behind it. A read
 * holds at most READ_MAX_BYTES: after a wake it is a script that sizes each entry; behind, it is a
 * plain XRANGE of READ_COUNT entries up to where a fresh read saw the stream end, when no large
 * entry lies in between (the script again when one does).
 */
export class StreamReader {
  readonly #reader: RedisClient
  readonly #key: string
  readonly #keys: [string, string]
  readonly #blockMs: number
  readonly #log: BusLogger
  readonly #onGap: ((lastId: string) => void) | undefined
  #handler: BusHandler | undefined
  #lastId: string | null = null
  /** Where the stream ended at the last read, and its newest large entry then: how far a plain read may go. */
  #end = '0-0'
  #large = '0-0'
  /** The stream's `entries-added` at that read: `#endOrdinal - #ordinal` entries lie up to `#end`. */
  #endOrdinal = 0
  /** How many entries the stream had received up to `#lastId` (its `entries-added` then). */
  #ordinal = 0
  /** Counts the times `#ordinal` was set anew (a start, a stream that lost its end): counts of different epochs do not compare. */
  #epoch = 0
  #gaps = 0
  #loop: Promise<void> | undefined
  #lastError: string | null = null
  #closed = false
  /** Publishes waiting for this reader to catch up (`waitFor`), in no particular order. */
  #waiters: Waiter[] = []

  constructor(options: StreamReaderOptions) {
    this.#reader = options.reader
    this.#key = options.key
    this.#keys = [options.key, options.largeKey]
    this.#blockMs = options.blockMs
    this.#log = options.log
    this.#onGap = options.onGap
  }

  /** The id of the last event delivered (or the stream's end when reading started). */
  get lastId(): string | null {
    return this.#lastId
  }

  /** How many times entries were trimmed before they could be read. */
  get gaps(): number {
    return this.#gaps
  }

  get started(): boolean {
    return this.#handler !== undefined
  }

  /** Reading now: connected and past the start. */
  get reading(): boolean {
    return this.#reader.isReady && this.#lastId !== null
  }

  get lastError(): string | null {
    return this.#lastError
  }

  /** Changes whenever `ordinal` is counted anew (a start, a failover that lost the stream's end). */
  get epoch(): number {
    return this.#epoch
  }

  /** How many entries the stream had received up to the last one this reader delivered. */
  get ordinal(): number {
    return this.#ordinal
  }

  /**
   * Resolves once this reader has delivered the stream's `ordinal`-th entry, or after `ms`, or
   * when it closes: a publisher's way to wait for a reader that fell behind (never an error).
   */
  waitFor(ordinal: number, ms: number): Promise<void> {
    if (this.#closed || this.#ordinal >= ordinal || ms <= 0) return Promise.resolve()
    return new Promise((resolve) => {
      const waiter = {
        ordinal,
        wake: () => {
          clearTimeout(timer)
          resolve()
        },
      }
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter)
        resolve()
      }, ms)
      this.#waiters.push(waiter)
    })
  }

  /** Wakes the publishes this reader has caught up with (all of them once it closes). */
  #wake(all = this.#closed): void {
    if (this.#waiters.length === 0) return
    const waiting: Waiter[] = []
    for (const waiter of this.#waiters) {
      if (all || this.#ordinal >= waiter.ordinal) waiter.wake()
      else waiting.push(waiter)
    }
    this.#waiters = waiting
  }

  async start(handler: BusHandler): Promise<void> {
    if (this.#handler !== undefined) throw new TypeError('RedisBus supports one subscriber per instance')
    this.#handler = handler
    // Start from the current end so that every later publish is read; when Redis is
    // down now, the loop finds the end once it is back.
    if (this.#reader.isReady) {
      try {
        await this.#tail()
      } catch (err) {
        this.#lastError = `redis: ${messageOf(err)}`
      }
    }
    this.#loop = this.#run()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // The reader is blocked in XREAD: only destroying the connection ends that at once.
    if (this.#reader.isOpen) this.#reader.destroy()
    this.#wake()
    await this.#loop
  }

  /** Starts at the newest entry (`0-0` for an empty or missing stream), counting what came before it. */
  async #tail(): Promise<void> {
    const [id, added] = (await runScript(this.#reader, TAIL, [this.#key], [])) as [string, number]
    this.#ordinal = Number(added)
    this.#epoch++
    this.#lastId = id
  }

  async #run(): Promise<void> {
    let failures = 0
    let caughtUp = false
    /** Whether `#end` was read before a delivery that took a while (STALE_AFTER_MS), or not at all yet. */
    let stale = true
    while (!this.#closed) {
      if (!this.#reader.isReady) {
        await sleep(50)
        continue
      }
      try {
        if (this.#lastId === null) await this.#tail()
        const lastId = this.#lastId as string
        let read: Promise<StreamRead>
        if (caughtUp) {
          // Caught up: wait for the next entry with XREAD BLOCK and read with the script sent right
          // behind it on the same connection. Redis runs it the moment the XREAD returns, in the same
          // turn as the XADD that woke it, so what was stored is read at once (no round trip in between
          // in which a Redis without persistence could die with an entry nobody read), and all of it:
          // the events of one publish reach each connection in one write.
          const woken = this.#reader.xRead({ key: this.#key, id: lastId }, { BLOCK: this.#blockMs, COUNT: 1 })
          read = scriptRead(this.#reader, this.#keys, lastId)
          await Promise.all([woken, read])
        } else if (stale && this.#endOrdinal - this.#ordinal < READ_COUNT) {
          // Where the stream ended before the last delivery is old news: what came meanwhile would wait
          // a whole delivery more. A small MULTI says where it ends now.
          read = rangeRead(this.#reader, this.#keys, lastId, lastId, 0)
        } else if (smallUpTo(lastId, this.#end, this.#large)) {
          read = rangeRead(this.#reader, this.#keys, lastId, this.#end, READ_COUNT)
        } else {
          read = scriptRead(this.#reader, this.#keys, lastId)
        }
        const stream = await read
        const answered = performance.now()
        failures = 0
        this.#lastError = null
        this.#checkContinuity(
          lastId,
          stream.first,
          stream.generated,
          stream.added - stream.length,
          stream.added,
        )
        for (const entry of stream.entries) this.#deliver(entry)
        this.#end = stream.generated === '' ? '0-0' : stream.generated
        this.#endOrdinal = stream.added
        this.#large = stream.large
        stale = performance.now() - answered > STALE_AFTER_MS
        this.#wake()
        // Caught up only as of a fresh end: what came during a long delivery is read before waiting.
        caughtUp = !stale && compareEventIds(this.#end, this.#lastId as string) <= 0
      } catch (err) {
        caughtUp = false
        stale = true
        if (this.#closed) break
        this.#lastError = `redis: ${messageOf(err)}`
        failures++
        await sleep(Math.min(25 * 2 ** failures, 1000))
      }
    }
  }

  #deliver(raw: unknown): void {
    const { id, event } = decodeRaw(raw)
    this.#lastId = id
    this.#ordinal++
    if (event === null) {
      this.#log.warn({ id }, 'skipped a stream entry this service did not write')
      return
    }
    try {
      this.#handler?.(event)
    } catch (err) {
      this.#log.error({ err, id }, 'delivering an event from the bus failed')
    }
  }

  /**
   * Compares what this instance delivered with what the stream holds, before the entries just
   * read are delivered. The stream ends before our last id: Redis lost our newest entries (a
   * failover before they reached a replica); read from its end, which is where anyone publishes
   * from now on. Our last id was trimmed: the entries now start at the stream's first, and if more
   * were removed than we had counted, some we never read are gone: a gap, reported.
   */
  #checkContinuity(lastId: string, first: string, generated: string, removed: number, added: number): void {
    if (generated === '') return
    if (compareEventIds(generated, lastId) < 0) {
      this.#log.warn(
        { lastId, streamEnd: generated },
        'the event stream in Redis ends before the last event this instance delivered (a failover or a restart lost it): reading from its end',
      )
      this.#lastId = generated
      this.#ordinal = added
      this.#epoch++
      // The counts before and after the loss do not compare: nobody waits on the old ones.
      this.#wake(true)
      return
    }
    if (first === '0-0' || compareEventIds(first, lastId) <= 0) return
    if (removed > this.#ordinal) {
      this.#gaps++
      this.#log.warn(
        { lastId, firstKept: first, missed: removed - this.#ordinal },
        'events were trimmed from Redis before this instance read them',
      )
      this.#onGap?.(lastId)
    }
    if (removed < this.#ordinal) {
      // A stream that counts from less than we had (Redis restarted empty, its new ids past
      // ours): our counts and its counts do not compare any more.
      this.#epoch++
      this.#wake(true)
    }
    this.#ordinal = removed
  }
}
