import { setTimeout as sleep } from 'node:timers/promises'
import type { RedisClientType } from 'redis'
import { errors } from '../errors.js'
import { compareEventIds } from '../sse/event-id.js'
import type { EventTarget } from '../sse/target.js'
import { type Bus, type BusEvent, type BusHandler, type BusMessage, type BusStatus, idTime } from './bus.js'

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
const READ_COUNT = 512

export interface RedisBusOptions {
  /** For XADD and other short commands. */
  commands: RedisClient
  /** A dedicated connection: XREAD BLOCK holds it. */
  reader: RedisClient
  /** Every key starts with it. */
  prefix: string
  /** `MAXLEN ~` of the stream (raised to MIN_STREAM_LENGTH). */
  maxLength: number
  /** How long one XREAD blocks before the loop looks around again. */
  blockMs?: number
  log?: BusLogger
  /**
   * Called when, after an outage, entries this instance never read were already
   * trimmed from the stream: its connections missed events that no one can replay.
   */
  onGap?: (lastId: string) => void
}

interface StreamEntry {
  id: string
  message: Record<string, string>
}

/** The stream key, for the history and the tests. */
export function eventsKey(prefix: string): string {
  return `${prefix}events`
}

function encodeTarget(target: EventTarget): string {
  if (target.broadcast === true) return '*'
  return JSON.stringify({ u: target.userIds, c: target.clientIds })
}

function strings(value: unknown): readonly string[] | undefined {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) return undefined
  return value as string[]
}

function decodeTarget(raw: string): EventTarget | null {
  if (raw === '*') return { broadcast: true }
  const parsed = JSON.parse(raw) as { u?: unknown; c?: unknown }
  const userIds = strings(parsed.u)
  const clientIds = strings(parsed.c)
  if (userIds === undefined && clientIds === undefined) return null
  return { ...(userIds ? { userIds } : {}), ...(clientIds ? { clientIds } : {}) }
}

/** Turns a stream entry back into a bus event; null for an entry this service did not write. */
export function decodeEntry(entry: StreamEntry): BusEvent | null {
  const { e: event, d: data, t: target, o: origin } = entry.message
  if (event === undefined || data === undefined || target === undefined) return null
  try {
    const decodedTarget = decodeTarget(target)
    if (decodedTarget === null) return null
    return {
      id: entry.id,
      event,
      data: JSON.parse(data),
      target: decodedTarget,
      origin: origin ?? '',
      publishedAt: idTime(entry.id),
    }
  } catch {
    return null
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * A bus on one Redis Stream. XADD assigns the id (`<ms>-<seq>`, strictly increasing
 * for the whole deployment) and trims with `MAXLEN ~`; each instance reads the stream
 * with XREAD BLOCK on its own connection, from the last id it delivered, so that after
 * an outage it resumes exactly where it stopped: nothing accepted is lost or doubled.
 */
export class RedisBus implements Bus {
  readonly kind = 'redis' as const
  readonly #commands: RedisClient
  readonly #reader: RedisClient
  readonly #key: string
  readonly #maxLength: number
  readonly #blockMs: number
  readonly #log: BusLogger
  readonly #onGap: ((lastId: string) => void) | undefined
  #handler: BusHandler | undefined
  #lastId: string | null = null
  #loop: Promise<void> | undefined
  #lastError: string | null = null
  #closed = false

  constructor(options: RedisBusOptions) {
    this.#commands = options.commands
    this.#reader = options.reader
    this.#key = eventsKey(options.prefix)
    this.#maxLength = Math.max(options.maxLength, MIN_STREAM_LENGTH)
    this.#blockMs = options.blockMs ?? 5000
    this.#log = options.log ?? SILENT
    this.#onGap = options.onGap
  }

  /** The id of the last event this instance delivered (or the stream's end when it started). */
  get lastId(): string | null {
    return this.#lastId
  }

  async publish(message: BusMessage): Promise<string> {
    if (this.#closed) throw new errors.SSE_ERR_BUS_UNAVAILABLE('the bus is closed')
    if (!this.#commands.isReady) throw new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
    const fields = {
      e: message.event,
      d: JSON.stringify(message.data) ?? 'null',
      t: encodeTarget(message.target),
      o: message.origin,
    }
    try {
      return await this.#commands.xAdd(this.#key, '*', fields, {
        TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: this.#maxLength },
      })
    } catch (err) {
      // The detail is for the operator; the publisher learns only that Redis is unavailable.
      this.#log.warn({ err }, 'a publish failed in redis')
      throw new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
    }
  }

  async subscribe(handler: BusHandler): Promise<void> {
    if (this.#closed) throw new errors.SSE_ERR_BUS_UNAVAILABLE('the bus is closed')
    if (this.#handler !== undefined) throw new TypeError('RedisBus supports one subscriber per instance')
    this.#handler = handler
    // Start from the current end so that every later publish is read; when Redis is
    // down now, the loop finds the end once it is back.
    if (this.#reader.isReady) {
      try {
        this.#lastId = await this.#tail()
      } catch (err) {
        this.#lastError = `redis: ${messageOf(err)}`
      }
    }
    this.#loop = this.#run()
  }

  status(): BusStatus {
    if (this.#closed) return { ready: false, reason: 'the bus is closed' }
    const reading = this.#handler === undefined || (this.#reader.isReady && this.#lastId !== null)
    if (this.#commands.isReady && reading) {
      return { ready: true, reason: null }
    }
    return { ready: false, reason: this.#reason() }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // The reader is blocked in XREAD: only destroying the connection ends that at once.
    if (this.#reader.isOpen) this.#reader.destroy()
    await this.#loop
  }

  #reason(): string {
    return this.#lastError ?? 'redis: not connected'
  }

  /** The id of the newest entry, or `0-0` for an empty or missing stream. */
  async #tail(): Promise<string> {
    const last = (await this.#reader.xRevRange(this.#key, '+', '-', { COUNT: 1 })) as StreamEntry[] | null
    return last?.[0]?.id ?? '0-0'
  }

  async #run(): Promise<void> {
    let failures = 0
    let resuming = false
    while (!this.#closed) {
      if (!this.#reader.isReady) {
        await sleep(50)
        continue
      }
      try {
        if (this.#lastId === null) this.#lastId = await this.#tail()
        else if (resuming) await this.#checkContinuity(this.#lastId)
        resuming = false
        const reply = (await this.#reader.xRead(
          { key: this.#key, id: this.#lastId },
          { BLOCK: this.#blockMs, COUNT: READ_COUNT },
        )) as { messages: StreamEntry[] }[] | null
        failures = 0
        this.#lastError = null
        if (reply === null) continue
        for (const stream of reply) {
          for (const entry of stream.messages) this.#deliver(entry)
        }
      } catch (err) {
        if (this.#closed) break
        this.#lastError = `redis: ${messageOf(err)}`
        resuming = true
        failures++
        await sleep(Math.min(25 * 2 ** failures, 1000))
      }
    }
  }

  #deliver(entry: StreamEntry): void {
    this.#lastId = entry.id
    const event = decodeEntry(entry)
    if (event === null) {
      this.#log.warn({ id: entry.id }, 'skipped a stream entry this service did not write')
      return
    }
    try {
      this.#handler?.(event)
    } catch (err) {
      this.#log.error({ err, id: entry.id }, 'delivering an event from the bus failed')
    }
  }

  /**
   * After a failed read: if Redis lost the stream (restarted without persistence),
   * read the new one from its start; if entries newer than ours were trimmed while we
   * were away, report the gap.
   */
  async #checkContinuity(lastId: string): Promise<void> {
    const tail = await this.#tail()
    if (tail === '0-0' || compareEventIds(tail, lastId) < 0) {
      if (lastId !== '0-0') {
        this.#log.warn(
          { lastId, streamEnd: tail },
          'the event stream in Redis was reset (Redis restarted without persistence?): reading it from the start',
        )
      }
      this.#lastId = '0-0'
      return
    }
    const info = (await this.#reader.xInfoStream(this.#key)) as Record<string, unknown>
    const deleted = info['max-deleted-entry-id']
    if (typeof deleted === 'string' && deleted !== '0-0' && compareEventIds(deleted, lastId) > 0) {
      this.#log.warn(
        { lastId, trimmedUpTo: deleted },
        'events were trimmed from Redis before this instance read them',
      )
      this.#onGap?.(lastId)
    }
  }
}
