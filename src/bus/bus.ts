import type { EventTarget } from '../sse/target.js'

/** What a publisher hands to the bus. */
export interface BusMessage {
  readonly event: string
  /** Any JSON value. */
  readonly data: unknown
  readonly target: EventTarget
  /**
   * An opaque tag of who published it, carried to every subscriber unchanged. The
   * service uses `<instanceId>:<n>` so that an instance recognises its own messages
   * when it hears them back (to report how many local connections got them).
   */
  readonly origin: string
  /** `data` as JSON text, when the publisher already has it: the bus carries it instead of encoding `data` again. */
  readonly json?: string
}

/** A message as every subscriber receives it: with the id the bus assigned. */
export interface BusEvent extends BusMessage {
  /** `<ms>-<seq>`, strictly increasing across every publisher of the bus. */
  readonly id: string
  /** Epoch ms at which the bus accepted it. */
  readonly publishedAt: number
  /** `data` as JSON text when the bus has it (as it travelled over Redis, or as it was published): frames use it as it is. */
  readonly json?: string
}

export type BusHandler = (event: BusEvent) => void

export interface BusStatus {
  readonly ready: boolean
  /** Why the bus is not ready; null when it is. */
  readonly reason: string | null
}

/**
 * Carries published events to every instance of the service. Every subscriber gets
 * every message published after it subscribed, its own included, exactly once and in
 * id order.
 */
export interface Bus {
  readonly kind: 'memory' | 'redis'
  /**
   * Accepts a message for every instance and resolves with its id. Rejects with
   * SSE_ERR_BUS_UNAVAILABLE when it cannot accept it now: the caller must not report
   * success for a message the bus did not take.
   */
  publish(message: BusMessage): Promise<string>
  /**
   * Publishes several messages in one go (one round trip where the bus has a network), in
   * order: their ids increase in the order given. Each settles on its own: the result holds
   * an id or the error for that message.
   */
  publishMany(messages: readonly BusMessage[]): Promise<(string | Error)[]>
  /** Starts delivery to `handler`; resolves once every later publish will reach it. */
  subscribe(handler: BusHandler): Promise<void>
  status(): BusStatus
  /** Stops delivery and refuses further publishes. Idempotent. */
  close(): Promise<void>
}

/** The millisecond part of a `<ms>-<seq>` id. */
export function idTime(id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}
