import { createPublicKey, randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { ConfigError } from './errors.js'

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

const SYMMETRIC: readonly JwtAlgorithm[] = ['HS256', 'HS384', 'HS512']
const ASYMMETRIC: readonly JwtAlgorithm[] = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'EdDSA']
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
const MIN_SECRET_BYTES = 32

export interface JwtConfig {
  /** HMAC secret (HS*); exclusive with `publicKey`. */
  readonly secret?: string
  /** PEM public key (RS*, ES*, EdDSA); exclusive with `secret`. */
  readonly publicKey?: string
  readonly algorithms: readonly JwtAlgorithm[]
  readonly issuer?: string
  readonly audience?: string
  /** True when the secret was generated at start because none was configured (development only). */
  readonly ephemeral: boolean
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
  /** How often each instance reports its connections to Redis; a silent instance drops out after 2.5x this. */
  readonly statsReportIntervalMs: number
  /** `POST /api/dev/token` and the test page's "sign in as": development only, never in production. */
  readonly devLogin: boolean
  /** When set, `GET /metrics` requires `Authorization: Bearer <this>`; null leaves it open. */
  readonly metricsToken: string | null
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
  const issuer = present(env, 'JWT_ISSUER')?.trim()
  const audience = present(env, 'JWT_AUDIENCE')?.trim()
  const requested = list(env, 'JWT_ALGORITHMS')
  for (const alg of requested ?? []) {
    if (![...SYMMETRIC, ...ASYMMETRIC].includes(alg as JwtAlgorithm)) {
      throw new ConfigError('JWT_ALGORITHMS', `unsupported algorithm "${alg}" (none is never allowed)`)
    }
  }
  const hasSecret = rawSecret !== undefined && rawSecret !== ''
  if (hasSecret && rawKey !== undefined) {
    throw new ConfigError('JWT_SECRET', 'set either JWT_SECRET or JWT_PUBLIC_KEY, not both')
  }
  const extra = { ...(issuer ? { issuer } : {}), ...(audience ? { audience } : {}) }

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
    throw new ConfigError('JWT_SECRET', 'JWT_SECRET or JWT_PUBLIC_KEY is required when NODE_ENV=production')
  }
  return Object.freeze({
    secret: randomBytes(48).toString('base64url'),
    algorithms: Object.freeze(['HS256'] as JwtAlgorithm[]),
    ephemeral: true,
    ...extra,
  })
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
  if (enabled && jwt.publicKey !== undefined) {
    throw new ConfigError(
      'DEV_LOGIN',
      'needs JWT_SECRET to sign tokens; with JWT_PUBLIC_KEY it must stay off',
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

/** Reads and validates the environment once. A bad value throws a ConfigError naming the variable. */
export function loadConfig(env: Env = {}): Config {
  const production = isProduction(env)
  const logLevel = (present(env, 'LOG_LEVEL')?.trim() ?? 'info') as Config['logLevel']
  if (!LOG_LEVELS.includes(logLevel))
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`)
  const jwt = loadJwt(env, production)

  // Any origin by default only in the throwaway development setup; with a real key, no
  // cross-origin caller until CORS_ORIGINS names them; in production it must be set.
  const corsOrigins = list(env, 'CORS_ORIGINS') ?? (production ? undefined : jwt.ephemeral ? ['*'] : [])
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
    statsReportIntervalMs: int(env, 'STATS_REPORT_INTERVAL_MS', 2_000, 100, 60_000),
    devLogin: devLogin(env, production, jwt),
    metricsToken: metricsToken(env),
  })
}
