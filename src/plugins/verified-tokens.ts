interface Entry<T> {
  value: T
  until: number
}

/**
 * Verified tokens by their exact text: a publisher sends the same token with every request, and
 * its signature need not be checked again. An LRU of at most `size` tokens; each is kept until
 * its `exp` or for `ttlMs` after it was verified, whichever comes first. Keyed by the token's text
 * itself (a Map hashes it natively), so a lookup costs no cryptographic hash: a different byte is a
 * different key, and only a token that verified is ever stored. The token asked for last is kept
 * apart too: a string compare finds it without hashing it again.
 */
export class VerifiedTokens<T> {
  readonly #size: number
  readonly #ttlMs: number
  readonly #entries = new Map<string, Entry<T>>()
  #lastToken: string | null = null
  #lastEntry: Entry<T> | null = null

  constructor(size: number, ttlMs: number) {
    this.#size = size
    this.#ttlMs = ttlMs
  }

  get size(): number {
    return this.#entries.size
  }

  get(token: string, now = Date.now()): T | undefined {
    const last = this.#lastEntry
    if (last !== null && token === this.#lastToken) {
      if (last.until > now) return last.value
      this.#delete(token)
      return undefined
    }
    const hit = this.#entries.get(token)
    if (hit === undefined) return undefined
    if (hit.until <= now) {
      this.#delete(token)
      return undefined
    }
    // The most recently used goes last; the oldest is the first to go.
    this.#entries.delete(token)
    this.#entries.set(token, hit)
    this.#lastToken = token
    this.#lastEntry = hit
    return hit.value
  }

  /** `expiresAtMs`: the token's own `exp`, in ms (undefined when it has none). */
  set(token: string, value: T, expiresAtMs: number | undefined, now = Date.now()): void {
    const until = Math.min(now + this.#ttlMs, expiresAtMs ?? Number.POSITIVE_INFINITY)
    if (!(until > now) || this.#size === 0) return
    this.#delete(token)
    if (this.#entries.size >= this.#size) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#delete(oldest.value)
    }
    const entry = { value, until }
    this.#entries.set(token, entry)
    this.#lastToken = token
    this.#lastEntry = entry
  }

  #delete(token: string): void {
    this.#entries.delete(token)
    if (token === this.#lastToken) {
      this.#lastToken = null
      this.#lastEntry = null
    }
  }
}
