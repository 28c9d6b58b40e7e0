import { errors } from '../errors.js'
import { createEventIdGenerator, type EventIdGenerator } from '../sse/event-id.js'
import type { Bus, BusEvent, BusHandler, BusMessage, BusStatus } from './bus.js'

/**
 * What several in-process buses share: one id sequence and the list of subscribers.
 * One process has one hub; tests give several buses the same hub to run the contract
 * suite the way the Redis bus runs it.
 */
export class MemoryHub {
  readonly ids: EventIdGenerator
  readonly handlers = new Set<BusHandler>()

  constructor(now: () => number = Date.now) {
    this.ids = createEventIdGenerator(now)
  }
}

const READY: BusStatus = Object.freeze({ ready: true, reason: null })
const CLOSED: BusStatus = Object.freeze({ ready: false, reason: 'the bus is closed' })

/**
 * The single-process bus: publish calls every subscriber synchronously, before the
 * returned promise settles, so a publisher sees its local delivery at once. The data
 * is passed by reference, never serialized.
 */
export class MemoryBus implements Bus {
  readonly kind = 'memory' as const
  readonly #hub: MemoryHub
  readonly #own = new Set<BusHandler>()
  #closed = false

  constructor(hub: MemoryHub = new MemoryHub()) {
    this.#hub = hub
  }

  publish(message: BusMessage): Promise<string> {
    if (this.#closed) return Promise.reject(new errors.SSE_ERR_BUS_UNAVAILABLE('the bus is closed'))
    return Promise.resolve(this.#deliver(message))
  }

  /** In order, synchronously: each event reaches every subscriber before the next is taken. */
  publishMany(messages: readonly BusMessage[]): Promise<(string | Error)[]> {
    if (this.#closed) {
      return Promise.resolve(messages.map(() => new errors.SSE_ERR_BUS_UNAVAILABLE('the bus is closed')))
    }
    const out: (string | Error)[] = new Array(messages.length)
    for (let i = 0; i < messages.length; i++) {
      try {
        out[i] = this.#deliver(messages[i] as BusMessage)
      } catch (err) {
        out[i] = err instanceof Error ? err : new Error(String(err))
      }
    }
    return Promise.resolve(out)
  }

  #deliver(message: BusMessage): string {
    const ids = this.#hub.ids
    const id = ids.next()
    // One literal of one shape (a spread would copy property by property, and idTime would parse it back).
    const event: BusEvent = {
      event: message.event,
      data: message.data,
      target: message.target,
      origin: message.origin,
      json: message.json,
      id,
      publishedAt: ids.lastTime,
    }
    for (const handler of this.#hub.handlers) handler(event)
    return id
  }

  subscribe(handler: BusHandler): Promise<void> {
    if (this.#closed) return Promise.reject(new errors.SSE_ERR_BUS_UNAVAILABLE('the bus is closed'))
    this.#own.add(handler)
    this.#hub.handlers.add(handler)
    return Promise.resolve()
  }

  status(): BusStatus {
    return this.#closed ? CLOSED : READY
  }

  close(): Promise<void> {
    this.#closed = true
    for (const handler of this.#own) this.#hub.handlers.delete(handler)
    this.#own.clear()
    return Promise.resolve()
  }
}
