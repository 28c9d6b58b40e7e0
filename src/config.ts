import { createPublicKey, randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { ConfigError } from './errors.js'
import { isValidPattern } from './sse/topics.js'
import { loadTls, type TlsConfig } from './tls.js'

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
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
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

export interface Config {
  readonly port: number
  readonly host: string
  readonly logLevel: (typeof LOG_LEVELS)[number]
  readonly production: boolean
  /**
   * Allowed browser origins; `['*']` allows any origin without credentials; empty allows no
   * cross-origin caller (the default once a key is configured and CORS_ORIGINS is unset).
   */
  readonly corsOrigins: readonly string[]
  /** Whom to believe about `X-Forwarded-For`: nobody, the nearest N hops, or these proxies. */
  readonly trustProxy: TrustProxy
  /** How long a request may take to arrive whole (headers and body); 0 for no limit. Streams are not cut. */
  readonly requestTimeoutMs: number
  /** The most bytes of missed events one connection is replayed; past it nothing is (`recovered: false`). */
  readonly replayMaxBytes: number
  readonly jwt: JwtConfig
  readonly allowAnonymous: boolean
  readonly heartbeatIntervalMs: number
  readonly clientRetryMs: number
  readonly cleanupIntervalMs: number
  readonly maxConnections: number
  readonly maxConnectionsPerUser: number
  readonly maxAnonymousPerIp: number
  readonly maxPayloadBytes: number
  readonly maxBufferedBytes: number
  readonly shutdownTimeoutMs: number
  readonly historySize: number
  readonly historyTtlMs: number
  readonly maxConnectionLifetimeMs: number
  /** How deeply published `data` may nest (arrays and objects). */
  readonly maxDataDepth: number
  /** Rate-limit window; each limit below counts requests per client IP within it. */
  readonly rateLimitWindowMs: number
  /** POST /api/sse requests per IP per window (0 = off). */
  readonly rateLimitPublish: number
  /** GET /api/sse connection attempts per IP per window (0 = off). */
  readonly rateLimitConnect: number
  /** Redis shared by every instance (`redis://` or `rediss://`); null keeps everything in this process. */
  readonly redisUrl: string | null
  /** Prefix of every Redis key and channel, so that several deployments can share one Redis. */
  readonly redisPrefix: string
  /** How long startup waits for Redis before it starts anyway, not ready, and keeps retrying. */
  readonly redisConnectTimeoutMs: number
  /** REDIS_SENTINELS: the sentinels that name the primary (the service follows it); null without Sentinel. */
  readonly redisSentinels: readonly { readonly host: string; readonly port: number }[] | null
  /** REDIS_SENTINEL_NAME: the name the sentinels monitor the primary under. */
  readonly redisSentinelName: string
  /** REDIS_WAIT_REPLICAS: a publish answers 202 only once this many replicas hold it (0 = do not wait). */
  readonly redisWaitReplicas: number
  /** REDIS_WAIT_TIMEOUT_MS: how long a publish waits for those replicas before it answers 503. */
  readonly redisWaitTimeoutMs: number
  /**
   * REDIS_LAG_WAIT_MS: a publish that would put this instance's reader more than half the Redis
   * stream behind waits for it at most this long, then is 503 (0 = never wait).
   */
  readonly redisLagWaitMs: number
  /** REDIS_MAX_PENDING_BYTES: bytes of publishes waiting for Redis; past it a publish is 503 at once. */
  readonly redisMaxPendingBytes: number
  /** IDEMPOTENCY_TTL_MS: how long an Idempotency-Key is remembered. */
  readonly idempotencyTtlMs: number
  /** How often each instance reports its connections to Redis; a silent instance drops out after 2.5x this. */
  readonly statsReportIntervalMs: number
  /** `POST /api/dev/token` and the test page's "sign in as": development only, never in production. */
  readonly devLogin: boolean
  /** When set, `GET /metrics` requires `Authorization: Bearer <this>`; null leaves it open. */
  readonly metricsToken: string | null
  /** The most bytes the replay history holds (HISTORY_MAX_BYTES); the oldest events go first past it. */
  readonly historyMaxBytes: number
  /** How many verified tokens are remembered (JWT_VERIFY_CACHE_SIZE; 0 verifies every request). */
  readonly jwtVerifyCacheSize: number
  /** The largest POST /api/sse/batch body (MAX_BATCH_BYTES). */
  readonly maxBatchBytes: number
  /** How many topics one connection may be subscribed to (MAX_TOPICS_PER_CONNECTION). */
  readonly maxTopicsPerConnection: number
  /** Topic patterns anyone, anonymous included, may subscribe to (PUBLIC_TOPICS). */
  readonly publicTopics: readonly string[]
  /** Topic patterns on which the service publishes `presence` join/leave events (PRESENCE_TOPICS). */
  readonly presenceTopics: readonly string[]
  /** The certificate and key to serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN); null serves plain HTTP/1.1. */
  readonly tls: TlsConfig | null
}

/** `false`, a hop count, or the addresses/CIDRs of the proxies in front (Fastify's `trustProxy`). */
export type TrustProxy = false | number | readonly string[]

type Env = Record<string, string | undefined>

/** `NODE_ENV=production` in any letter case: a deployment must not fall into development by a typo. */
export function isProduction(env: Env): boolean {
  return (env.NODE_ENV ?? '').trim().toLowerCase() === 'production'
}

/** Whether a variable is set to something other than blank. */
function present(env: Env, name: string): string | undefined {
  const value = env[name]
  return value === undefined || value.trim() === '' ? undefined : value
}

function int(env: Env, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = present(env, name)
  if (raw === undefined) return fallback
  if (!/^\s*\d+\s*$/.test(raw)) throw new ConfigError(name, `expected a whole number, got "${raw}"`)
  const value = Number(raw)
  if (value < min || value > max)
    throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`)
  return value
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = present(env, name)?.trim().toLowerCase()
  if (raw === undefined) return fallback
  if (['true', '1', 'yes', 'on'].includes(raw)) return true
  if (['false', '0', 'no', 'off'].includes(raw)) return false
  throw new ConfigError(name, `expected true or false, got "${raw}"`)
}

function list(env: Env, name: string): string[] | undefined {
  const raw = present(env, name)
  if (raw === undefined) return undefined
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

function loadJwt(env: Env, production: boolean): JwtConfig {
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

/** One value, or any of a comma-separated list (JWT_ISSUER, JWT_AUDIENCE). */
function oneOrMany(env: Env, name: string): string | readonly string[] | undefined {
  const values = list(env, name)
  if (values === undefined || values.length === 0) return undefined
  return values.length === 1 ? values[0] : Object.freeze(values)
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

function redisUrl(env: Env): string | null {
  const raw = present(env, 'REDIS_URL')?.trim()
  if (raw === undefined) return null
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError('REDIS_URL', 'is not a URL like redis://127.0.0.1:6379')
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError('REDIS_URL', `must start with redis:// or rediss://, got ${url.protocol}//`)
  }
  return raw
}

function redisPrefix(env: Env): string {
  const raw = env.REDIS_PREFIX
  if (raw === undefined || raw === '') return 'sse:'
  if (raw.length > 64 || /[\s*?[\]]/.test(raw)) {
    throw new ConfigError('REDIS_PREFIX', 'must be at most 64 characters without spaces or * ? [ ]')
  }
  return raw
}

/** REDIS_SENTINELS: `host:port,...`; with them REDIS_URL, when set, gives only credentials, database and TLS. */
function redisSentinels(env: Env): Config['redisSentinels'] {
  const entries = list(env, 'REDIS_SENTINELS')
  if (entries === undefined) return null
  if (entries.length === 0) throw new ConfigError('REDIS_SENTINELS', 'names no sentinel (host:port,...)')
  return Object.freeze(
    entries.map((entry) => {
      const match = /^(\[[0-9a-fA-F:]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(entry)
      const port = Number(match?.[2])
      if (match === null || port < 1 || port > 65535) {
        throw new ConfigError('REDIS_SENTINELS', `"${entry}" is not host:port (e.g. 10.0.0.5:26379)`)
      }
      return Object.freeze({ host: (match[1] as string).replace(/^\[|\]$/g, ''), port })
    }),
  )
}

/**
 * The dev login signs tokens for anyone who asks. On by default only when the service made
 * its own throwaway secret; with a configured secret it must be asked for (DEV_LOGIN=true);
 * never in production, and never with a public key (nothing to sign with).
 */
function devLogin(env: Env, production: boolean, jwt: JwtConfig): boolean {
  const enabled = bool(env, 'DEV_LOGIN', !production && jwt.ephemeral)
  if (enabled && production) {
    throw new ConfigError(
      'DEV_LOGIN',
      'mints tokens for anyone and cannot be enabled when NODE_ENV=production',
    )
  }
  if (enabled && (jwt.publicKey !== undefined || jwt.jwks !== undefined)) {
    throw new ConfigError(
      'DEV_LOGIN',
      `needs JWT_SECRET to sign tokens; with ${jwt.jwks ? 'JWT_JWKS_URL' : 'JWT_PUBLIC_KEY'} it must stay off`,
    )
  }
  return enabled
}

const NAMED_PROXY_RANGES = ['loopback', 'linklocal', 'uniquelocal']

/** TRUST_PROXY: `true` would let any client choose its own address through X-Forwarded-For. */
function trustProxy(env: Env): TrustProxy {
  const raw = present(env, 'TRUST_PROXY')?.trim()
  if (raw === undefined) return false
  const lower = raw.toLowerCase()
  if (['false', 'no', 'off', '0'].includes(lower)) return false
  if (['true', 'yes', 'on'].includes(lower)) {
    throw new ConfigError(
      'TRUST_PROXY',
      'true would trust every hop, so any client could pick the address that per-IP limits and logs see ' +
        'by sending X-Forwarded-For; give the number of proxies in front (1) or their addresses/CIDRs ' +
        '(10.0.0.0/8,127.0.0.1)',
    )
  }
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw)
    if (hops > 32) throw new ConfigError('TRUST_PROXY', `a hop count must be 1 to 32, got ${hops}`)
    return hops
  }
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  for (const entry of entries) {
    if (NAMED_PROXY_RANGES.includes(entry)) continue
    const slash = entry.indexOf('/')
    const address = slash === -1 ? entry : entry.slice(0, slash)
    const family = isIP(address)
    const bits = slash === -1 ? undefined : entry.slice(slash + 1)
    const maxBits = family === 6 ? 128 : 32
    const badBits = bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > maxBits)
    if (family === 0 || badBits) {
      throw new ConfigError(
        'TRUST_PROXY',
        `"${entry}" is not an address or CIDR (use false, a hop count, or e.g. 10.0.0.0/8,::1)`,
      )
    }
  }
  return Object.freeze(entries)
}

function metricsToken(env: Env): string | null {
  const raw = present(env, 'METRICS_TOKEN')
  if (raw === undefined) return null
  if (raw !== raw.trim())
    throw new ConfigError('METRICS_TOKEN', 'has leading or trailing white space; remove it')
  if (raw.length < 16) throw new ConfigError('METRICS_TOKEN', 'must be at least 16 characters long')
  return raw
}

/** A comma-separated list of topic patterns (`orders/*`, `public/**`, `users/{sub}/**`). */
function topicPatterns(env: Env, name: string): readonly string[] {
  const patterns = list(env, name) ?? []
  for (const pattern of patterns) {
    if (!isValidPattern(pattern)) {
      throw new ConfigError(
        name,
        `"${pattern}" is not a topic pattern (segments of letters, digits and _ - . : @, or * or a final **)`,
      )
    }
  }
  return Object.freeze(patterns)
}

/** Reads and validates the environment once. A bad value throws a ConfigError naming the variable. */
export function loadConfig(env: Env = {}): Config {
  const production = isProduction(env)
  const logLevel = (present(env, 'LOG_LEVEL')?.trim() ?? 'info') as Config['logLevel']
  if (!LOG_LEVELS.includes(logLevel))
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`)
  const jwt = loadJwt(env, production)

  // Any origin by default only in the throwaway development setup; with a real key, no
  // cross-origin caller until CORS_ORIGINS names them; in production it must be set.
  // A cookie is a credential, and "*" cannot carry credentials: with AUTH_COOKIE the default is none.
  const anyByDefault = jwt.ephemeral && jwt.cookie === undefined
  const corsOrigins = list(env, 'CORS_ORIGINS') ?? (production ? undefined : anyByDefault ? ['*'] : [])
  if (corsOrigins === undefined || (production && corsOrigins.length === 0)) {
    throw new ConfigError(
      'CORS_ORIGINS',
      'is required when NODE_ENV=production (a comma-separated list of origins)',
    )
  }
  for (const origin of corsOrigins) {
    if (origin === '*') continue
    if (origin === 'null' || !/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError('CORS_ORIGINS', `"${origin}" is not an origin like https://app.example.com`)
    }
  }
  if (corsOrigins.includes('*') && corsOrigins.length > 1) {
    throw new ConfigError('CORS_ORIGINS', '"*" cannot be combined with other origins')
  }
  if (jwt.cookie !== undefined && corsOrigins.includes('*')) {
    throw new ConfigError(
      'AUTH_COOKIE',
      'cannot be used with CORS_ORIGINS=*: browsers send cookies only to listed origins (credentials); ' +
        'list the origins of your pages in CORS_ORIGINS',
    )
  }

  return Object.freeze({
    port: int(env, 'PORT', 3000, 0, 65535),
    host: present(env, 'HOST')?.trim() ?? '0.0.0.0',
    logLevel,
    production,
    corsOrigins: Object.freeze(corsOrigins),
    trustProxy: trustProxy(env),
    requestTimeoutMs: int(env, 'REQUEST_TIMEOUT_MS', 30_000, 0, 3_600_000),
    replayMaxBytes: int(env, 'REPLAY_MAX_BYTES', 4 * 1024 * 1024, 0),
    jwt,
    allowAnonymous: bool(env, 'ALLOW_ANONYMOUS', true),
    heartbeatIntervalMs: int(env, 'HEARTBEAT_INTERVAL_MS', 15_000, 0),
    clientRetryMs: int(env, 'CLIENT_RETRY_MS', 3_000, 0),
    cleanupIntervalMs: int(env, 'CLEANUP_INTERVAL_MS', 30_000, 0),
    maxConnections: int(env, 'MAX_CONNECTIONS', 50_000, 1),
    maxConnectionsPerUser: int(env, 'MAX_CONNECTIONS_PER_USER', 10, 1),
    maxAnonymousPerIp: int(env, 'MAX_ANONYMOUS_PER_IP', 100, 1),
    maxPayloadBytes: int(env, 'MAX_PAYLOAD_BYTES', 65_536, 64),
    maxBufferedBytes: int(env, 'MAX_BUFFERED_BYTES', 1_048_576, 1024),
    shutdownTimeoutMs: int(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 0),
    historySize: int(env, 'HISTORY_SIZE', 10_000, 0),
    historyTtlMs: int(env, 'HISTORY_TTL_MS', 300_000, 0),
    maxConnectionLifetimeMs: int(env, 'MAX_CONNECTION_LIFETIME_MS', 0, 0),
    maxDataDepth: int(env, 'MAX_DATA_DEPTH', 32, 1, 1000),
    rateLimitWindowMs: int(env, 'RATE_LIMIT_WINDOW_MS', 60_000, 1000),
    rateLimitPublish: int(env, 'RATE_LIMIT_PUBLISH', 60_000, 0),
    rateLimitConnect: int(env, 'RATE_LIMIT_CONNECT', 60_000, 0),
    redisUrl: redisUrl(env),
    redisPrefix: redisPrefix(env),
    redisConnectTimeoutMs: int(env, 'REDIS_CONNECT_TIMEOUT_MS', 5_000, 0, 600_000),
    redisSentinels: redisSentinels(env),
    redisSentinelName: present(env, 'REDIS_SENTINEL_NAME')?.trim() ?? 'mymaster',
    redisWaitReplicas: int(env, 'REDIS_WAIT_REPLICAS', 0, 0, 16),
    redisWaitTimeoutMs: int(env, 'REDIS_WAIT_TIMEOUT_MS', 1_000, 1, 60_000),
    redisMaxPendingBytes: int(env, 'REDIS_MAX_PENDING_BYTES', 16 * 1_048_576, 65_536),
    redisLagWaitMs: int(env, 'REDIS_LAG_WAIT_MS', 5_000, 0, 60_000),
    idempotencyTtlMs: int(env, 'IDEMPOTENCY_TTL_MS', 300_000, 1_000, 86_400_000),
    statsReportIntervalMs: int(env, 'STATS_REPORT_INTERVAL_MS', 2_000, 100, 60_000),
    devLogin: devLogin(env, production, jwt),
    metricsToken: metricsToken(env),
    maxTopicsPerConnection: int(env, 'MAX_TOPICS_PER_CONNECTION', 100, 1, 10_000),
    maxBatchBytes: int(env, 'MAX_BATCH_BYTES', 1_048_576, 1024, 64 * 1_048_576),
    jwtVerifyCacheSize: int(env, 'JWT_VERIFY_CACHE_SIZE', 1000, 0, 1_000_000),
    historyMaxBytes: int(env, 'HISTORY_MAX_BYTES', 64 * 1_048_576, 0),
    publicTopics: topicPatterns(env, 'PUBLIC_TOPICS'),
    presenceTopics: topicPatterns(env, 'PRESENCE_TOPICS'),
    tls: loadTls(present(env, 'TLS_CERT'), present(env, 'TLS_KEY')),
  })
}
