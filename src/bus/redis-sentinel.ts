import { createClient } from 'redis'
import type { RedisClient } from './redis-client.js'

export interface RedisNode {
  readonly host: string
  readonly port: number
}

/** What a Sentinel deployment is: where its sentinels are and which primary to follow. */
export interface SentinelTarget {
  readonly sentinels: readonly RedisNode[]
  /** The name the sentinels monitor the primary under (`sentinel monitor <name> ...`). */
  readonly name: string
}

const ASK_TIMEOUT_MS = 1000

export function sameNode(a: RedisNode | null, b: RedisNode | null): boolean {
  return a !== null && b !== null && a.host === b.host && a.port === b.port
}

/**
 * Asks the sentinels where the primary is (`SENTINEL GET-MASTER-ADDR-BY-NAME`), one at a time:
 * it keeps one connection to the sentinel that answered last and moves to the next one when that
 * one fails, times out or does not know the name.
 */
export class SentinelResolver {
  readonly #sentinels: readonly RedisNode[]
  readonly #name: string
  #index = 0
  #client: RedisClient | null = null
  #asking: Promise<RedisNode | null> | undefined
  #closed = false

  constructor(target: SentinelTarget) {
    if (target.sentinels.length === 0) throw new TypeError('SentinelResolver needs at least one sentinel')
    this.#sentinels = target.sentinels
    this.#name = target.name
  }

  /** The primary's address as the first answering sentinel knows it; null when none answers. Callers share one query. */
  primary(): Promise<RedisNode | null> {
    if (this.#asking === undefined) {
      this.#asking = this.#primary().finally(() => {
        this.#asking = undefined
      })
    }
    return this.#asking
  }

  async #primary(): Promise<RedisNode | null> {
    for (let tried = 0; tried < this.#sentinels.length && !this.#closed; tried++) {
      try {
        const reply = await this.#ask(['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.#name])
        if (Array.isArray(reply) && reply.length === 2) {
          const port = Number(reply[1])
          if (typeof reply[0] === 'string' && Number.isInteger(port)) return { host: reply[0], port }
        }
      } catch {
        // this sentinel is down or slow: the next one is asked
      }
      this.#next()
    }
    return null
  }

  close(): void {
    this.#closed = true
    this.#drop()
  }

  async #ask(args: string[]): Promise<unknown> {
    let client = this.#client
    if (client === null || !client.isReady) {
      this.#drop()
      const node = this.#sentinels[this.#index] as RedisNode
      client = createClient({
        socket: {
          host: node.host,
          port: node.port,
          connectTimeout: ASK_TIMEOUT_MS,
          reconnectStrategy: false,
        },
        disableOfflineQueue: true,
      }) as RedisClient
      client.on('error', () => {})
      this.#client = client
      await client.connect()
    }
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('sentinel timed out')), ASK_TIMEOUT_MS)
    })
    try {
      return await Promise.race([client.sendCommand(args), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  #next(): void {
    this.#drop()
    this.#index = (this.#index + 1) % this.#sentinels.length
  }

  #drop(): void {
    const client = this.#client
    this.#client = null
    if (client?.isOpen) client.destroy()
  }
}

/**
 * A stand-in for a client that forwards every use to whatever client `current()` returns now,
 * so that the bus, the history and presence keep one reference while the connections behind it
 * are replaced (a failover moves them to another server). Without a client it is not ready and
 * every command rejects at once, as a disconnected client with no offline queue does.
 */
export function followingClient(
  current: () => RedisClient | null,
  overrides: Record<string, unknown> = {},
): RedisClient {
  let bound = new Map<PropertyKey, unknown>()
  let boundTo: RedisClient | null = null
  return new Proxy({} as RedisClient, {
    get(_target, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as string]
      const client = current()
      if (client === null) {
        if (prop === 'isReady' || prop === 'isOpen') return false
        return () => Promise.reject(new Error('redis: the primary is not known yet'))
      }
      if (client !== boundTo) {
        bound = new Map()
        boundTo = client
      }
      const value = Reflect.get(client, prop, client)
      if (typeof value !== 'function') return value
      let fn = bound.get(prop)
      if (fn === undefined) {
        fn = value.bind(client)
        bound.set(prop, fn)
      }
      return fn
    },
  })
}
