import { existsSync } from 'node:fs'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { type Config, loadConfig } from './config.js'
import { ConfigError } from './errors.js'

// The only file that reads the environment, listens and handles signals.
if (existsSync('.env')) process.loadEnvFile('.env')

let config: Config
try {
  config = loadConfig(process.env)
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`sse-manager: invalid configuration: ${err.message}\n`)
    process.exit(1)
  }
  throw err
}

const app = await buildApp(config, { prettyLogs: process.env.PRETTY_LOGS === 'true' })

closeWithGrace({ delay: config.shutdownTimeoutMs }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'shutting down after an error')
  else app.log.info({ signal }, 'shutting down')
  await app.close()
})

try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  app.log.fatal({ err }, 'could not listen')
  process.exit(1)
}

const address = app.server.address()
const port = typeof address === 'object' && address !== null ? address.port : config.port
// The scheme it serves: https (HTTP/2 and HTTP/1.1 by ALPN) with TLS_CERT and TLS_KEY.
const base = `${config.tls === null ? 'http' : 'https'}://localhost:${port}`
app.log.info(
  { url: base, protocols: config.tls === null ? ['http/1.1'] : ['h2', 'http/1.1'] },
  `serving ${base}`,
)

if (config.jwt.ephemeral) {
  const token = app.mintToken({
    sub: 'dev',
    scopes: ['sse:publish', 'sse:admin'],
    expiresInSeconds: 24 * 3600,
  })
  // A development certificate is usually self-signed: curl is told to trust it.
  const curl = config.tls === null ? 'curl' : `curl --cacert '${process.env.TLS_CERT?.trim()}'`
  app.log.warn(
    {
      devToken: token,
      try: `${curl} -N ${base}/api/sse  &  ${curl} -X POST ${base}/api/sse -H 'authorization: Bearer ${token}' -H 'content-type: application/json' -d '{"event":"hello","data":{"text":"hi"},"broadcast":true}'`,
    },
    'no JWT_SECRET or JWT_PUBLIC_KEY: using a secret generated for this run only (development). ' +
      'devToken is a 24 h token for user "dev" with sse:publish and sse:admin.',
  )
}
