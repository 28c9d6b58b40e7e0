// `npm run token -- --sub alice --scope "sse:publish sse:admin" --expires 1h`
// Mints a JWT that this service accepts, with the secret (or private key) from the environment or .env.
import { existsSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createSigner } from 'fast-jwt'
import { loadConfig } from '../src/config.js'

const USAGE = `usage: npm run token -- --sub <user> [--scope "sse:publish sse:admin"] [--expires 1h]
                         [--secret <secret> | --key <private key PEM file>]
The secret comes from JWT_SECRET (environment or .env) unless --secret is given; with JWT_PUBLIC_KEY,
pass the matching private key with --key or JWT_PRIVATE_KEY.`

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${USAGE}\n`)
  process.exit(2)
}

const { values } = parseArgs({
  options: {
    sub: { type: 'string' },
    scope: { type: 'string', default: '' },
    expires: { type: 'string', default: '1h' },
    secret: { type: 'string' },
    key: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}
if (!values.sub) fail('--sub is required')

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 }
const match = /^(\d+)([smhd]?)$/.exec(values.expires)
if (!match) fail(`--expires must look like 90s, 15m, 1h or 7d, got "${values.expires}"`)
const seconds = Number(match[1]) * (UNITS[match[2] || 's'] ?? 1)

if (existsSync('.env')) process.loadEnvFile('.env')
const env: Record<string, string | undefined> = {
  ...process.env,
  ...(values.secret ? { JWT_SECRET: values.secret, JWT_PUBLIC_KEY: '' } : {}),
}
let config: ReturnType<typeof loadConfig>
try {
  // Only the JWT settings matter here: the cookie and CORS settings of the server do not.
  config = loadConfig({ ...env, NODE_ENV: 'production', CORS_ORIGINS: '*', AUTH_COOKIE: '' })
} catch (err) {
  fail((err as Error).message)
}

let key: string
if (config.jwt.jwks !== undefined) {
  fail('JWT_JWKS_URL is set: tokens come from the identity provider, not from this script')
}
if (config.jwt.secret !== undefined) {
  key = config.jwt.secret
} else {
  const pem = values.key
    ? readFileSync(values.key, 'utf8')
    : process.env.JWT_PRIVATE_KEY?.replace(/\\n/g, '\n')
  if (!pem) fail('JWT_PUBLIC_KEY is set: pass the private key with --key <file> or JWT_PRIVATE_KEY')
  key = pem
}

const scopes = values.scope.split(/[\s,]+/).filter((s) => s !== '')
const sign = createSigner({
  key,
  algorithm: config.jwt.algorithms[0],
  expiresIn: seconds * 1000,
  ...(config.jwt.issuer ? { iss: [config.jwt.issuer].flat()[0] } : {}),
  ...(config.jwt.audience
    ? { aud: typeof config.jwt.audience === 'string' ? config.jwt.audience : [...config.jwt.audience] }
    : {}),
})
process.stdout.write(
  `${sign({ sub: values.sub, ...(scopes.length > 0 ? { scope: scopes.join(' ') } : {}) })}\n`,
)
