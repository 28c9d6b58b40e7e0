import { setTimeout as sleep } from 'node:timers/promises'
import type { RedisClientOptions } from 'redis'
import type { BusStatus } from './bus.js'
import { type BusLogger, messageOf, type RedisClient } from './redis-client.js'
import {
  followingClient,
  type RedisNode,
  SentinelResolver,
  type SentinelTarget,
  sameNode,
} from './redis-sentinel.js'
import { clientsOf, closeTrio, createTrio, reconnectDelay, type Trio } from './redis-trio.js'

type State = 'starting' | 'up' | 'down' | 'closed'

/** Where Redis is: one URL, or sentinels that name the primary (with an optional URL for credentials). */
export type RedisTarget = string | (SentinelTarget & { readonly url?: string | null })

/** How often the sentinels are asked where the primary is: often while it is unreachable. */
const FOLLOW_DOWN_MS = 200
const FOLLOW_UP_MS = 1000

type PubSubListener = (message: string, channel: string) => unknown

/**
 * The three connections an instance holds to Redis, made here and nowhere else:
 * `commands` (short commands), `reader` (held by XREAD BLOCK) and `subscriber`
 * (pub/sub). Commands fail fast while Redis is down instead of queueing. The state
 * of the three together is logged once per change, not once per retry.
 *
 * With sentinels, the three follow the primary: the sentinels are asked where it is (every
 * 200 ms while it is unreachable, every second otherwise), and when it moves, three new
 * connections to the new primary replace the old ones behind the same objects, the
 * subscriber's channels subscribed again. Commands sent meanwhile fail at once (503).
 */
export class RedisConnections {
  readonly commands: RedisClient
  readonly reader: RedisClient
  readonly subscriber: RedisClient
  /** Where publishes go: a fourth connection with `publisher: true` (REDIS_WAIT_REPLICAS), else `commands`. */
  readonly publisher: RedisClient
  readonly #log: BusLogger
  readonly #listeners = new Set<() => void>()
  readonly #options: RedisClientOptions
  readonly #resolver: SentinelResolver | null
  readonly #subscriptions: [string, PubSubListener][] = []
  readonly #name: string | undefined
  readonly #dedicatedPublisher: boolean
  #trio: Trio | null = null
  #primary: RedisNode | null = null
  #state: State = 'starting'
  #lastError: string | null = null
  #connecting: Promise<unknown> | undefined

  /**
   * `name` tags the connections in CLIENT LIST as `<name>:commands`, `<name>:reader`, `<name>:subscriber`
   * (and `<name>:publisher`). `publisher: true` adds a connection for publishes, so that a WAIT for
   * replicas never holds the one that presence and idempotency reads use.
   */
  constructor(
    target: RedisTarget,
    log: BusLogger,
    options: { connectTimeoutMs?: number; name?: string; publisher?: boolean } = {},
  ) {
    this.#log = log
    this.#name = options.name
    this.#dedicatedPublisher = options.publisher ?? false
    const socket = { connectTimeout: options.connectTimeoutMs ?? 5000, reconnectStrategy: reconnectDelay }
    if (typeof target === 'string') {
      this.#options = { url: target, disableOfflineQueue: true, socket }
      this.#resolver = null
      const trio = this.#makeTrio(this.#options)
      this.#trio = trio
      this.commands = trio.commands
      this.reader = trio.reader
      this.subscriber = trio.subscriber
      this.publisher = trio.publisher ?? trio.commands
      return
    }
    // The URL gives only credentials, database and TLS: the sentinels say where the primary is.
    const url = target.url ? new URL(target.url) : null
    this.#options = {
      disableOfflineQueue: true,
      socket: { ...socket, ...(url?.protocol === 'rediss:' ? { tls: true as const } : {}) },
      ...(url?.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url?.password ? { password: decodeURIComponent(url.password) } : {}),
      ...(url && url.pathname.length > 1 ? { database: Number(url.pathname.slice(1)) } : {}),
    }
    this.#resolver = new SentinelResolver(target)
    this.commands = followingClient(() => this.#trio?.commands ?? null)
    this.reader = followingClient(() => this.#trio?.reader ?? null)
    this.publisher = followingClient(() => this.#trio?.publisher ?? this.#trio?.commands ?? null)
    this.subscriber = followingClient(() => this.#trio?.subscriber ?? null, {
      subscribe: (channel: string, listener: PubSubListener) => {
        this.#subscriptions.push([channel, listener])
        return this.#trio?.subscriber.subscribe(channel, listener) ?? Promise.resolve()
      },
    })
  }

  get ready(): boolean {
    return this.#state === 'up'
  }

  /** The primary the connections point at (sentinel mode); null otherwise or before it is known. */
  get primary(): RedisNode | null {
    return this.#primary
  }

  /** Called every time all three connections are ready again after an outage. */
  onUp(listener: () => void): void {
    this.#listeners.add(listener)
  }

  /**
   * Connects the three; resolves true once all are ready, or false after `timeoutMs`
   * (they keep trying in the background: the service starts, not ready).
   */
  async connect(timeoutMs: number): Promise<boolean> {
    if (this.#resolver !== null) {
      this.#connecting = this.#firstPrimary(timeoutMs)
      void this.#follow()
    } else {
      this.#connecting = this.#connectTrio(this.#trio as Trio)
    }
    // A connect abandoned by close() rejects; that is expected.
    this.#connecting.catch(() => undefined)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    try {
      return await Promise.race([this.#connecting.then(() => this.#allReady()), timeout])
    } catch {
      return false
    } finally {
      clearTimeout(timer)
      this.#update()
    }
  }

  status(): BusStatus {
    if (this.#state === 'up') return { ready: true, reason: null }
    if (this.#state === 'closed') return { ready: false, reason: 'closed' }
    return { ready: false, reason: this.#lastError ?? 'redis: connecting' }
  }

  /** Marks a deliberate shutdown, so that connections ending from here on are not reported as an outage. */
  closing(): void {
    this.#state = 'closed'
  }

  async close(): Promise<void> {
    this.#state = 'closed'
    this.#resolver?.close()
    const trio = this.#trio
    if (trio !== null) await closeTrio(trio)
    // The following loop sleeps on an unref'd timer and ends at its next wake: not awaited.
  }

  #closed(): boolean {
    return this.#state === 'closed'
  }

  #makeTrio(options: RedisClientOptions): Trio {
    const trio = createTrio(options, { name: this.#name, publisher: this.#dedicatedPublisher })
    for (const [role, client] of Object.entries(trio) as [string, RedisClient][]) {
      client.on('error', (err: unknown) => {
        if (this.#trio !== trio) return
        this.#lastError = `redis ${role} connection: ${messageOf(err)}`
        this.#update()
      })
      for (const event of ['ready', 'reconnecting', 'end']) {
        client.on(event, () => {
          if (this.#trio === trio) this.#update()
        })
      }
    }
    return trio
  }

  #connectTrio(trio: Trio): Promise<unknown> {
    return Promise.all(clientsOf(trio).map((client) => client.connect()))
  }

  #allReady(): boolean {
    const trio = this.#trio
    return trio !== null && clientsOf(trio).every((client) => client.isReady)
  }

  /** Sentinel mode: asks until a sentinel names the primary, then connects to it. */
  async #firstPrimary(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.#state !== 'closed') {
      const primary = await this.#resolver?.primary()
      if (primary) {
        if (!sameNode(primary, this.#primary)) await this.#moveTo(primary)
        return
      }
      this.#lastError = 'redis sentinels: none named the primary'
      if (Date.now() > deadline) throw new Error(this.#lastError)
      await sleep(FOLLOW_DOWN_MS, undefined, { ref: false })
    }
  }

  /** Sentinel mode: follows the primary wherever the sentinels say it is, until closed. */
  async #follow(): Promise<void> {
    while (this.#state !== 'closed') {
      await sleep(this.#state === 'up' ? FOLLOW_UP_MS : FOLLOW_DOWN_MS, undefined, { ref: false })
      if (this.#closed()) break
      const primary = await this.#resolver?.primary().catch(() => null)
      // Not awaited past the swap: a new primary that does not answer yet must not stop the following.
      if (primary && !sameNode(primary, this.#primary) && !this.#closed()) void this.#moveTo(primary)
    }
  }

  /**
   * New connections to `primary` replace the old ones at once (the old are dropped); resolves
   * once the new ones are connected.
   */
  async #moveTo(primary: RedisNode): Promise<void> {
    if (this.#closed()) return
    const previous = this.#primary
    const trio = this.#makeTrio({
      ...this.#options,
      socket: { ...this.#options.socket, host: primary.host, port: primary.port },
    } as RedisClientOptions)
    for (const [channel, listener] of this.#subscriptions) {
      trio.subscriber.subscribe(channel, listener).catch(() => undefined)
    }
    const old = this.#trio
    this.#trio = trio
    this.#primary = primary
    if (previous !== null) {
      this.#log.warn(
        { from: `${previous.host}:${previous.port}`, to: `${primary.host}:${primary.port}` },
        'the redis primary moved (sentinel failover): connecting to the new one',
      )
    }
    this.#update()
    const connected = this.#connectTrio(trio).catch(() => undefined)
    if (old !== null) await closeTrio(old, true)
    await connected
    this.#update()
  }

  #update(): void {
    if (this.#state === 'closed') return
    const up = this.#allReady()
    const previous = this.#state
    if (up && previous !== 'up') {
      this.#state = 'up'
      if (previous === 'starting') this.#log.info({}, 'connected to redis')
      else this.#log.info({}, 'redis is available again: publishing resumes, reading from the last event')
      for (const listener of this.#listeners) listener()
    } else if (!up && previous === 'up') {
      this.#state = 'down'
      this.#log.warn(
        { reason: this.#lastError },
        'redis is unavailable: publishing answers 503 and /ready 503 until it is back; reconnecting with backoff',
      )
    } else if (!up && previous === 'starting' && this.#connecting !== undefined && this.#lastError !== null) {
      this.#state = 'down'
      this.#log.error(
        { reason: this.#lastError },
        'redis is not reachable: starting not ready; reconnecting with backoff',
      )
    }
  }
}
