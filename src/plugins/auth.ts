import fastifyCookie from '@fastify/cookie'
import fastifyJwt from '@fastify/jwt'
import { createDecoder, createVerifier } from 'fast-jwt'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { JwtAlgorithm, JwtConfig } from '../config/auth.js'
import { errors } from '../errors.js'
import { DEFAULT_CLAIMS, identityOf, type Payload } from './claims.js'
import { JwksKeySet, type VerificationKey } from './jwks.js'
import { VerifiedTokens } from './verified-tokens.js'

/** Scopes the service understands. */
export const SCOPES = {
  publish: 'sse:publish',
  admin: 'sse:admin',
} as const

export type Scope = (typeof SCOPES)[keyof typeof SCOPES]

/** What a verified token says about its bearer. */
export interface AuthInfo {
  readonly userId: string
  readonly scopes: readonly string[]
  /** Topic patterns the token allows subscribing to (its topics claim); malformed ones are dropped. */
  readonly topics: readonly string[]
  /** Epoch ms of the token's `exp`. */
  readonly expiresAt: number
}

export interface MintOptions {
  sub: string
  scopes?: readonly string[]
  /** Lifetime in seconds. */
  expiresInSeconds: number
}

/** Where, besides `Authorization: Bearer`, a route may take its token from. */
export interface AuthenticateOptions {
  /** `?token=`: the stream only, for an EventSource that cannot send headers. */
  allowQueryToken?: boolean
  /**
   * The AUTH_COOKIE cookie: the stream only. A browser sends cookies with requests other sites
   * make, so routes that change anything (publish, disconnect-all) never take one.
   */
  allowCookie?: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Verifies the request's token when it has one; null when it has none. Rejects with 401 on a
     * bad token (also when its key cannot be fetched: never a 500).
     */
    authenticate(request: FastifyRequest, options?: AuthenticateOptions): Promise<AuthInfo | null>
    /**
     * A hook that demands a token carrying `scope`, from the Authorization header only. Routes use
     * it in `preParsing`: after the per-IP rate limit (onRequest), so that refused tokens count,
     * and before any body is read.
     */
    requireScope(scope: Scope): (request: FastifyRequest) => Promise<void>
    /** Signs a token with the configured secret (HMAC configurations only). */
    mintToken(options: MintOptions): string
    /** The AUTH_COOKIE name, or null when streams take no cookie. */
    authCookie: string | null
    /** Sets the AUTH_COOKIE cookie to `token` on `reply` (HttpOnly, SameSite=Strict, Path=/api/sse). */
    setAuthCookie(reply: FastifyReply, token: string, maxAgeSeconds: number): void
  }
  interface FastifyRequest {
    auth: AuthInfo | null
  }
}

const BEARER = /^Bearer ([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*)$/i
/** Headers with which a token would name its own key: never followed, so never accepted. */
const KEY_SOURCE_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'] as const

type Decoded = { header: Payload; payload: Payload }

/** Words for the verifier's error codes; never echoes the token. */
function reasonOf(err: unknown, userClaim: string): string {
  const code = (err as { code?: string }).code ?? ''
  if (code === 'FAST_JWT_EXPIRED') return 'it has expired'
  if (code === 'FAST_JWT_INACTIVE') return 'it is not valid yet'
  if (code === 'FAST_JWT_INVALID_ALGORITHM') return 'its algorithm is not allowed'
  if (code === 'FAST_JWT_INVALID_SIGNATURE') return 'its signature does not verify'
  if (code === 'FAST_JWT_MISSING_REQUIRED_CLAIM')
    return `it lacks a required claim (exp and ${userClaim} are required)`
  if (code === 'FAST_JWT_INVALID_CLAIM_VALUE') return 'its issuer or audience is not accepted'
  if (code === 'FAST_JWT_INVALID_CRIT_HEADER')
    return 'it has a critical header this service does not understand'
  if (code === 'FAST_JWT_MISSING_SIGNATURE') return 'it is not signed'
  if (code === 'FAST_JWT_INVALID_KEY') return 'its algorithm does not fit its key'
  return 'it is malformed'
}

function checkHeader(header: Payload): void {
  for (const name of KEY_SOURCE_HEADERS) {
    if (Object.hasOwn(header, name)) {
      throw new errors.SSE_ERR_INVALID_TOKEN(
        `its header names a key of its own (${name}); keys come only from this service's configuration`,
      )
    }
  }
}

const listOf = (value: string | readonly string[] | undefined): string[] =>
  value === undefined ? [] : typeof value === 'string' ? [value] : [...value]

/** How long a verified token is trusted without verifying it again (never past its exp). */
const VERIFY_CACHE_TTL_MS = 60_000

/**
 * JWT authentication. Algorithms are pinned (with JWKS, each key allows only its own), `exp` and
 * the user claim are required, and `iss`/`aud` are checked when configured. The user id only
 * ever comes from a verified token.
 */
export const authPlugin = fp<{ jwt: JwtConfig; verifyCacheSize?: number }>(
  async (app, { jwt, verifyCacheSize = 0 }) => {
    const claims = jwt.claims ?? DEFAULT_CLAIMS
    const issuers = listOf(jwt.issuer)
    const audiences = listOf(jwt.audience)
    const verifyOptions = {
      complete: true,
      // The verifier checks iss/aud only when present: configured ones must also be required.
      requiredClaims: [
        'exp',
        ...(claims.user === 'sub' ? ['sub'] : []),
        ...(issuers.length > 0 ? ['iss'] : []),
        ...(audiences.length > 0 ? ['aud'] : []),
      ],
      ...(issuers.length > 0 ? { allowedIss: issuers } : {}),
      ...(audiences.length > 0 ? { allowedAud: audiences } : {}),
    }

    let verify: (token: string) => Decoded | Promise<Decoded>
    if (jwt.jwks !== undefined) {
      const keys = new JwksKeySet(jwt.jwks, jwt.algorithms, app.log)
      app.addHook('onClose', () => keys.close())
      const decode = createDecoder({ complete: true })
      const verifiers = new WeakMap<VerificationKey, (token: string) => Decoded>()
      verify = async (token) => {
        // The header is read before anything is fetched: refused tokens cost no request.
        const { header } = decode(token) as Decoded
        checkHeader(header)
        const alg = header.alg as JwtAlgorithm
        if (typeof alg !== 'string' || !jwt.algorithms.includes(alg)) {
          throw new errors.SSE_ERR_INVALID_TOKEN('its algorithm is not allowed')
        }
        const key = await keys.keyFor(header.kid, alg)
        let verifier = verifiers.get(key)
        if (verifier === undefined) {
          verifier = createVerifier({ ...verifyOptions, key: key.pem, algorithms: [...key.algorithms] })
          verifiers.set(key, verifier)
        }
        return verifier(token)
      }
    } else {
      const verifier = createVerifier({
        ...verifyOptions,
        key: jwt.secret ?? (jwt.publicKey as string),
        algorithms: [...jwt.algorithms],
      })
      verify = (token) => {
        const decoded = verifier(token) as Decoded
        checkHeader(decoded.header)
        return decoded
      }
      // Signing (mintToken, the dev login) and decoding.
      await app.register(fastifyJwt, {
        secret: jwt.secret ?? { public: jwt.publicKey as string },
        verify: { algorithms: [...jwt.algorithms], ...verifyOptions, complete: false },
        sign: {
          algorithm: jwt.algorithms[0],
          ...(issuers[0] ? { iss: issuers[0] } : {}),
          ...(audiences.length > 0 ? { aud: audiences.length === 1 ? audiences[0] : audiences } : {}),
        },
      })
    }

    if (verifyCacheSize > 0) {
      // A publisher sends the same token with every request: its verification is kept, in an
      // LRU of this many tokens, never past the token's exp.
      const verified = new VerifiedTokens<Decoded>(verifyCacheSize, VERIFY_CACHE_TTL_MS)
      const expiryOf = (decoded: Decoded) =>
        typeof decoded.payload.exp === 'number' ? decoded.payload.exp * 1000 : undefined
      const uncached = verify
      verify = (token) => {
        const hit = verified.get(token)
        if (hit !== undefined) return hit
        const decoded = uncached(token)
        if (!(decoded instanceof Promise)) {
          verified.set(token, decoded, expiryOf(decoded))
          return decoded
        }
        return decoded.then((d) => {
          verified.set(token, d, expiryOf(d))
          return d
        })
      }
    }

    const cookieName = jwt.cookie ?? null
    // Parsed only where a stream looks for its token, not on every request.
    if (cookieName !== null) await app.register(fastifyCookie, { hook: false })

    function tokenOf(request: FastifyRequest, options: AuthenticateOptions | undefined): string | undefined {
      const header = request.headers.authorization
      if (header !== undefined) {
        const match = BEARER.exec(header)
        if (match === null)
          throw new errors.SSE_ERR_INVALID_TOKEN('the Authorization header must be "Bearer <jwt>"')
        return match[1]
      }
      if (options?.allowQueryToken) {
        const query = request.query as { token?: unknown } | undefined
        if (typeof query?.token === 'string' && query.token !== '') return query.token
      }
      if (options?.allowCookie && cookieName !== null) {
        const cookies = request.headers.cookie
        if (typeof cookies === 'string' && cookies.includes(cookieName)) {
          const value = app.parseCookie(cookies)[cookieName]
          if (typeof value === 'string' && value !== '') return value
        }
      }
      return undefined
    }

    app.decorateRequest('auth', null)
    app.decorate('authCookie', cookieName)

    const identities = new WeakMap<Payload, AuthInfo>()
    app.decorate('authenticate', async (request: FastifyRequest, options?: AuthenticateOptions) => {
      const token = tokenOf(request, options)
      if (token === undefined) return null
      let payload: Payload
      try {
        payload = (await verify(token)).payload
      } catch (err) {
        const code = (err as { code?: unknown }).code
        if (code === 'SSE_ERR_INVALID_TOKEN') throw err
        if (typeof code === 'string' && code.startsWith('FAST_JWT_')) {
          throw new errors.SSE_ERR_INVALID_TOKEN(reasonOf(err, claims.user))
        }
        throw err
      }
      // A cached verification hands back the same payload: its identity is read once too.
      let info = identities.get(payload)
      if (info === undefined) {
        info = Object.freeze({
          ...identityOf(payload, claims),
          expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : 0,
        })
        identities.set(payload, info)
      }
      request.auth = info
      return info
    })

    app.decorate('requireScope', (scope: Scope) => {
      return async function requireScope(request: FastifyRequest) {
        const auth = await app.authenticate(request)
        if (auth === null)
          throw new errors.SSE_ERR_TOKEN_REQUIRED(`send "Authorization: Bearer <jwt>" with ${scope}`)
        if (!auth.scopes.includes(scope)) throw new errors.SSE_ERR_MISSING_SCOPE(scope)
      }
    })

    app.decorate('mintToken', (options: MintOptions) => {
      if (jwt.secret === undefined) throw new TypeError('mintToken needs JWT_SECRET (an HMAC configuration)')
      const payload: Record<string, unknown> = { sub: options.sub }
      if (options.scopes !== undefined && options.scopes.length > 0) payload.scope = options.scopes.join(' ')
      return app.jwt.sign(payload, { expiresIn: `${Math.max(1, Math.floor(options.expiresInSeconds))}s` })
    })

    app.decorate('setAuthCookie', (reply: FastifyReply, token: string, maxAgeSeconds: number) => {
      if (cookieName === null) throw new TypeError('setAuthCookie needs AUTH_COOKIE')
      reply.setCookie(cookieName, token, {
        httpOnly: true,
        sameSite: 'strict',
        path: '/api/sse',
        maxAge: Math.max(1, Math.floor(maxAgeSeconds)),
        secure: reply.request.protocol === 'https',
      })
    })
  },
  { name: 'sse-auth', fastify: '5.x' },
)
