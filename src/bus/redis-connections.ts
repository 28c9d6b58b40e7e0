import { createClient } from 'redis'
import type { BusStatus } from './bus.js'
import type { BusLogger, RedisClient } from './redis-bus.js'

/** Reconnect delay: 100 ms doubling to 2 s, with jitter so that instances do not retry in step. */
export function reconnectDelay(retries: number): number {
  return Math.min(100 * 2 ** Math.min(retries, 5), 2000) + Math.floor(Math.random() * 100)
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err)
}

type State = 'starting' | 'up' | 'down' | 'closed'

/**
 * The three connections an instance holds to Redis, made here and nowhere else:
 * `commands` (short commands), `reader` (held by XREAD BLOCK) and `subscriber`
 * (pub/sub). Commands fail fast while Redis is down instead of queueing. The state
 * of the three together is logged once per change, not once per retry.
 */
export class RedisConnections {
  readonly commands: RedisClient
  readonly reader: RedisClient
  readonly subscriber: RedisClient
  readonly #log: BusLogger
  readonly #listeners = new Set<() => void>()
  #state: State = 'starting'
  #lastError: string | null = null
  #connecting: Promise<unknown> | undefined

  /** `name` tags the connections in CLIENT LIST as `<name>:commands`, `<name>:reader`, `<name>:subscriber`. */
  constructor(url: string, log: BusLogger, options: { connectTimeoutMs?: number; name?: string } = {}) {
    this.#log = log
    const base = {
      url,
      disableOfflineQueue: true,
      socket: { connectTimeout: options.connectTimeoutMs ?? 5000, reconnectStrategy: reconnectDelay },
    }
    const named = (role: string) => (options.name ? { name: `${options.name}:${role}` } : {})
    this.commands = createClient({ ...base, ...named('commands') }) as RedisClient
    this.reader = this.commands.duplicate(named('reader'))
    // The subscriber keeps its offline queue: SUBSCRIBE made while Redis is down is sent
    // when it comes up, and node-redis subscribes again after every reconnect.
    this.subscriber = this.commands.duplicate({ disableOfflineQueue: false, ...named('subscriber') })
    for (const [name, client] of this.#all()) {
      client.on('error', (err: unknown) => {
        this.#lastError = `redis ${name} connection: ${messageOf(err)}`
        this.#update()
      })
      client.on('ready', () => this.#update())
      client.on('reconnecting', () => this.#update())
      client.on('end', () => this.#update())
    }
  }

  get ready(): boolean {
    return this.#state === 'up'
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
    this.#connecting = Promise.all(this.#all().map(([, client]) => client.connect()))
    // A connect abandoned by close() rejects; that is expected.
    this.#connecting.catch(() => undefined)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    try {
      return await Promise.race([this.#connecting.then(() => true), timeout])
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
    await Promise.all(
      this.#all().map(async ([, client]) => {
        try {
          // close() waits for pending replies; a client that is not up has none worth waiting for.
          if (client.isReady) await client.close()
          else if (client.isOpen) client.destroy()
        } catch {
          // already closed
        }
      }),
    )
  }

  #all(): [string, RedisClient][] {
    return [
      ['commands', this.commands],
      ['reader', this.reader],
      ['subscriber', this.subscriber],
    ]
  }

  #update(): void {
    if (this.#state === 'closed') return
    const up = this.commands.isReady && this.reader.isReady && this.subscriber.isReady
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
