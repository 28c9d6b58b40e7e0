import { errors } from '../errors.js'
import type { Bus, BusHandler, BusMessage, BusStatus } from './bus.js'
import type { IdempotentPublish, PublishOutcome } from './idempotency.js'
import { type BusLogger, REDIS_UNAVAILABLE, type RedisClient } from './redis-client.js'
import { eventsBytesKey, eventsKey, eventsLargeKey, valuesOf } from './redis-entries.js'
import { ReaderPacer } from './redis-pacer.js'
import { StreamReader } from './redis-reader.js'
import { ReplicaWaits } from './redis-replicas.js'
import {
  APPEND,
  type AppendLimits,
  appendArgs,
  appendReplyOf,
  runScript,
  SET_RECORD,
} from './redis-scripts.js'

const SILENT: BusLogger = { info() {}, warn() {}, error() {} }

/** The transport keeps at least this many entries, whatever HISTORY_SIZE says: it is also the buffer for slow readers. */
export const MIN_STREAM_LENGTH = 1000

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
  readonly #largeKey: string
  readonly #limits: AppendLimits
  readonly #maxPendingBytes: number
  readonly #replicas: ReplicaWaits
  readonly #log: BusLogger
  readonly #refused: Refusals = { unavailable: 0, backlog: 0, replicas: 0 }
  #pendingBytes = 0
  readonly #pacer: ReaderPacer
  #closed = false

  constructor(options: RedisBusOptions) {
    this.#commands = options.commands
    this.#publisher = options.publisher ?? options.commands
    this.#key = eventsKey(options.prefix)
    this.#bytesKey = eventsBytesKey(options.prefix)
    this.#largeKey = eventsLargeKey(options.prefix)
    this.#maxPendingBytes = options.maxPendingBytes ?? 16 * 1024 * 1024
    this.#log = options.log ?? SILENT
    this.#stream = new StreamReader({
      reader: options.reader,
      key: this.#key,
      largeKey: this.#largeKey,
      blockMs: options.blockMs ?? 5000,
      log: this.#log,
      ...(options.onGap ? { onGap: options.onGap } : {}),
    })
    const replicas = options.waitReplicas ?? 0
    this.#replicas = new ReplicaWaits(this.#publisher, replicas, options.waitTimeoutMs ?? 1000, this.#log)
    this.#limits = {
      maxLength: Math.max(options.maxLength, MIN_STREAM_LENGTH),
      maxBytes: options.maxBytes ?? Number.MAX_SAFE_INTEGER,
      replicas,
    }
    this.#pacer = new ReaderPacer({
      reader: this.#stream,
      maxLength: this.#limits.maxLength,
      maxBytes: this.#limits.maxBytes,
      lagWaitMs: options.lagWaitMs ?? 5000,
      log: this.#log,
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
    return this.#pacer.paced
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
    if (this.#replicas.wanted === 0) return
    try {
      let seq = 0
      await runScript(this.#publisher, SET_RECORD, [recordKey], ['c', '1'], () => {
        seq = this.#replicas.sent()
      })
      if ((await this.#replicas.acked(seq)) >= this.#replicas.wanted) return
    } catch (err) {
      this.#log.warn({ err }, 'confirming a publish on the replicas failed')
      throw new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
    }
    throw new errors.SSE_ERR_REPLICAS_UNAVAILABLE(STORED_UNCONFIRMED)
  }

  /** Trims entries older than `minId` (HISTORY_TTL_MS), keeping the byte total exact. */
  async trim(minId: string): Promise<void> {
    const keys = [this.#key, this.#bytesKey, this.#largeKey]
    await runScript(this.#commands, APPEND, keys, appendArgs(this.#limits, minId, '', 0, 0))
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
    const args = appendArgs(this.#limits, '', once?.fingerprint ?? '', once?.ttlMs ?? 0, n)
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
    if (!(await this.#pacer.room(n))) {
      return refuse('backlog', () => new errors.SSE_ERR_BUS_BACKLOG(READER_BEHIND))
    }
    // `room` counted these events in flight; the script's answer ends that.
    this.#pendingBytes += bytes
    try {
      const keys = [this.#key, this.#bytesKey, this.#largeKey]
      if (once !== null) keys.push(once.key)
      let reply: string[]
      let seq = 0
      try {
        reply = (await runScript(this.#publisher, APPEND, keys, args, () => {
          seq = this.#replicas.sent()
        })) as string[]
      } catch (err) {
        // The detail is for the operator; the publisher learns only that Redis is unavailable.
        this.#log.warn({ err }, 'a publish failed in redis')
        return refuse('unavailable', () => this.#unavailable())
      } finally {
        this.#pacer.settled(n)
      }
      const answer = appendReplyOf(reply)
      if (answer.status === 'mismatch') return { kind: 'mismatch' }
      if (answer.status === 'seen') return { kind: 'seen', record: answer.record }
      if (answer.status === 'replicas') {
        this.#log.warn(
          { online: answer.online, wanted: this.#replicas.wanted },
          'too few replicas online: publish refused',
        )
        return refuse('replicas', () => new errors.SSE_ERR_REPLICAS_UNAVAILABLE('nothing was stored'))
      }
      const { ids } = answer
      this.#pacer.learn(answer.added, answer.length, answer.bytes)
      if (this.#replicas.wanted > 0 && !(await this.#replicated(seq, once))) {
        return refuse('replicas', () => new errors.SSE_ERR_REPLICAS_UNAVAILABLE(STORED_UNCONFIRMED))
      }
      return { kind: 'published', ids }
    } finally {
      this.#pendingBytes -= bytes
    }
  }

  /** Waits for the replicas; when they do not confirm in time, marks the record so a repeat need not wait. */
  async #replicated(seq: number, once: IdempotentPublish | null): Promise<boolean> {
    const acked = await this.#replicas.acked(seq)
    if (acked >= this.#replicas.wanted) return true
    this.#log.warn(
      { acked, wanted: this.#replicas.wanted },
      'a publish was not confirmed by the replicas in time',
    )
    if (once !== null)
      await runScript(this.#commands, SET_RECORD, [once.key], ['f', '1']).catch(() => undefined)
    return false
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
