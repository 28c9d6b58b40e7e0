import type { SseClient } from './client.js'

/**
 * Connections grouped by a key (a user id, a topic): what targeted sends iterate, so that
 * they touch only their recipients. A key with no connection left is removed.
 */
export class ClientSetIndex {
  readonly #sets = new Map<string, Set<SseClient>>()

  /** Adds; returns true when `client` is the first for `key`. */
  add(key: string, client: SseClient): boolean {
    let set = this.#sets.get(key)
    if (set === undefined) {
      set = new Set()
      this.#sets.set(key, set)
    }
    set.add(client)
    return set.size === 1
  }

  /** Removes; returns true when `key` has no connection left. */
  remove(key: string, client: SseClient): boolean {
    const set = this.#sets.get(key)
    if (set === undefined || !set.delete(client)) return false
    if (set.size > 0) return false
    this.#sets.delete(key)
    return true
  }

  get(key: string): ReadonlySet<SseClient> | undefined {
    return this.#sets.get(key)
  }

  count(key: string): number {
    return this.#sets.get(key)?.size ?? 0
  }

  /** How many keys have connections. */
  get size(): number {
    return this.#sets.size
  }

  keys(): IterableIterator<string> {
    return this.#sets.keys()
  }

  /** The `limit` keys with the most connections, most first (ties by key). */
  top(limit: number): { key: string; connections: number }[] {
    const out: { key: string; connections: number }[] = []
    for (const [key, set] of this.#sets) out.push({ key, connections: set.size })
    out.sort((a, b) => b.connections - a.connections || (a.key < b.key ? -1 : 1))
    if (out.length > limit) out.length = limit
    return out
  }
}

/** Anonymous connections per peer address (MAX_ANONYMOUS_PER_IP). */
export class AddressCounter {
  readonly #counts = new Map<string, number>()

  add(ip: string): void {
    this.#counts.set(ip, (this.#counts.get(ip) ?? 0) + 1)
  }

  remove(ip: string): void {
    const count = (this.#counts.get(ip) ?? 1) - 1
    if (count <= 0) this.#counts.delete(ip)
    else this.#counts.set(ip, count)
  }

  count(ip: string): number {
    return this.#counts.get(ip) ?? 0
  }
}

/** Every index of open connections, kept together so that adding and removing touch all of them. */
export class ConnectionIndexes {
  readonly clients = new Map<string, SseClient>()
  readonly byUser = new ClientSetIndex()
  readonly byTopic = new ClientSetIndex()
  readonly anonymousByIp = new AddressCounter()
  authenticated = 0

  add(client: SseClient): void {
    this.clients.set(client.id, client)
    if (client.userId !== null) {
      this.authenticated++
      this.byUser.add(client.userId, client)
    } else if (client.ip !== null) {
      this.anonymousByIp.add(client.ip)
    }
    for (const topic of client.topics) this.byTopic.add(topic, client)
  }

  remove(client: SseClient): void {
    this.clients.delete(client.id)
    if (client.userId !== null) {
      this.authenticated--
      this.byUser.remove(client.userId, client)
    } else if (client.ip !== null) {
      this.anonymousByIp.remove(client.ip)
    }
    for (const topic of client.topics) this.byTopic.remove(topic, client)
  }

  /** Who is subscribed to `topic` here: every user's connection count (not only the top). */
  presence(topic: string): { connections: number; anonymous: number; users: Map<string, number> } {
    const users = new Map<string, number>()
    let anonymous = 0
    const set = this.byTopic.get(topic)
    for (const client of set ?? []) {
      if (client.userId === null) anonymous++
      else users.set(client.userId, (users.get(client.userId) ?? 0) + 1)
    }
    return { connections: set?.size ?? 0, anonymous, users }
  }

  /** How many of this user's connections here are subscribed to `topic`. */
  userTopicCount(userId: string, topic: string): number {
    let n = 0
    for (const client of this.byUser.get(userId) ?? []) if (client.topics.includes(topic)) n++
    return n
  }
}
