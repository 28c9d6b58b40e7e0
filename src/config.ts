import { type JwtConfig, loadJwt } from './config/auth.js'
import { bool, type Env, int, list, present } from './config/env.js'
import { redisPrefix, redisSentinels, redisUrl, type TrustProxy, trustProxy } from './config/network.js'
import { ConfigError } from './errors.js'
import { isValidPattern } from './sse/topics.js'
import { loadTls, type TlsConfig } from './tls.js'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

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
  /** Under load, the longest a fan-out flush waits after the previous one (ms); 0 writes every turn. */
  readonly flushMaxDelayMs: number
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

/** `NODE_ENV=production` in any letter case: a deployment must not fall into development by a typo. */
export function isProduction(env: Env): boolean {
  return (env.NODE_ENV ?? '').trim().toLowerCase() === 'production'
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
    flushMaxDelayMs: int(env, 'FLUSH_MAX_DELAY_MS', 30, 0, 1000),
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
