/**
 * Verified tokens by their exact text: a publisher sends the same token with every request, and
 * its signature need not be checked again. An LRU of at most `size` tokens; each is kept until
 * its `exp` or for `ttlMs` after it was verified, whichever comes first. Keyed by the token's text
 * itself (a Map hashes it natively), so a lookup costs no cryptographic hash: a different byte is a
 * different key, and only a token that verified is ever stored.
 */
export class VerifiedTokens<T> {
  readonly #size: number
  readonly #ttlMs: number
  readonly #entries = new Map<string, { value: T; until: number }>()

  constructor(size: number, ttlMs: number) {
    this.#size = size
    this.#ttlMs = ttlMs
  }

  get size(): number {
    return this.#entries.size
  }

  get(token: string, now = Date.now()): T | undefined {
    const hit = this.#entries.get(token)
    if (hit === undefined) return undefined
    if (hit.until <= now) {
      this.#entries.delete(token)
      return undefined
    }
    // The most recently used goes last; the oldest is the first to go.
    this.#entries.delete(token)
    this.#entries.set(token, hit)
    return hit.value
  }

  /** `expiresAtMs`: the token's own `exp`, in ms (undefined when it has none). */
  set(token: string, value: T, expiresAtMs: number | undefined, now = Date.now()): void {
    const until = Math.min(now + this.#ttlMs, expiresAtMs ?? Number.POSITIVE_INFINITY)
    if (!(until > now) || this.#size === 0) return
    this.#entries.delete(token)
    if (this.#entries.size >= this.#size) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
    this.#entries.set(token, { value, until })
  }
}
