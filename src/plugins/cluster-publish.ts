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
export class Publishing {
  readonly #instanceId: string
  readonly #bus: Bus
  readonly #pending = new Map<string, (delivered: number, origin: string) => void>()
  #seq = 0
  #accepted = 0

  constructor(instanceId: string, bus: Bus) {
    this.#instanceId = instanceId
    this.#bus = bus
  }

  /** Events the bus accepted from this instance. */
  get accepted(): number {
    return this.#accepted
  }

  /** This instance delivered the event of `origin` to `delivered` of its connections. */
  heard(origin: string, delivered: number): void {
    this.#pending.get(origin)?.(delivered, origin)
  }

  /**
   * Publishes several events in order, in one round trip to the bus; each settles on its own
   * (an id and this instance's deliveries, or the error).
   */
  async publishBatch(items: readonly BatchItem[], send?: BusSender): Promise<(PublishResult | Error)[]> {
    const delivered = new Map<string, number>()
    const origins = items.map(() => `${this.#instanceId}:${++this.#seq}`)
    let wake: (() => void) | undefined
    let waiting = 0
    // One callback for the whole batch: it learns which event by its origin.
    const heard = (n: number, origin: string) => {
      delivered.set(origin, n)
      if (delivered.size >= waiting) wake?.()
    }
    for (const origin of origins) this.#pending.set(origin, heard)
    try {
      const ids = await (send ?? ((messages) => this.#bus.publishMany(messages)))(
        items.map((item, i) => ({
          event: item.event,
          data: item.data,
          target: item.target,
          json: item.json,
          origin: origins[i] as string,
        })),
      )
      waiting = ids.filter((id) => typeof id === 'string').length
      this.#accepted += waiting
      if (delivered.size < waiting) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, LOCAL_DELIVERY_WAIT_MS)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      return ids.map((id, i) =>
        typeof id === 'string' ? { id, delivered: delivered.get(origins[i] as string) ?? 0 } : id,
      )
    } finally {
      for (const origin of origins) this.#pending.delete(origin)
    }
  }
}
