import { generateKeyPairSync } from 'node:crypto'
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config.js'
import { ConfigError } from '../src/errors.js'

const SECRET = 'a-configured-secret-that-is-long-enough-0123'

function pem(type: 'rsa' | 'ec' | 'ed25519' | 'x25519'): string {
  const { publicKey } =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : type === 'ed25519'
          ? generateKeyPairSync('ed25519')
          : generateKeyPairSync('x25519')
  return publicKey.export({ type: 'spki', format: 'pem' }).toString()
}

/** Asserts that loading `env` fails with a ConfigError naming `variable`. */
function refuses(t: Test, env: Record<string, string>, variable: string, message?: RegExp): void {
  try {
    loadConfig(env)
    t.fail(`${JSON.stringify(env).slice(0, 80)} should be refused (${variable})`)
  } catch (err) {
    t.ok(err instanceof ConfigError, 'a ConfigError')
    const e = err as ConfigError
    t.equal(e.variable, variable, `names ${variable}`)
    t.ok(e.message.startsWith(`${variable}:`), `message starts with the variable: ${e.message}`)
    if (message) t.match(e.message, message)
  }
}

t.test('defaults', async (t) => {
  const config = loadConfig({})
  t.match(config, {
    port: 3000,
    host: '0.0.0.0',
    logLevel: 'info',
    production: false,
    corsOrigins: ['*'],
    trustProxy: false,
    allowAnonymous: true,
    heartbeatIntervalMs: 15_000,
    clientRetryMs: 3_000,
    cleanupIntervalMs: 30_000,
    maxConnections: 50_000,
    maxConnectionsPerUser: 10,
    maxAnonymousPerIp: 100,
    maxPayloadBytes: 65_536,
    maxBufferedBytes: 1_048_576,
    flushMaxDelayMs: 30,
    shutdownTimeoutMs: 10_000,
  })
  t.equal(config.jwt.ephemeral, true, 'development without a key: a generated secret')
  t.same(config.jwt.algorithms, ['HS256'])
  t.ok(Buffer.byteLength(config.jwt.secret ?? '') >= 32, 'the generated secret is long enough')
  t.not(loadConfig({}).jwt.secret, config.jwt.secret, 'a new secret each start')
  t.equal(config.jwt.issuer, undefined)
  t.equal(config.jwt.audience, undefined)
  t.same(loadConfig(undefined).port, 3000, 'no argument at all works')
})

t.test('the config is frozen', async (t) => {
  const config = loadConfig({ JWT_SECRET: SECRET, CORS_ORIGINS: 'http://a.test' })
  t.ok(Object.isFrozen(config))
  t.ok(Object.isFrozen(config.jwt))
  t.ok(Object.isFrozen(config.corsOrigins))
  t.ok(Object.isFrozen(config.jwt.algorithms))
  t.throws(() => {
    ;(config as { port: number }).port = 1
  }, TypeError)
})

t.test('values are read and trimmed', async (t) => {
  const config = loadConfig({
    PORT: ' 8080 ',
    HOST: ' 127.0.0.1 ',
    LOG_LEVEL: 'debug',
    CORS_ORIGINS: 'https://a.example.com, http://b.test:8080 ,',
    TRUST_PROXY: ' 10.0.0.0/8, 127.0.0.1 ',
    JWT_SECRET: SECRET,
    JWT_ISSUER: ' https://issuer.test ',
    JWT_AUDIENCE: 'sse',
    ALLOW_ANONYMOUS: 'false',
    HEARTBEAT_INTERVAL_MS: '5000',
    CLIENT_RETRY_MS: '100',
    CLEANUP_INTERVAL_MS: '0',
    MAX_CONNECTIONS: '7',
    MAX_CONNECTIONS_PER_USER: '2',
    MAX_ANONYMOUS_PER_IP: '3',
    MAX_PAYLOAD_BYTES: '1024',
    MAX_BUFFERED_BYTES: '65536',
    SHUTDOWN_TIMEOUT_MS: '2500',
  })
  t.match(config, {
    port: 8080,
    host: '127.0.0.1',
    logLevel: 'debug',
    corsOrigins: ['https://a.example.com', 'http://b.test:8080'],
    trustProxy: ['10.0.0.0/8', '127.0.0.1'],
    allowAnonymous: false,
    heartbeatIntervalMs: 5000,
    clientRetryMs: 100,
    cleanupIntervalMs: 0,
    maxConnections: 7,
    maxConnectionsPerUser: 2,
    maxAnonymousPerIp: 3,
    maxPayloadBytes: 1024,
    maxBufferedBytes: 65536,
    shutdownTimeoutMs: 2500,
  })
  t.match(config.jwt, {
    secret: SECRET,
    algorithms: ['HS256'],
    issuer: 'https://issuer.test',
    audience: 'sse',
    ephemeral: false,
  })
})

t.test('blank values fall back to the default', async (t) => {
  const config = loadConfig({ PORT: '', LOG_LEVEL: '  ', ALLOW_ANONYMOUS: '', MAX_CONNECTIONS: ' ' })
  t.equal(config.port, 3000)
  t.equal(config.logLevel, 'info')
  t.equal(config.allowAnonymous, true)
  t.equal(config.maxConnections, 50_000)
})

t.test('booleans', async (t) => {
  for (const v of ['true', '1', 'yes', 'on', 'TRUE', ' On '])
    t.equal(loadConfig({ ALLOW_ANONYMOUS: v }).allowAnonymous, true, v)
  for (const v of ['false', '0', 'no', 'off', 'False'])
    t.equal(loadConfig({ ALLOW_ANONYMOUS: v }).allowAnonymous, false, v)
})

t.test('every bad number names its variable', async (t) => {
  const numeric = [
    'PORT',
    'HEARTBEAT_INTERVAL_MS',
    'CLIENT_RETRY_MS',
    'CLEANUP_INTERVAL_MS',
    'MAX_CONNECTIONS',
    'MAX_CONNECTIONS_PER_USER',
    'MAX_ANONYMOUS_PER_IP',
    'MAX_PAYLOAD_BYTES',
    'MAX_BUFFERED_BYTES',
    'SHUTDOWN_TIMEOUT_MS',
    'HISTORY_SIZE',
    'HISTORY_TTL_MS',
    'MAX_CONNECTION_LIFETIME_MS',
  ]
  for (const name of numeric) {
    for (const bad of ['abc', '-1', '1.5', '1e3', '0x10', '12abc', '١٢']) refuses(t, { [name]: bad }, name)
  }
  refuses(t, { PORT: '65536' }, 'PORT', /between 0 and 65535/)
  refuses(t, { MAX_CONNECTIONS: '0' }, 'MAX_CONNECTIONS')
  refuses(t, { MAX_CONNECTIONS_PER_USER: '0' }, 'MAX_CONNECTIONS_PER_USER')
  refuses(t, { MAX_ANONYMOUS_PER_IP: '0' }, 'MAX_ANONYMOUS_PER_IP')
  refuses(t, { MAX_PAYLOAD_BYTES: '10' }, 'MAX_PAYLOAD_BYTES')
  refuses(t, { MAX_BUFFERED_BYTES: '100' }, 'MAX_BUFFERED_BYTES')
  refuses(t, { PORT: '99999999999999999999' }, 'PORT')
})

t.test('every other bad value names its variable', async (t) => {
  refuses(t, { LOG_LEVEL: 'loud' }, 'LOG_LEVEL')
  refuses(t, { ALLOW_ANONYMOUS: 'maybe' }, 'ALLOW_ANONYMOUS')
  refuses(t, { TRUST_PROXY: 'true' }, 'TRUST_PROXY', /every hop/)
  refuses(t, { TRUST_PROXY: '10.0.0.300' }, 'TRUST_PROXY')
  refuses(t, { CORS_ORIGINS: 'app.example.com' }, 'CORS_ORIGINS')
  refuses(t, { CORS_ORIGINS: 'null' }, 'CORS_ORIGINS', /not an origin/)
  refuses(t, { CORS_ORIGINS: 'https://a.test/path' }, 'CORS_ORIGINS')
  refuses(t, { CORS_ORIGINS: 'ftp://a.test' }, 'CORS_ORIGINS')
  refuses(t, { CORS_ORIGINS: '*,https://a.test' }, 'CORS_ORIGINS', /cannot be combined/)
  refuses(t, { JWT_ALGORITHMS: 'none' }, 'JWT_ALGORITHMS', /none/)
  refuses(t, { JWT_SECRET: SECRET, JWT_ALGORITHMS: 'HS256,none' }, 'JWT_ALGORITHMS')
  refuses(t, { JWT_SECRET: SECRET, JWT_ALGORITHMS: 'hs256' }, 'JWT_ALGORITHMS')
  refuses(t, { JWT_SECRET: SECRET, JWT_ALGORITHMS: 'RS256' }, 'JWT_ALGORITHMS', /JWT_PUBLIC_KEY/)
  refuses(t, { JWT_PUBLIC_KEY: 'not a key' }, 'JWT_PUBLIC_KEY', /PEM/)
})

t.test('JWT secret rules', async (t) => {
  refuses(t, { JWT_SECRET: 'short' }, 'JWT_SECRET', /at least 32 bytes/)
  refuses(t, { JWT_SECRET: 'x'.repeat(31) }, 'JWT_SECRET', /at least 32 bytes/)
  t.equal(loadConfig({ JWT_SECRET: 'x'.repeat(32) }).jwt.secret, 'x'.repeat(32), '32 bytes is enough')
  t.equal(
    loadConfig({ JWT_SECRET: '€'.repeat(11) }).jwt.secret,
    '€'.repeat(11),
    'counted in bytes, not characters',
  )
  refuses(t, { JWT_SECRET: ` ${SECRET}` }, 'JWT_SECRET', /white space/)
  refuses(t, { JWT_SECRET: `${SECRET}\n` }, 'JWT_SECRET', /white space/)
  refuses(t, { JWT_SECRET: `${SECRET} ` }, 'JWT_SECRET', /white space/)
  refuses(t, { JWT_SECRET: '    ' }, 'JWT_SECRET')
  refuses(t, { JWT_SECRET: SECRET, JWT_PUBLIC_KEY: pem('ed25519') }, 'JWT_SECRET', /not both/)
  t.same(loadConfig({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'HS512, HS256' }).jwt.algorithms, [
    'HS512',
    'HS256',
  ])
  t.equal(loadConfig({ JWT_SECRET: '' }).jwt.ephemeral, true, 'an empty secret is no secret')
})

t.test('the algorithm is inferred from the public key', async (t) => {
  const rsa = loadConfig({ JWT_PUBLIC_KEY: pem('rsa') }).jwt
  t.same(rsa.algorithms, ['RS256'])
  t.equal(rsa.secret, undefined)
  t.match(rsa.publicKey, /BEGIN PUBLIC KEY/)
  t.equal(rsa.ephemeral, false)
  t.same(loadConfig({ JWT_PUBLIC_KEY: pem('ec') }).jwt.algorithms, ['ES256'])
  t.same(loadConfig({ JWT_PUBLIC_KEY: pem('ed25519') }).jwt.algorithms, ['EdDSA'])
  const curve = (namedCurve: string) =>
    generateKeyPairSync('ec', { namedCurve }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  t.same(loadConfig({ JWT_PUBLIC_KEY: curve('P-384') }).jwt.algorithms, ['ES384'], 'a P-384 key means ES384')
  refuses(t, { JWT_PUBLIC_KEY: curve('secp256k1') }, 'JWT_PUBLIC_KEY', /unsupported EC curve/)
  refuses(t, { JWT_PUBLIC_KEY: curve('P-384'), JWT_ALGORITHMS: 'ES256' }, 'JWT_ALGORITHMS', /does not fit/)
  refuses(t, { JWT_PUBLIC_KEY: pem('x25519') }, 'JWT_PUBLIC_KEY', /unsupported key type/)
  refuses(t, { JWT_PUBLIC_KEY: pem('rsa'), JWT_ALGORITHMS: 'HS256' }, 'JWT_ALGORITHMS', /does not fit/)
  refuses(t, { JWT_PUBLIC_KEY: pem('rsa'), JWT_ALGORITHMS: 'ES256' }, 'JWT_ALGORITHMS', /does not fit/)
  t.same(
    loadConfig({ JWT_PUBLIC_KEY: pem('rsa'), JWT_ALGORITHMS: 'RS512' }).jwt.algorithms,
    ['RS512'],
    'an explicit asymmetric algorithm is kept',
  )
  const escaped = pem('ed25519').replace(/\n/g, '\\n')
  const fromEnvFile = loadConfig({ JWT_PUBLIC_KEY: escaped }).jwt
  t.same(fromEnvFile.algorithms, ['EdDSA'], 'PEM with literal \\n (as in .env files) works')
  t.notMatch(fromEnvFile.publicKey, /\\n/)
})

t.test('production needs a key and CORS origins', async (t) => {
  refuses(t, { NODE_ENV: 'production', CORS_ORIGINS: 'https://app.test' }, 'JWT_SECRET', /required/)
  refuses(t, { NODE_ENV: 'production', JWT_SECRET: SECRET }, 'CORS_ORIGINS', /required/)
  refuses(t, { NODE_ENV: 'production', JWT_SECRET: SECRET, CORS_ORIGINS: ' , ' }, 'CORS_ORIGINS')
  const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET, CORS_ORIGINS: 'https://app.test' })
  t.equal(config.production, true)
  t.same(config.corsOrigins, ['https://app.test'])
  t.equal(config.jwt.ephemeral, false)
  t.equal(
    loadConfig({ NODE_ENV: 'production', JWT_PUBLIC_KEY: pem('ec'), CORS_ORIGINS: '*' }).jwt.algorithms[0],
    'ES256',
    'a public key is enough in production',
  )
  t.equal(loadConfig({ NODE_ENV: 'development' }).production, false)
})
