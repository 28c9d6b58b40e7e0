import { createPublicKey, randomBytes } from 'node:crypto'
import { ConfigError } from '../errors.js'
import { type Env, int, list, oneOrMany, present } from './env.js'

export type JwtAlgorithm =
  | 'HS256'
  | 'HS384'
  | 'HS512'
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'ES256'
  | 'ES384'
  | 'EdDSA'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES512'

const SYMMETRIC: readonly JwtAlgorithm[] = ['HS256', 'HS384', 'HS512']
const ASYMMETRIC: readonly JwtAlgorithm[] = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'EdDSA']
/** What JWKS keys may use: each key allows only its own algorithm (its `alg`, or the one of its type). */
export const JWKS_ALGORITHMS: readonly JwtAlgorithm[] = [...ASYMMETRIC, 'PS256', 'PS384', 'PS512', 'ES512']
const MIN_SECRET_BYTES = 32

export interface JwtConfig {
  /** HMAC secret (HS*); exclusive with `publicKey`. */
  readonly secret?: string
  /** PEM public key (RS*, ES*, EdDSA); exclusive with `secret`. */
  readonly publicKey?: string
  /** JWKS endpoints (JWT_JWKS_URL): keys picked by the token's `kid`; exclusive with `secret` and `publicKey`. */
  readonly jwks?: JwksConfig
  readonly algorithms: readonly JwtAlgorithm[]
  /** The accepted `iss` (one, or any of a list). */
  readonly issuer?: string | readonly string[]
  /** The accepted `aud` (one, or any of a list). */
  readonly audience?: string | readonly string[]
  /** True when the secret was generated at start because none was configured (development only). */
  readonly ephemeral: boolean
  /** Where a verified token's user id, scopes and topics are read (defaults: `sub`, `scope`/`scp`, `topics`). */
  readonly claims?: ClaimsConfig
  /** AUTH_COOKIE: the cookie a stream without `Authorization` or `?token=` reads its JWT from. */
  readonly cookie?: string
}

export interface JwksConfig {
  readonly urls: readonly string[]
  /** How long a fetched key is used before it is fetched again. */
  readonly cacheMs: number
  /** A token with an unknown `kid` makes the service refetch at most once per this. */
  readonly cooldownMs: number
}

export interface ClaimsConfig {
  /** The user id: a claim name, a dotted path (`user.id`) or a full URL-like name. */
  readonly user: string
  /** The scopes (a space-separated string or an array); `scope` also falls back to `scp`. */
  readonly scope: string
  /** The topic patterns the token may subscribe to. */
  readonly topics: string
  /** JWT_SCOPE_MAP: a provider's role or permission, and the scopes of this service it grants. */
  readonly scopeMap: Readonly<Record<string, readonly string[]>>
}

export function loadJwt(env: Env, production: boolean): JwtConfig {
  const rawSecret = env.JWT_SECRET
  const rawKey = present(env, 'JWT_PUBLIC_KEY')
  const jwksUrls = list(env, 'JWT_JWKS_URL')
  const issuer = oneOrMany(env, 'JWT_ISSUER')
  const audience = oneOrMany(env, 'JWT_AUDIENCE')
  const requested = list(env, 'JWT_ALGORITHMS')
  for (const alg of requested ?? []) {
    if (![...SYMMETRIC, ...JWKS_ALGORITHMS].includes(alg as JwtAlgorithm)) {
      throw new ConfigError('JWT_ALGORITHMS', `unsupported algorithm "${alg}" (none is never allowed)`)
    }
  }
  const hasSecret = rawSecret !== undefined && rawSecret !== ''
  if (hasSecret && rawKey !== undefined) {
    throw new ConfigError('JWT_SECRET', 'set either JWT_SECRET or JWT_PUBLIC_KEY, not both')
  }
  if (jwksUrls !== undefined && (hasSecret || rawKey !== undefined)) {
    throw new ConfigError(
      'JWT_JWKS_URL',
      `set either JWT_JWKS_URL or ${hasSecret ? 'JWT_SECRET' : 'JWT_PUBLIC_KEY'}, not both`,
    )
  }
  const cookie = authCookie(env)
  const extra = {
    ...(issuer ? { issuer } : {}),
    ...(audience ? { audience } : {}),
    claims: claimsConfig(env),
    ...(cookie ? { cookie } : {}),
  }
  if (jwksUrls !== undefined) return loadJwks(env, jwksUrls, requested, extra)

  if (hasSecret) {
    if (rawSecret !== rawSecret.trim()) {
      throw new ConfigError('JWT_SECRET', 'has leading or trailing white space; remove it')
    }
    if (Buffer.byteLength(rawSecret, 'utf8') < MIN_SECRET_BYTES) {
      throw new ConfigError('JWT_SECRET', `must be at least ${MIN_SECRET_BYTES} bytes long`)
    }
    const algorithms = (requested ?? ['HS256']) as JwtAlgorithm[]
    const wrong = algorithms.find((a) => !SYMMETRIC.includes(a))
    if (wrong) throw new ConfigError('JWT_ALGORITHMS', `${wrong} needs JWT_PUBLIC_KEY, not JWT_SECRET`)
    return Object.freeze({
      secret: rawSecret,
      algorithms: Object.freeze(algorithms),
      ephemeral: false,
      ...extra,
    })
  }

  if (rawKey !== undefined) {
    // Environment files often carry PEM newlines as the two characters "\n".
    const pem = rawKey.includes('\\n') ? rawKey.replace(/\\n/g, '\n') : rawKey
    let keyType: string | undefined
    let curve: string | undefined
    try {
      const key = createPublicKey(pem)
      keyType = key.asymmetricKeyType
      curve = key.asymmetricKeyDetails?.namedCurve
    } catch {
      throw new ConfigError('JWT_PUBLIC_KEY', 'is not a PEM public key')
    }
    const EC: Record<string, JwtAlgorithm> = { prime256v1: 'ES256', secp384r1: 'ES384' }
    const fallback: JwtAlgorithm | undefined =
      keyType === 'rsa'
        ? 'RS256'
        : keyType === 'ec'
          ? EC[curve ?? '']
          : keyType === 'ed25519'
            ? 'EdDSA'
            : undefined
    if (keyType === 'ec' && fallback === undefined) {
      throw new ConfigError('JWT_PUBLIC_KEY', `unsupported EC curve ${curve} (P-256 or P-384)`)
    }
    if (fallback === undefined) throw new ConfigError('JWT_PUBLIC_KEY', `unsupported key type ${keyType}`)
    const algorithms = (requested ?? [fallback]) as JwtAlgorithm[]
    // Each algorithm must fit the key: RS* for RSA, the curve's ES* for EC, EdDSA for Ed25519.
    const family = fallback.slice(0, 2)
    const wrong = algorithms.find((a) => (keyType === 'ec' ? a !== fallback : !a.startsWith(family)))
    if (wrong) {
      throw new ConfigError(
        'JWT_ALGORITHMS',
        `${wrong} does not fit this ${keyType} public key (use ${fallback})`,
      )
    }
    return Object.freeze({
      publicKey: pem,
      algorithms: Object.freeze(algorithms),
      ephemeral: false,
      ...extra,
    })
  }

  if (production) {
    throw new ConfigError(
      'JWT_SECRET',
      'JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL is required when NODE_ENV=production',
    )
  }
  return Object.freeze({
    secret: randomBytes(48).toString('base64url'),
    algorithms: Object.freeze(['HS256'] as JwtAlgorithm[]),
    ephemeral: true,
    ...extra,
  })
}

/**
 * JWT_JWKS_URL: the key set documents themselves. Keys come only from these URLs, never from
 * where a token's `iss`, `jku` or `x5u` points.
 */
function loadJwks(
  env: Env,
  urls: string[],
  requested: string[] | undefined,
  extra: Partial<JwtConfig>,
): JwtConfig {
  if (urls.length === 0) throw new ConfigError('JWT_JWKS_URL', 'names no URL')
  const normalized = urls.map((raw) => {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      throw new ConfigError('JWT_JWKS_URL', `"${raw}" is not a URL`)
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new ConfigError('JWT_JWKS_URL', `"${raw}" must start with https:// (or http://)`)
    }
    if (url.username !== '' || url.password !== '' || url.hash !== '') {
      throw new ConfigError('JWT_JWKS_URL', `"${raw}" must carry no credentials and no #fragment`)
    }
    if (url.pathname.endsWith('/')) {
      throw new ConfigError(
        'JWT_JWKS_URL',
        `"${raw}" must name the key set itself, like https://idp.example.com/.well-known/jwks.json`,
      )
    }
    return url.href
  })
  const algorithms = (requested ?? JWKS_ALGORITHMS) as JwtAlgorithm[]
  const wrong = algorithms.find((a) => !JWKS_ALGORITHMS.includes(a))
  if (wrong) {
    throw new ConfigError('JWT_ALGORITHMS', `${wrong} needs JWT_SECRET; JWKS keys are RS*, PS*, ES* or EdDSA`)
  }
  return Object.freeze({
    ...extra,
    jwks: Object.freeze({
      urls: Object.freeze([...new Set(normalized)]),
      cacheMs: int(env, 'JWT_JWKS_CACHE_MS', 600_000, 100, 86_400_000),
      cooldownMs: int(env, 'JWT_JWKS_COOLDOWN_MS', 30_000, 100, 3_600_000),
    }),
    algorithms: Object.freeze(algorithms),
    ephemeral: false,
  })
}

/** A claim name, a dotted path into nested claims, or a URL-like name as providers use for custom claims. */
function claimName(env: Env, name: string, fallback: string): string {
  const raw = present(env, name)?.trim()
  if (raw === undefined) return fallback
  if (raw.length > 256 || /\s/.test(raw) || raw.startsWith('.') || raw.endsWith('.') || raw.includes('..')) {
    throw new ConfigError(
      name,
      `"${raw}" is not a claim name or path (like roles, realm_access.roles or https://example.com/roles)`,
    )
  }
  return raw
}

const SERVICE_SCOPES = ['sse:publish', 'sse:admin']

/** JWT_SCOPE_MAP: `role=scope` pairs; a role named twice grants both scopes. */
function scopeMap(env: Env): Readonly<Record<string, readonly string[]>> {
  const map: Record<string, string[]> = Object.create(null)
  for (const entry of list(env, 'JWT_SCOPE_MAP') ?? []) {
    const eq = entry.indexOf('=')
    const from = entry.slice(0, Math.max(eq, 0)).trim()
    const to = entry.slice(eq + 1).trim()
    if (eq <= 0 || from === '' || /\s/.test(from) || !SERVICE_SCOPES.includes(to)) {
      throw new ConfigError(
        'JWT_SCOPE_MAP',
        `"${entry}" is not role=scope with scope sse:publish or sse:admin (e.g. admin=sse:admin,backend=sse:publish)`,
      )
    }
    const granted = map[from] ?? []
    if (!granted.includes(to)) granted.push(to)
    map[from] = granted
  }
  for (const from in map) Object.freeze(map[from])
  return Object.freeze(map)
}

function claimsConfig(env: Env): ClaimsConfig {
  return Object.freeze({
    user: claimName(env, 'JWT_USER_CLAIM', 'sub'),
    scope: claimName(env, 'JWT_SCOPE_CLAIM', 'scope'),
    topics: claimName(env, 'JWT_TOPICS_CLAIM', 'topics'),
    scopeMap: scopeMap(env),
  })
}

/** A cookie name (an RFC 6265 token). */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/

function authCookie(env: Env): string | undefined {
  const raw = present(env, 'AUTH_COOKIE')?.trim()
  if (raw === undefined) return undefined
  if (!COOKIE_NAME.test(raw)) {
    throw new ConfigError(
      'AUTH_COOKIE',
      `"${raw}" is not a cookie name (1 to 64 letters, digits and !#$%&'*+-.^_\`|~)`,
    )
  }
  return raw
}
