import { frameChunk, JoinCache, type SseClient } from './client.js'
import type { StoredEvent } from './history.js'

export interface FanoutOptions {
  /** A client whose unsent bytes pass this is too slow. */
  maxBufferedBytes: number
  /** Every open client, for the broadcasts of a turn. */
  clients: ReadonlyMap<string, SseClient>
  /** Called once for a client found too slow; the fan-out has stopped writing to it. */
  onSlow(client: SseClient): void
  /** Bytes handed to sockets by a flush. */
  onFlush?(bytes: number): void
  /** Under load, the longest a flush waits after the previous one ended (ms); 0 writes every turn. */
  maxFlushDelayMs?: number
  /** The clock (ms) flushes are timed with; tests pass their own. */
  now?(): number
}

/** How many times maxBufferedBytes one turn may queue for a client before the flush. */
const QUEUE_ALLOWANCE = 4

/**
 * Queues frames to clients and writes each client's queue once per turn of the event loop,
 * so a burst of events becomes one socket write per client. A broadcast costs O(1) when it is
 * published: it joins the turn's list, and the flush joins and frames that list once and hands
 * the same buffer to every client. A client that gets a targeted event in the same turn first
 * takes the turn's broadcasts so far into its own queue, so every client sees publish order.
 * A client that cannot keep up is reported, never waited for.
 */
export class Fanout {
  readonly #maxBufferedBytes: number
  readonly #queueAllowance: number
  readonly #clients: ReadonlyMap<string, SseClient>
  readonly #onSlow: (client: SseClient) => void
  readonly #onFlush: ((bytes: number) => void) | undefined
  /** Clients whose replay is being fetched: broadcasts go to their `held` list. */
  readonly #holding = new Set<SseClient>()
  #dirty: SseClient[] = []
  #scheduled = false
  #seq = 0
  #turn: Buffer[] = []
  #turnEvents: number[] = []
  #turnBytes = 0
  readonly #maxDelayMs: number
  readonly #now: () => number
  /** When the last flush ended, and how long the next one waits after that (ms). */
  #flushedAt = 0
  #delayMs = 0
  #timer: NodeJS.Timeout | null = null

  constructor(options: FanoutOptions) {
    this.#maxBufferedBytes = options.maxBufferedBytes
    this.#queueAllowance = options.maxBufferedBytes * QUEUE_ALLOWANCE
    this.#clients = options.clients
    this.#onSlow = options.onSlow
    this.#onFlush = options.onFlush
    this.#maxDelayMs = options.maxFlushDelayMs ?? 0
    this.#now = options.now ?? performance.now.bind(performance)
  }

  /** A client just registered: the turn's earlier broadcasts were before its time. */
  joined(client: SseClient): void {
    client.turnSeq = this.#seq
    client.turnIndex = this.#turn.length
  }

  /** The client's replay is being fetched: hold its live events until `release`. */
  hold(client: SseClient): void {
    client.held = []
    client.heldBytes = 0
    this.#holding.add(client)
  }

  /** The replay was written (or the client is gone): live events flow again from here. */
  release(client: SseClient): void {
    this.#holding.delete(client)
    client.held = null
    client.heldBytes = 0
    this.joined(client)
  }

  /** The client is gone. */
  forget(client: SseClient): void {
    this.#holding.delete(client)
  }

  /** An event for every client: O(1) now, written to all at the flush. Returns how many get it. */
  broadcast(stored: StoredEvent): number {
    for (const client of this.#holding) this.#holdBack(client, stored)
    this.#addToTurn(stored.frame, 1)
    return this.#clients.size
  }

  /** A frame that is not an event (a heartbeat) for every client whose stream has started. */
  broadcastFrame(frame: Buffer): void {
    this.#addToTurn(frame, 0)
  }

  /** Queues an event for one client (or holds it while the client's replay is fetched). Returns 1 when taken. */
  enqueue(client: SseClient, stored: StoredEvent): number {
    if (client.closed) return 0
    if (client.held !== null) {
      this.#holdBack(client, stored)
      return 1
    }
    this.catchUp(client)
    client.write(stored.frame)
    this.#markDirty(client)
    // Only the queue here, per event; the socket backlog is judged once per flush.
    if (client.queuedBytes > this.#queueAllowance) this.#onSlow(client)
    return 1
  }

  /** Queues a frame that is not an event (`subscriptions`) for one client. */
  enqueueFrame(client: SseClient, frame: Buffer): void {
    if (client.held !== null || client.closed) return
    this.catchUp(client)
    client.write(frame, 0)
    this.#markDirty(client)
  }

  /** Moves the turn's broadcasts that a client has not taken yet into its own queue. */
  catchUp(client: SseClient): void {
    const turn = this.#turn
    let i = client.turnSeq === this.#seq ? client.turnIndex : 0
    for (; i < turn.length; i++) client.write(turn[i] as Buffer, this.#turnEvents[i])
    client.turnSeq = this.#seq
    client.turnIndex = turn.length
  }

  /** Writes one client's queue at once (a stream's first bytes, a replay). */
  flushClient(client: SseClient, cache?: JoinCache): void {
    const before = client.bytesSent
    client.flush(cache)
    this.#onFlush?.(client.bytesSent - before)
  }

  /**
   * Writes every queue now (each turn, and before a shutdown's goodbyes). A flush that took
   * long means the sockets are the bottleneck: the next one then waits as long, at most
   * maxFlushDelayMs, so that the input of that time shares its writes. A short one (under
   * a millisecond: a few hundred streams) lets the next turn write at once.
   */
  flushAll(): void {
    this.#scheduled = false
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
    if (this.#maxDelayMs === 0) {
      this.#writeAll()
      return
    }
    const start = this.#now()
    this.#writeAll()
    this.#flushedAt = this.#now()
    this.#delayMs = Math.min(this.#flushedAt - start, this.#maxDelayMs)
  }

  #writeAll(): void {
    const seq = this.#seq
    const turn = this.#turn
    const events = this.#turnEvents
    const turnBytes = this.#turnBytes
    const dirty = this.#dirty
    this.#seq++
    this.#turn = []
    this.#turnEvents = []
    this.#turnBytes = 0
    this.#dirty = []
    const cache = new JoinCache()
    let written = 0
    if (turn.length === 0) {
      for (const client of dirty) written += this.#flushOne(client, cache)
    } else {
      const joined = turn.length === 1 ? (turn[0] as Buffer) : Buffer.concat(turn, turnBytes)
      const framed = frameChunk(joined)
      let eventCount = 0
      for (const n of events) eventCount += n
      for (const client of this.#clients.values()) {
        if (client.closed || client.held !== null || !client.started) continue
        const from = client.turnSeq === seq ? client.turnIndex : 0
        if (from === 0 && client.queuedBytes === 0) {
          // The common case: this client's whole turn is the turn's broadcasts.
          this.checkBuffer(client)
          if (client.closed) continue
          client.writeShared(joined, framed, eventCount)
          written += joined.length
          continue
        }
        for (let i = from; i < turn.length; i++) client.write(turn[i] as Buffer, events[i])
        written += this.#flushOne(client, cache)
      }
    }
    if (written > 0) this.#onFlush?.(written)
  }

  /**
   * A client is too slow when its socket still holds more than maxBufferedBytes when new
   * data arrives, or when one turn queues more than the queue allowance for it. The socket
   * is not judged right after a flush: a burst bigger than the limit, written in one go,
   * drains within moments for a client that reads.
   */
  checkBuffer(client: SseClient): void {
    if (client.closed) return
    if (client.socketBacklog <= this.#maxBufferedBytes && client.queuedBytes <= this.#queueAllowance) return
    this.#onSlow(client)
  }

  #flushOne(client: SseClient, cache: JoinCache): number {
    // What the socket still holds from earlier turns decides whether the client keeps up.
    this.checkBuffer(client)
    if (client.closed) return 0
    const before = client.bytesSent
    client.flush(cache)
    return client.bytesSent - before
  }

  #holdBack(client: SseClient, stored: StoredEvent): void {
    const held = client.held
    if (held === null || client.closed) return
    // Held back while a replay is fetched: bounded like any queue of a slow client.
    held.push(stored)
    client.heldBytes += stored.frame.length
    if (client.heldBytes > this.#maxBufferedBytes) this.#onSlow(client)
  }

  #addToTurn(frame: Buffer, events: number): void {
    this.#turn.push(frame)
    this.#turnEvents.push(events)
    this.#turnBytes += frame.length
    this.#schedule()
    // One turn may not queue more than a client's allowance: write what is there now.
    if (this.#turnBytes > this.#queueAllowance) this.flushAll()
  }

  #markDirty(client: SseClient): void {
    if (client.dirtySeq === this.#seq) return
    client.dirtySeq = this.#seq
    this.#dirty.push(client)
    this.#schedule()
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    const wait = this.#delayMs >= 1 ? this.#flushedAt + this.#delayMs - this.#now() : 0
    if (wait >= 1) this.#timer = setTimeout(this.#flush, wait)
    else setImmediate(this.#flush)
  }

  readonly #flush = (): void => {
    if (this.#scheduled) this.flushAll()
  }
}
