import { createPublicKey } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import buildGetJwks from 'get-jwks'
import { Agent } from 'undici'
import type { JwksConfig, JwtAlgorithm } from '../config/auth.js'
import { errors } from '../errors.js'

type Jwk = Record<string, unknown>
type GetJwks = ReturnType<typeof buildGetJwks>

/** A public key from the key set, ready for the verifier, with the only algorithms it allows. */
export interface VerificationKey {
  readonly kid: string
  readonly pem: string
  readonly algorithms: readonly JwtAlgorithm[]
}

/** A provider that does not answer within this is down, as far as this request is concerned. */
const FETCH_TIMEOUT_MS = 5_000
/** Real keys are few (a current one, the next and the last); this bounds what a provider can make us keep. */
const MAX_KNOWN_KEYS = 256
const MAX_KID_LENGTH = 256

/** The curve each EC and OKP key type signs with. */
const CURVES: Record<string, JwtAlgorithm> = {
  'P-256': 'ES256',
  'P-384': 'ES384',
  'P-521': 'ES512',
  Ed25519: 'EdDSA',
  Ed448: 'EdDSA',
}

function refused(reason: string): Error {
  return new errors.SSE_ERR_INVALID_TOKEN(reason)
}

/** Whether an algorithm is one a key of this type and curve can verify. */
function fits(alg: JwtAlgorithm, jwk: Jwk): boolean {
  if (jwk.kty === 'RSA') return alg.startsWith('RS') || alg.startsWith('PS')
  if (jwk.kty === 'EC' || jwk.kty === 'OKP') return CURVES[String(jwk.crv)] === alg
  return false
}

/**
 * The one algorithm a key allows: its own `alg`, else the one of its type (an RSA key without
 * `alg`, as Azure AD publishes them, takes the first RS or PS algorithm allowed: RS256 by
 * default). Never a symmetric one: an `oct` key, or a key for encryption, allows nothing.
 */
function algorithmsOf(jwk: Jwk, allowed: readonly JwtAlgorithm[]): JwtAlgorithm[] {
  if (jwk.use !== undefined && jwk.use !== 'sig') return []
  if (Array.isArray(jwk.key_ops) && !jwk.key_ops.includes('verify')) return []
  const own =
    typeof jwk.alg === 'string'
      ? allowed.find((a) => a === jwk.alg)
      : jwk.kty === 'RSA'
        ? allowed.find((a) => a.startsWith('RS') || a.startsWith('PS'))
        : allowed.find((a) => a === CURVES[String(jwk.crv)])
  return own !== undefined && fits(own, jwk) ? [own] : []
}

/** A failure to reach or read the key set, as opposed to a key set that answered without the key. */
function isOutage(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code !== 'JWK_NOT_FOUND' && code !== 'NO_JWKS'
}

/** What an outage is in the log: a code and a short message, never a body. */
function describe(err: unknown): Record<string, unknown> {
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown }; response?: Response }
  return {
    code: e?.code ?? e?.cause?.code ?? 'JWKS_FETCH_FAILED',
    message: String(e?.message ?? err),
    ...(e?.response?.status ? { status: e.response.status } : {}),
  }
}

/**
 * One configured key set URL. get-jwks builds the URL from a `domain` and `jwksPath`; both come
 * from the configured URL, never from a token, so a token's `iss` or `jku` cannot choose where
 * keys are fetched from.
 */
class Source {
  readonly url: string
  down = false
  readonly #base: string
  readonly #jwks: GetJwks

  constructor(url: string, cacheMs: number, dispatcher: Agent) {
    const parsed = new URL(url)
    const cut = parsed.pathname.lastIndexOf('/') + 1
    this.url = url
    this.#base = `${parsed.origin}${parsed.pathname.slice(0, cut)}`
    this.#jwks = buildGetJwks({
      ttl: cacheMs,
      max: 100,
      jwksPath: `${parsed.pathname.slice(cut)}${parsed.search}`,
      issuersWhitelist: [this.#base],
      fetchOptions: { dispatcher, headers: { accept: 'application/json' } } as never,
    })
  }

  #cacheKey(kid: string, alg: string): string {
    return this.#jwks.generateCacheKey(alg, kid, this.#base)
  }

  /** Cached, or being fetched: asking again costs no request. */
  has(kid: string, alg: string): boolean {
    return this.#jwks.cache.get(this.#cacheKey(kid, alg)) !== undefined
  }

  lookup(kid: string, alg: string): Promise<Jwk> {
    return this.#jwks.getJwk({ domain: this.#base, alg, kid })
  }

  /**
   * get-jwks answers a failed fetch with the key it had before, even when the key set answered
   * without it (a removed key would work for another cache period); that decision is made by
   * JwksKeySet instead, so its copy goes.
   */
  forgetStale(kid: string, alg: string): void {
    this.#jwks.staleCache.delete(this.#cacheKey(kid, alg))
  }
}

/**
 * The keys of one or more JWKS URLs, picked by `kid`, on top of get-jwks (fetching, its cache of
 * `cacheMs`). get-jwks fetches the key set again for every key id it does not hold and forgets
 * each miss, so made-up ids would each cost a request. What this adds:
 * - key ids never seen are fetched one at a time, and once a fetch came back without its id (or
 *   failed), no other unseen id is fetched for `cooldownMs`: a flood of made-up ids costs one
 *   request per cooldown, while each real key (get-jwks keeps one entry per id) costs one fetch
 *   per cache period;
 * - a key it had keeps working while the provider cannot be reached (retried once per cooldown),
 *   but stops as soon as the provider answers without it;
 * - each outage is logged once, and its end once.
 */
export class JwksKeySet {
  readonly #sources: Source[]
  readonly #allowed: readonly JwtAlgorithm[]
  readonly #cooldownMs: number
  readonly #log: FastifyBaseLogger
  readonly #dispatcher: Agent
  /** Keys resolved before, by `alg kid`: what a refresh during an outage falls back to. */
  readonly #known = new Map<string, { key: VerificationKey; failedAt: number }>()
  readonly #converted = new WeakMap<Jwk, VerificationKey | null>()
  /** The fetch for a key id never seen, while one runs: others wait for it rather than fetch too. */
  #unknownFetch: Promise<VerificationKey> | null = null
  /** When a fetch last came back without its key (or failed): no unseen key id is fetched for a cooldown. */
  #lastMiss = Number.NEGATIVE_INFINITY

  constructor(config: JwksConfig, allowed: readonly JwtAlgorithm[], log: FastifyBaseLogger) {
    this.#dispatcher = new Agent({
      connectTimeout: FETCH_TIMEOUT_MS,
      headersTimeout: FETCH_TIMEOUT_MS,
      bodyTimeout: FETCH_TIMEOUT_MS,
    })
    this.#sources = config.urls.map((url) => new Source(url, config.cacheMs, this.#dispatcher))
    this.#allowed = allowed
    this.#cooldownMs = config.cooldownMs
    this.#log = log
  }

  /** The key a token names, or SSE_ERR_INVALID_TOKEN: never a 500, whatever the provider does. */
  async keyFor(kid: unknown, alg: JwtAlgorithm): Promise<VerificationKey> {
    if (typeof kid !== 'string' || kid === '' || kid.length > MAX_KID_LENGTH) {
      throw refused('it has no key id (kid) to pick its key by')
    }
    const id = `${alg} ${kid}`
    const cached = this.#sources.filter((s) => s.has(kid, alg))
    if (cached.length > 0) return this.#lookup(id, kid, alg, cached)
    const known = this.#known.get(id)
    if (known !== undefined) {
      // Its cache period ended: fetch it again, or, while the provider is down, use it as it was.
      if (Date.now() - known.failedAt < this.#cooldownMs) return known.key
      return this.#lookup(id, kid, alg, this.#sources)
    }
    // Never seen: one such fetch at a time, and none for a cooldown after one that found nothing.
    while (this.#unknownFetch !== null) await this.#unknownFetch.catch(() => undefined)
    const now = this.#sources.filter((s) => s.has(kid, alg))
    if (now.length > 0) return this.#lookup(id, kid, alg, now)
    if (Date.now() - this.#lastMiss < this.#cooldownMs) {
      throw refused('its key id (kid) is not one of the identity provider keys')
    }
    const pending = this.#lookup(id, kid, alg, this.#sources)
    this.#unknownFetch = pending
    try {
      return await pending
    } finally {
      if (this.#unknownFetch === pending) this.#unknownFetch = null
    }
  }

  async #lookup(id: string, kid: string, alg: JwtAlgorithm, sources: Source[]): Promise<VerificationKey> {
    for (const source of sources) source.forgetStale(kid, alg)
    const results = await Promise.allSettled(sources.map((s) => s.lookup(kid, alg)))
    let outage = false
    for (const [i, result] of results.entries()) {
      const source = sources[i] as Source
      if (result.status === 'fulfilled') {
        this.#reachable(source)
        const key = this.#convert(kid, result.value)
        if (key === null || !key.algorithms.includes(alg)) {
          this.#lastMiss = Date.now()
          throw refused(
            key === null
              ? 'its key is not a signing key this service accepts'
              : 'its algorithm does not fit its key',
          )
        }
        this.#remember(id, key)
        return key
      }
      if (isOutage(result.reason)) {
        outage = true
        this.#unreachable(source, result.reason)
      } else {
        this.#reachable(source)
      }
    }
    const known = this.#known.get(id)
    if (outage && known !== undefined) {
      known.failedAt = Date.now()
      return known.key
    }
    // Any miss starts the cooldown for key ids never seen, a removed key's included.
    this.#lastMiss = Date.now()
    if (outage) throw refused('its key could not be fetched from the identity provider')
    // Every key set answered, and none holds it: a removed key stops here.
    this.#known.delete(id)
    throw refused('its key id (kid) is not one of the identity provider keys')
  }

  close(): Promise<void> {
    return this.#dispatcher.close()
  }

  #convert(kid: string, jwk: Jwk): VerificationKey | null {
    let key = this.#converted.get(jwk)
    if (key !== undefined) return key
    const algorithms = algorithmsOf(jwk, this.#allowed)
    key = null
    if (algorithms.length > 0) {
      try {
        const pem = createPublicKey({ key: jwk as never, format: 'jwk' })
          .export({ type: 'spki', format: 'pem' })
          .toString()
        key = Object.freeze({ kid, pem, algorithms: Object.freeze(algorithms) })
      } catch {
        key = null
      }
    }
    this.#converted.set(jwk, key)
    return key
  }

  #remember(id: string, key: VerificationKey): void {
    this.#known.delete(id)
    this.#known.set(id, { key, failedAt: Number.NEGATIVE_INFINITY })
    if (this.#known.size > MAX_KNOWN_KEYS) {
      const oldest = this.#known.keys().next().value
      if (oldest !== undefined) this.#known.delete(oldest)
    }
  }

  #unreachable(source: Source, err: unknown): void {
    if (source.down) return
    source.down = true
    this.#log.warn(
      { jwksUrl: source.url, err: describe(err) },
      'JWKS unreachable: tokens whose key is not cached are refused (401) until it answers again',
    )
  }

  #reachable(source: Source): void {
    if (!source.down) return
    source.down = false
    this.#log.info({ jwksUrl: source.url }, 'JWKS reachable again')
  }
}
