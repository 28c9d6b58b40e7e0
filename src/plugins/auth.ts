import fastifyJwt from '@fastify/jwt'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { JwtConfig } from '../config.js'
import { errors } from '../errors.js'

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
  /** Epoch ms of the token's `exp`. */
  readonly expiresAt: number
}

export interface MintOptions {
  sub: string
  scopes?: readonly string[]
  /** Lifetime in seconds. */
  expiresInSeconds: number
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Verifies the request's token when it has one; null when it has none. Throws 401 on a bad token. */
    authenticate(request: FastifyRequest, options?: { allowQueryToken?: boolean }): AuthInfo | null
    /**
     * A hook that demands a token carrying `scope`. Routes use it in `preParsing`: after the
     * per-IP rate limit (onRequest), so that refused tokens count, and before any body is read.
     */
    requireScope(scope: Scope): (request: FastifyRequest) => Promise<void>
    /** Signs a token with the configured secret (HMAC configurations only). */
    mintToken(options: MintOptions): string
  }
  interface FastifyRequest {
    auth: AuthInfo | null
  }
}

const MAX_SUBJECT_LENGTH = 256
const BEARER = /^Bearer ([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*)$/i

interface Claims {
  sub?: unknown
  exp?: unknown
  scope?: unknown
  scp?: unknown
}

function scopesOf(claims: Claims): string[] {
  const raw = claims.scope ?? claims.scp
  if (typeof raw === 'string') return raw.split(' ').filter((s) => s !== '')
  if (Array.isArray(raw)) return raw.filter((s): s is string => typeof s === 'string')
  return []
}

/** Words for the verifier's error codes; never echoes the token. */
function reasonOf(err: unknown): string {
  const code = (err as { code?: string }).code ?? ''
  if (code === 'FAST_JWT_EXPIRED') return 'it has expired'
  if (code === 'FAST_JWT_INACTIVE') return 'it is not valid yet'
  if (code === 'FAST_JWT_INVALID_ALGORITHM') return 'its algorithm is not allowed'
  if (code === 'FAST_JWT_INVALID_SIGNATURE') return 'its signature does not verify'
  if (code === 'FAST_JWT_MISSING_REQUIRED_CLAIM')
    return 'it lacks a required claim (exp and sub are required)'
  if (code === 'FAST_JWT_INVALID_CLAIM_VALUE') return 'its issuer or audience is not accepted'
  if (code === 'FAST_JWT_INVALID_CRIT_HEADER')
    return 'it has a critical header this service does not understand'
  if (code === 'FAST_JWT_MISSING_SIGNATURE') return 'it is not signed'
  return 'it is malformed'
}

/**
 * JWT authentication. Algorithms are pinned, `exp` and `sub` are required, and
 * `iss`/`aud` are checked when configured. The user id only ever comes from a
 * verified token's subject.
 */
export const authPlugin = fp<{ jwt: JwtConfig }>(
  async (app, { jwt }) => {
    const common = {
      ...(jwt.issuer ? { allowedIss: jwt.issuer } : {}),
      ...(jwt.audience ? { allowedAud: jwt.audience } : {}),
    }
    await app.register(fastifyJwt, {
      secret: jwt.secret ?? { public: jwt.publicKey as string },
      verify: {
        algorithms: [...jwt.algorithms],
        // The verifier checks iss/aud only when present: configured ones must also be required.
        requiredClaims: ['exp', 'sub', ...(jwt.issuer ? ['iss'] : []), ...(jwt.audience ? ['aud'] : [])],
        ...common,
      },
      sign: {
        algorithm: jwt.algorithms[0],
        ...(jwt.issuer ? { iss: jwt.issuer } : {}),
        ...(jwt.audience ? { aud: jwt.audience } : {}),
      },
    })

    app.decorateRequest('auth', null)

    app.decorate('authenticate', (request: FastifyRequest, options?: { allowQueryToken?: boolean }) => {
      let token: string | undefined
      const header = request.headers.authorization
      if (header !== undefined) {
        const match = BEARER.exec(header)
        if (match === null)
          throw new errors.SSE_ERR_INVALID_TOKEN('the Authorization header must be "Bearer <jwt>"')
        token = match[1]
      } else if (options?.allowQueryToken) {
        const query = request.query as { token?: unknown } | undefined
        if (typeof query?.token === 'string' && query.token !== '') token = query.token
      }
      if (token === undefined) return null
      let claims: Claims
      try {
        claims = app.jwt.verify<Claims>(token)
      } catch (err) {
        throw new errors.SSE_ERR_INVALID_TOKEN(reasonOf(err))
      }
      if (typeof claims.sub !== 'string' || claims.sub === '' || claims.sub.length > MAX_SUBJECT_LENGTH) {
        throw new errors.SSE_ERR_INVALID_TOKEN(
          `its sub must be a string of 1 to ${MAX_SUBJECT_LENGTH} characters`,
        )
      }
      const info: AuthInfo = {
        userId: claims.sub,
        scopes: scopesOf(claims),
        expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : 0,
      }
      request.auth = info
      return info
    })

    app.decorate('requireScope', (scope: Scope) => {
      return async function requireScope(request: FastifyRequest) {
        const auth = app.authenticate(request)
        if (auth === null)
          throw new errors.SSE_ERR_TOKEN_REQUIRED(`send "Authorization: Bearer <jwt>" with ${scope}`)
        if (!auth.scopes.includes(scope)) throw new errors.SSE_ERR_MISSING_SCOPE(scope)
      }
    })

    app.decorate('mintToken', (options: MintOptions) => {
      const payload: Record<string, unknown> = { sub: options.sub }
      if (options.scopes !== undefined && options.scopes.length > 0) payload.scope = options.scopes.join(' ')
      return app.jwt.sign(payload, { expiresIn: `${Math.max(1, Math.floor(options.expiresInSeconds))}s` })
    })
  },
  { name: 'sse-auth', fastify: '5.x' },
)
