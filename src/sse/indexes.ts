import type { SseClient } from './client.js'

/**
 * Connections grouped by a key (a user id, a topic): what targeted sends iterate, so that
 * they touch only their recipients. A key with no connection left is removed. Most keys have
 * one connection (a user with one tab, a topic one stream follows): such a key holds the
 * connection itself, and gets a Set only when a second one comes (about 100 bytes less a key).
 */
export class ClientSetIndex {
  readonly #entries = new Map<string, SseClient | Set<SseClient>>()

  /** Adds; returns true when `client` is the first for `key`. */
  add(key: string, client: SseClient): boolean {
    const entry = this.#entries.get(key)
    if (entry === undefined) {
      this.#entries.set(key, client)
      return true
    }
    if (entry instanceof Set) {
      entry.add(client)
      return entry.size === 1
    }
    if (entry === client) return true
    this.#entries.set(key, new Set([entry, client]))
    return false
  }

  /** Removes; returns true when `key` has no connection left. */
  remove(key: string, client: SseClient): boolean {
    const entry = this.#entries.get(key)
    if (entry === undefined) return false
    if (entry === client) {
      this.#entries.delete(key)
      return true
    }
    if (!(entry instanceof Set) || !entry.delete(client)) return false
    // Back to the connection itself when one is left.
    if (entry.size === 1) this.#entries.set(key, entry.values().next().value as SseClient)
    return false
  }

  /** The connections of `key`, in the order they came. */
  get(key: string): Iterable<SseClient> | undefined {
    const entry = this.#entries.get(key)
    return entry === undefined || entry instanceof Set ? entry : [entry]
  }

  /** What `key` holds, as it is: one connection or a Set of them (the fan-out's path, nothing allocated). */
  entry(key: string): SseClient | ReadonlySet<SseClient> | undefined {
    return this.#entries.get(key)
  }

  count(key: string): number {
    const entry = this.#entries.get(key)
    return entry === undefined ? 0 : entry instanceof Set ? entry.size : 1
  }

  /** How many keys have connections. */
  get size(): number {
    return this.#entries.size
  }

  keys(): IterableIterator<string> {
    return this.#entries.keys()
  }

  /** The `limit` keys with the most connections, most first (ties by key). */
  top(limit: number): { key: string; connections: number }[] {
    const out: { key: string; connections: number }[] = []
    for (const [key, entry] of this.#entries)
      out.push({ key, connections: entry instanceof Set ? entry.size : 1 })
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
    for (const client of this.byTopic.get(topic) ?? []) {
      if (client.userId === null) anonymous++
      else users.set(client.userId, (users.get(client.userId) ?? 0) + 1)
    }
    return { connections: this.byTopic.count(topic), anonymous, users }
  }

  /** How many of this user's connections here are subscribed to `topic`. */
  userTopicCount(userId: string, topic: string): number {
    let n = 0
    for (const client of this.byUser.get(userId) ?? []) if (client.topics.includes(topic)) n++
    return n
  }
}
