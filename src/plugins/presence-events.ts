import type { SseClient } from '../sse/client.js'
import { compilePattern, matchesPattern } from '../sse/topics.js'

export interface PresenceEventsOptions {
  /** PRESENCE_TOPICS. */
  patterns: readonly string[]
  /** A user's connections to a topic, deployment-wide, after adding `delta` for this instance. */
  count(topic: string, userId: string, delta: number): number | Promise<number>
  /** Publishes `event: presence` to the topic. */
  publish(data: PresenceEvent): Promise<unknown>
  onError(err: unknown): void
}

export interface PresenceEvent {
  topic: string
  userId: string
  action: 'join' | 'leave'
  connections: number
}

/**
 * `event: presence` on PRESENCE_TOPICS: `join` when a user's first connection (across tabs and
 * instances) subscribes to a topic, `leave` when the last one goes. Anonymous connections
 * count toward presence but emit nothing.
 */
export class PresenceEvents {
  readonly #patterns
  readonly #options: PresenceEventsOptions
  readonly #pending = new Set<Promise<void>>()

  constructor(options: PresenceEventsOptions) {
    this.#options = options
    this.#patterns = options.patterns.map((p) => compilePattern(p, null))
  }

  get enabled(): boolean {
    return this.#patterns.length > 0
  }

  /** A connection's topics changed: `added` on connect or subscribe, `removed` on unsubscribe or disconnect. */
  changed(client: SseClient, added: readonly string[], removed: readonly string[]): void {
    const userId = client.userId
    if (userId === null || this.#patterns.length === 0) return
    for (const topic of added) if (this.#tracked(topic)) this.#track(topic, userId, 1)
    for (const topic of removed) if (this.#tracked(topic)) this.#track(topic, userId, -1)
  }

  /** Users a dead instance held who are gone now. */
  left(topic: string, userId: string): void {
    this.#settle(this.#options.publish({ topic, userId, action: 'leave', connections: 0 }))
  }

  /** Waits for the changes in flight (before a graceful stop closes the bus). */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending])
  }

  #tracked(topic: string): boolean {
    for (const pattern of this.#patterns) if (matchesPattern(pattern, topic)) return true
    return false
  }

  #track(topic: string, userId: string, delta: number): void {
    const emit = (connections: number) => {
      if (delta > 0 && connections === 1)
        return this.#options.publish({ topic, userId, action: 'join', connections })
      if (delta < 0 && connections === 0)
        return this.#options.publish({ topic, userId, action: 'leave', connections })
      return undefined
    }
    const counted = this.#options.count(topic, userId, delta)
    this.#settle(counted instanceof Promise ? counted.then(emit) : Promise.resolve(emit(counted)))
  }

  #settle(work: Promise<unknown>): void {
    const tracked: Promise<void> = work.then(
      () => undefined,
      (err) => this.#options.onError(err),
    )
    this.#pending.add(tracked)
    tracked.finally(() => this.#pending.delete(tracked))
  }
}
