import type { RedisClientType } from 'redis'
import { errors } from '../errors.js'
import type { Bus, BusHandler, BusMessage, BusStatus } from './bus.js'
import type { IdempotentPublish, PublishOutcome } from './idempotency.js'
import { eventsBytesKey, eventsKey, valuesOf } from './redis-entries.js'
import { StreamReader } from './redis-reader.js'
import { APPEND, ENTRY_OVERHEAD_BYTES, runScript, SET_RECORD } from './redis-scripts.js'

export type RedisClient = RedisClientType

/** The few logger methods the bus uses; a pino logger fits. */
export interface BusLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

/** The one reason the outside hears about any Redis failure; the detail goes to the log. */
export const REDIS_UNAVAILABLE = 'redis unavailable'

const SILENT: BusLogger = { info() {}, warn() {}, error() {} }

/** The transport keeps at least this many entries, whatever HISTORY_SIZE says: it is also the buffer for slow readers. */
export const MIN_STREAM_LENGTH = 1000
/**
 * A replica counts for REDIS_WAIT_REPLICAS only when it acknowledged within this (it does every
 * second): Redis's own default for `min-replicas-max-lag`. A replica that lags less still has to
 * confirm each publish through WAIT.
 */
const MAX_REPLICA_LAG_S = 10

export interface RedisBusOptions {
  /** For short commands (and publishing, without `publisher`). */
  commands: RedisClient
  /**
   * For publishing: a connection of its own when REDIS_WAIT_REPLICAS is set, since WAIT holds the
   * connection it is sent on (and covers only what was written on it). Defaults to `commands`.
   */
  publisher?: RedisClient
  /** A dedicated connection: XREAD BLOCK holds it. */
  reader: RedisClient
  /** Every key starts with it. */
  prefix: string
  /** The most entries of the stream (raised to MIN_STREAM_LENGTH). */
  maxLength: number
  /** HISTORY_MAX_BYTES: the most bytes of entries (ids, fields and a per-entry overhead) the stream holds. */
  maxBytes?: number
  /** REDIS_MAX_PENDING_BYTES: publishes waiting for Redis's answer; past it a publish is refused at once. */
  maxPendingBytes?: number
  /** REDIS_WAIT_REPLICAS: a publish succeeds only once this many replicas hold it (WAIT). */
  waitReplicas?: number
  /** REDIS_WAIT_TIMEOUT_MS: how long WAIT waits for them. */
  waitTimeoutMs?: number
  /** How long one XREAD blocks before the loop looks around again. */
  blockMs?: number
  /**
   * REDIS_LAG_WAIT_MS: a publish that would put this instance's reader more than half the stream
   * behind waits for it at most this long, then is refused (0 = never wait).
   */
  lagWaitMs?: number
  log?: BusLogger
  /**
   * Called when entries this instance never read were already trimmed from the stream: its
   * connections missed events that no one can replay.
   */
  onGap?: (lastId: string) => void
}

/** Why publishes were refused, counted per event (for `sse_publishes_refused_total`). */
export interface Refusals {
  unavailable: number
  backlog: number
  replicas: number
}

const READER_BEHIND = "for this instance's reader, more than half the Redis stream behind: REDIS_LAG_WAIT_MS"
/** Waiting publishes are logged at most this often. */
const PACE_LOG_MS = 10_000
const STORED_UNCONFIRMED = 'it was stored and may still be delivered; retry with the same Idempotency-Key'

/**
 * A bus on one Redis Stream. A script appends (Redis assigns the id, `<ms>-<seq>`, strictly
 * increasing for the whole deployment), keeps the stream within its count and byte bounds and
 * records an Idempotency-Key, in one step; each instance reads the stream with a StreamReader,
 * from the last id it delivered: nothing accepted is lost or doubled, and a gap (entries trimmed
 * before it read them) is reported, never skipped.
 */
export class RedisBus implements Bus {
  readonly kind = 'redis' as const
  readonly #commands: RedisClient
  readonly #publisher: RedisClient
  readonly #stream: StreamReader
  readonly #key: string
  readonly #bytesKey: string
  readonly #maxLength: number
  readonly #maxBytes: number
  readonly #maxPendingBytes: number
  readonly #waitReplicas: number
  readonly #waitTimeoutMs: number
  readonly #lagWaitMs: number
  readonly #log: BusLogger
  readonly #refused: Refusals = { unavailable: 0, backlog: 0, replicas: 0 }
  #pendingBytes = 0
  /** Publishes that waited for this instance's reader; when that was last logged, and the count then. */
  #paced = 0
  #pacedLoggedAt = 0
  #pacedAtLog = 0
  /** The stream's `entries-added` at the last answer, what this instance has in flight, half the stream. */
  #lastAdded = 0
  /** The reader's epoch when `#lastAdded` was learnt: a count from before a failover means nothing now. */
  #lastAddedEpoch = -1
  #inFlight = 0
  #allowed: number
  /** Scripts sent on the publisher connection, and the newest WAIT with how many it covers. */
  #sent = 0
  #wait: { covers: number; acked: Promise<number> } | null = null
  #closed = false

  constructor(options: RedisBusOptions) {
    this.#commands = options.commands
    this.#publisher = options.publisher ?? options.commands
    this.#key = eventsKey(options.prefix)
    this.#bytesKey = eventsBytesKey(options.prefix)
    this.#maxLength = Math.max(options.maxLength, MIN_STREAM_LENGTH)
    this.#maxBytes = options.maxBytes ?? Number.MAX_SAFE_INTEGER
    this.#maxPendingBytes = options.maxPendingBytes ?? 16 * 1024 * 1024
    this.#waitReplicas = options.waitReplicas ?? 0
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 1000
    this.#lagWaitMs = options.lagWaitMs ?? 5000
    this.#allowed = Math.floor(this.#maxLength / 2)
    this.#log = options.log ?? SILENT
    this.#stream = new StreamReader({
      reader: options.reader,
      key: this.#key,
      blockMs: options.blockMs ?? 5000,
      log: this.#log,
      ...(options.onGap ? { onGap: options.onGap } : {}),
    })
  }

  /** The id of the last event this instance delivered (or the stream's end when it started). */
  get lastId(): string | null {
    return this.#stream.lastId
  }

  /** Events refused so far, by reason. */
  get refused(): Readonly<Refusals> {
    return this.#refused
  }

  /** How many times this instance found entries trimmed before it could read them. */
  get gaps(): number {
    return this.#stream.gaps
  }

  /** Publishes that waited for this instance's reader to catch up (REDIS_LAG_WAIT_MS). */
  get paced(): number {
    return this.#paced
  }

  /** Bytes of publishes sent to Redis and not answered yet. */
  get pendingBytes(): number {
    return this.#pendingBytes
  }

  async publish(message: BusMessage): Promise<string> {
    const [id] = await this.publishMany([message])
    if (typeof id !== 'string') throw id
    return id
  }

  /** One script call: one round trip, atomic, ids in the order given. */
  async publishMany(messages: readonly BusMessage[]): Promise<(string | Error)[]> {
    const outcome = await this.#append(messages, null)
    return outcome.kind === 'published' ? outcome.ids : messages.map(() => this.#unavailable())
  }

  /**
   * Publishes unless `once.key` was seen within its TTL, recording the key in the same script
   * as the XADDs: a lost reply cannot make a retry publish twice.
   */
  publishOnce(messages: readonly BusMessage[], once: IdempotentPublish): Promise<PublishOutcome> {
    return this.#append(messages, once)
  }

  /**
   * Makes sure the replicas REDIS_WAIT_REPLICAS asks for hold everything written so far (for a
   * repeat that answers an earlier publish): a small write to `recordKey`, then WAIT.
   */
  async confirm(recordKey: string): Promise<void> {
    if (this.#waitReplicas === 0) return
    try {
      let seq = 0
      await runScript(this.#publisher, SET_RECORD, [recordKey], ['c', '1'], () => {
        seq = ++this.#sent
      })
      if ((await this.#acked(seq)) >= this.#waitReplicas) return
    } catch (err) {
      this.#log.warn({ err }, 'confirming a publish on the replicas failed')
      throw new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
    }
    throw new errors.SSE_ERR_REPLICAS_UNAVAILABLE(STORED_UNCONFIRMED)
  }

  /** Trims entries older than `minId` (HISTORY_TTL_MS), keeping the byte total exact. */
  async trim(minId: string): Promise<void> {
    await runScript(this.#commands, APPEND, [this.#key, this.#bytesKey], this.#limits(minId, '', 0, 0))
  }

  #limits(minId: string, fingerprint: string, ttlMs: number, n: number): string[] {
    return [
      String(this.#maxLength),
      String(this.#maxBytes),
      minId,
      String(this.#waitReplicas),
      String(MAX_REPLICA_LAG_S),
      String(ENTRY_OVERHEAD_BYTES),
      fingerprint,
      String(ttlMs),
      String(n),
    ]
  }

  async #append(messages: readonly BusMessage[], once: IdempotentPublish | null): Promise<PublishOutcome> {
    const n = messages.length
    const refuse = (reason: keyof Refusals, err: () => Error): PublishOutcome => {
      this.#refused[reason] += n
      return { kind: 'published', ids: messages.map(err) }
    }
    if (this.#closed)
      return refuse('unavailable', () => new errors.SSE_ERR_BUS_UNAVAILABLE('the bus is closed'))
    if (!this.#publisher.isReady) return refuse('unavailable', () => this.#unavailable())
    const args = this.#limits('', once?.fingerprint ?? '', once?.ttlMs ?? 0, n)
    let bytes = 0
    for (const message of messages) {
      for (const value of valuesOf(message)) {
        args.push(value)
        bytes += value.length
      }
    }
    // Bounded while Redis is slow: one publish always goes, more only within the budget.
    if (this.#pendingBytes > 0 && this.#pendingBytes + bytes > this.#maxPendingBytes) {
      return refuse(
        'backlog',
        () => new errors.SSE_ERR_BUS_BACKLOG('for Redis to answer: REDIS_MAX_PENDING_BYTES'),
      )
    }
    if (!(await this.#room(n))) {
      return refuse('backlog', () => new errors.SSE_ERR_BUS_BACKLOG(READER_BEHIND))
    }
    // `#room` counted these events in flight; the script's answer ends that.
    this.#pendingBytes += bytes
    try {
      const keys = once === null ? [this.#key, this.#bytesKey] : [this.#key, this.#bytesKey, once.key]
      let reply: string[]
      let seq = 0
      try {
        reply = (await runScript(this.#publisher, APPEND, keys, args, () => {
          seq = ++this.#sent
        })) as string[]
      } catch (err) {
        // The detail is for the operator; the publisher learns only that Redis is unavailable.
        this.#log.warn({ err }, 'a publish failed in redis')
        return refuse('unavailable', () => this.#unavailable())
      } finally {
        this.#inFlight -= n
      }
      const [status, a = '', b = '', c = '', d = '0'] = reply
      if (status === 'mismatch') return { kind: 'mismatch' }
      if (status === 'seen') {
        const ids = a === '' ? [] : a.split(',')
        return {
          kind: 'seen',
          record: { ids, answer: b === '' ? null : b, failed: c !== '', ageMs: Number(d) },
        }
      }
      if (status === 'replicas') {
        this.#log.warn(
          { online: Number(a), wanted: this.#waitReplicas },
          'too few replicas online: publish refused',
        )
        return refuse('replicas', () => new errors.SSE_ERR_REPLICAS_UNAVAILABLE('nothing was stored'))
      }
      const ids = a.split(',')
      this.#learn(Number(b), Number(c), Number(d))
      if (this.#waitReplicas > 0 && !(await this.#replicated(seq, once))) {
        return refuse('replicas', () => new errors.SSE_ERR_REPLICAS_UNAVAILABLE(STORED_UNCONFIRMED))
      }
      return { kind: 'published', ids }
    } finally {
      this.#pendingBytes -= bytes
    }
  }

  /**
   * How many replicas acknowledged everything up to the `seq`-th script sent on the publisher
   * connection. Redis runs a connection's commands in order, so a WAIT sent after a script covers it:
   * publishes share WAITs (one per replica round trip, however many publishes), and a publish waits
   * at most for the WAIT in flight and the one after it.
   */
  #acked(seq: number): Promise<number> {
    const latest = this.#wait
    if (latest !== null && latest.covers >= seq) return latest.acked
    const wait = {
      covers: this.#sent,
      acked: this.#publisher.wait(this.#waitReplicas, this.#waitTimeoutMs).catch((err: unknown) => {
        this.#log.warn({ err }, 'WAIT failed in redis')
        return 0
      }),
    }
    this.#wait = wait
    return wait.acked
  }

  /** Waits for the replicas; when they do not confirm in time, marks the record so a repeat need not wait. */
  async #replicated(seq: number, once: IdempotentPublish | null): Promise<boolean> {
    const acked = await this.#acked(seq)
    if (acked >= this.#waitReplicas) return true
    this.#log.warn(
      { acked, wanted: this.#waitReplicas },
      'a publish was not confirmed by the replicas in time',
    )
    if (once !== null)
      await runScript(this.#commands, SET_RECORD, [once.key], ['f', '1']).catch(() => undefined)
    return false
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
  async #room(n: number): Promise<boolean> {
    const deadline = Date.now() + this.#lagWaitMs
    let waited = false
    for (;;) {
      const epoch = this.#stream.epoch
      const target = this.#target(n)
      if (target === null || this.#stream.ordinal >= target) {
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
      await this.#stream.waitFor(target, left)
      // The reader started counting anew (a failover): the old target means nothing; look again.
      if (this.#stream.epoch !== epoch) continue
    }
  }

  /** The entry the reader must have delivered before `n` more may go; null when nothing holds them back. */
  #target(n: number): number | null {
    if (this.#lagWaitMs === 0 || n === 0 || !this.#stream.reading) return null
    const base = this.#lastAddedEpoch === this.#stream.epoch ? this.#lastAdded : this.#stream.ordinal
    const known = base + this.#inFlight
    // A batch larger than half the stream goes once the reader has read everything before it.
    return Math.min(known, known + n - this.#allowed)
  }

  /** Once per PACE_LOG_MS at most, however many publishes wait: the metric counts each. */
  #logPacing(target: number): void {
    const now = Date.now()
    if (now - this.#pacedLoggedAt < PACE_LOG_MS) return
    this.#log.warn(
      { readerAt: this.#stream.ordinal, mustReach: target, paced: this.#paced - this.#pacedAtLog },
      "this instance's reader is more than half the Redis stream behind: publishes wait for it",
    )
    this.#pacedLoggedAt = now
    this.#pacedAtLog = this.#paced
  }

  /** What an answer says of the stream: how many entries it ever had, how many it has, their bytes. */
  #learn(added: number, length: number, bytes: number): void {
    if (!(added > 0)) return
    this.#lastAdded = added
    this.#lastAddedEpoch = this.#stream.epoch
    const byBytes = bytes > 0 ? Math.floor((length * this.#maxBytes) / bytes) : Number.POSITIVE_INFINITY
    this.#allowed = Math.max(1, Math.floor(Math.min(this.#maxLength, byBytes) / 2))
  }

  #unavailable(): Error {
    return new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
  }

  subscribe(handler: BusHandler): Promise<void> {
    if (this.#closed) return Promise.reject(new errors.SSE_ERR_BUS_UNAVAILABLE('the bus is closed'))
    return this.#stream.start(handler)
  }

  status(): BusStatus {
    if (this.#closed) return { ready: false, reason: 'the bus is closed' }
    const reading = !this.#stream.started || this.#stream.reading
    if (this.#commands.isReady && this.#publisher.isReady && reading) {
      return { ready: true, reason: null }
    }
    return { ready: false, reason: this.#stream.lastError ?? 'redis: not connected' }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#stream.close()
  }
}
