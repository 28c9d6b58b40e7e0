// A local identity provider for the JWKS tests: a node:http server on 127.0.0.1 publishing a key
// set (keys made with node:crypto) that the tests rotate, break and stop, and that counts requests.
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createSigner } from 'fast-jwt'
import type { Config } from '../../src/config.js'
import { testConfig } from '../helper.js'

export type KeyAlg = 'RS256' | 'PS256' | 'ES256' | 'ES384' | 'EdDSA'

export interface ProviderKey {
  readonly kid: string
  readonly alg: KeyAlg
  readonly privatePem: string
  readonly publicPem: string
  /** What the provider publishes for it. */
  readonly jwk: Record<string, unknown>
}

export interface KeyOptions {
  kid?: string
  /** Publish `alg` in the JWK (default true; Azure AD, for one, does not). */
  withAlg?: boolean
  use?: string
}

export function makeKey(alg: KeyAlg, options: KeyOptions = {}): ProviderKey {
  const pair =
    alg === 'RS256' || alg === 'PS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('ec', { namedCurve: alg === 'ES256' ? 'P-256' : 'P-384' })
  const kid = options.kid ?? randomUUID()
  const jwk: Record<string, unknown> = {
    ...pair.publicKey.export({ format: 'jwk' }),
    kid,
    use: options.use ?? 'sig',
    ...(options.withAlg === false ? {} : { alg }),
  }
  return {
    kid,
    alg,
    privatePem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    jwk,
  }
}

export interface SignOptions {
  expiresInMs?: number
  /** Header fields added to (or replacing) `alg`, `typ` and `kid`. */
  header?: Record<string, unknown>
  /** Sign with this algorithm instead of the key's. */
  algorithm?: string
  kid?: string | null
}

/** A token signed by `key`, with its `kid` in the header. */
export function sign(key: ProviderKey, payload: Record<string, unknown>, options: SignOptions = {}): string {
  const algorithm = options.algorithm ?? key.alg
  const kid = options.kid === undefined ? key.kid : options.kid
  return createSigner({
    key: key.privatePem,
    algorithm: algorithm as 'RS256',
    // A payload's own exp (in the past, say) is kept as it is; expiresInMs 0 signs no exp at all.
    ...('exp' in payload || options.expiresInMs === 0 ? {} : { expiresIn: options.expiresInMs ?? 3_600_000 }),
    header: { alg: algorithm, typ: 'JWT', ...(kid === null ? {} : { kid }), ...options.header },
  })(payload)
}

export class JwksProvider {
  /** Every request the provider received, in order. */
  readonly requests: string[] = []
  /** When each request for the key set arrived (epoch ms). */
  readonly fetchTimes: number[] = []
  /** What it publishes; change it to rotate. */
  keys: Record<string, unknown>[]
  /** Answer every request with this status instead (500: a broken provider). */
  failWith: number | null = null
  readonly #server: Server
  readonly #path: string

  private constructor(server: Server, path: string, keys: Record<string, unknown>[]) {
    this.#server = server
    this.#path = path
    this.keys = keys
    server.on('request', (req: IncomingMessage, res) => {
      this.requests.push(req.url ?? '')
      if (req.url === this.#path) this.fetchTimes.push(Date.now())
      if (this.failWith !== null) {
        res.writeHead(this.failWith, { 'content-type': 'text/html' }).end('<h1>down</h1>')
      } else if (req.url !== this.#path) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}')
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }))
      }
    })
  }

  /** Starts on an ephemeral port, or on `port` (a provider coming back). */
  static async start(
    keys: ProviderKey[] = [],
    path = '/realms/test/protocol/openid-connect/certs',
    port = 0,
  ) {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    return new JwksProvider(
      server,
      path,
      keys.map((k) => k.jwk),
    )
  }

  get origin(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
  }

  get url(): string {
    return `${this.origin}${this.#path}`
  }

  /** Requests for the key set itself. */
  get fetches(): number {
    return this.requests.filter((r) => r === this.#path).length
  }

  publish(...keys: ProviderKey[]): void {
    this.keys = [...this.keys, ...keys.map((k) => k.jwk)]
  }

  remove(kid: string): void {
    this.keys = this.keys.filter((k) => k.kid !== kid)
  }

  /** Stops listening and drops every connection (a provider that is down). */
  async stop(): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

/** A test configuration that verifies with these JWKS URLs (and `env` on top). */
export function jwksConfig(urls: string | string[], env: Record<string, string> = {}): Config {
  return testConfig(
    {},
    {
      JWT_SECRET: '',
      DEV_LOGIN: 'false',
      JWT_JWKS_URL: [urls].flat().join(','),
      ...env,
    },
  )
}

export const inSeconds = (ms: number) => Math.floor((Date.now() + ms) / 1000)
