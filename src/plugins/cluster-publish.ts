import type { Bus, BusMessage } from '../bus/bus.js'
import type { PublishResult } from '../sse/manager.js'
import type { EventTarget } from '../sse/target.js'

/**
 * How messages reach the bus: `bus.publishMany` by default; the idempotency plugin passes one
 * that records an Idempotency-Key in the same step (and may refuse to publish a repeat).
 */
export type BusSender = (messages: readonly BusMessage[]) => Promise<(string | Error)[]>

/** One event of a batch, validated. */
export interface BatchItem {
  readonly event: string
  readonly data: unknown
  readonly target: EventTarget
  /** `data` as JSON text, when the caller has already encoded it (the bus then does not). */
  readonly json?: string
}

/** How long a POST waits to hear its own event back from Redis, to count local deliveries. */
export const LOCAL_DELIVERY_WAIT_MS = 1000

/**
 * Publishing through the bus, and how many connections of this instance each event reached: an
 * event is tagged with an origin of this instance, and its count is known when the instance hears
 * it back (at once in memory; from Redis, when its reader gets it, at most LOCAL_DELIVERY_WAIT_MS).
 */
/** A batch waiting to hear its events back: what each reached here, by its place in the batch. */
interface Pending {
  readonly first: number
  readonly delivered: number[]
  heard: number
  /** How many of its events the bus accepted (heard ones only count among those); -1 until known. */
  waiting: number
  wake: (() => void) | undefined
}

export class Publishing {
  /** `<instance id>:`, what every origin of this instance starts with; the rest is its sequence number. */
  readonly #prefix: string
  readonly #bus: Bus
  /** By sequence number: most events heard are other instances' and never get this far. */
  readonly #pending = new Map<number, Pending>()
  #seq = 0
  #accepted = 0

  constructor(instanceId: string, bus: Bus) {
    this.#prefix = `${instanceId}:`
    this.#bus = bus
  }

  /** Events the bus accepted from this instance. */
  get accepted(): number {
    return this.#accepted
  }

  /** This instance delivered the event of `origin` to `delivered` of its connections. */
  heard(origin: string, delivered: number): void {
    if (!origin.startsWith(this.#prefix)) return
    const seq = Number(origin.slice(this.#prefix.length))
    const pending = this.#pending.get(seq)
    if (pending === undefined) return
    this.#pending.delete(seq)
    pending.delivered[seq - pending.first] = delivered
    pending.heard++
    if (pending.waiting >= 0 && pending.heard >= pending.waiting) pending.wake?.()
  }

  /**
   * Publishes several events in order, in one round trip to the bus; each settles on its own
   * (an id and this instance's deliveries, or the error).
   */
  async publishBatch(items: readonly BatchItem[], send?: BusSender): Promise<(PublishResult | Error)[]> {
    const n = items.length
    const pending: Pending = {
      first: this.#seq + 1,
      delivered: new Array(n).fill(0),
      heard: 0,
      waiting: -1,
      wake: undefined,
    }
    this.#seq += n
    const messages: BusMessage[] = new Array(n)
    for (let i = 0; i < n; i++) {
      const item = items[i] as BatchItem
      const seq = pending.first + i
      this.#pending.set(seq, pending)
      messages[i] = {
        event: item.event,
        data: item.data,
        target: item.target,
        json: item.json,
        origin: this.#prefix + seq,
      }
    }
    try {
      const ids = await (send ?? ((all) => this.#bus.publishMany(all)))(messages)
      let waiting = 0
      for (const id of ids) if (typeof id === 'string') waiting++
      pending.waiting = waiting
      this.#accepted += waiting
      if (pending.heard < waiting) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, LOCAL_DELIVERY_WAIT_MS)
          pending.wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      return ids.map((id, i) =>
        typeof id === 'string' ? { id, delivered: pending.delivered[i] as number } : id,
      )
    } finally {
      for (let i = 0; i < n; i++) this.#pending.delete(pending.first + i)
    }
  }
}
