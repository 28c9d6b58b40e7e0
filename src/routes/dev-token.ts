import type { FastifyPluginAsync } from 'fastify'
import { type Static, Type } from 'typebox'
import { SCOPES } from '../plugins/auth.js'
import { errorResponses } from '../schemas.js'

const MAX_LIFETIME_SECONDS = 24 * 3600
const DEFAULT_LIFETIME_SECONDS = 3600

export const DevTokenBody = Type.Object(
  {
    sub: Type.String({
      minLength: 1,
      maxLength: 256,
      pattern: '^\\S(.*\\S)?$',
      description: 'The user the token is for (its subject)',
    }),
    scopes: Type.Optional(
      Type.Array(Type.Enum([SCOPES.publish, SCOPES.admin]), {
        maxItems: 2,
        uniqueItems: true,
        description: 'sse:publish and/or sse:admin; none for a plain subscriber',
      }),
    ),
    expiresInSeconds: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_LIFETIME_SECONDS,
        default: DEFAULT_LIFETIME_SECONDS,
        description: 'Lifetime in seconds (1 to 86400, default 3600)',
      }),
    ),
  },
  { additionalProperties: false },
)
type DevTokenBody = Static<typeof DevTokenBody> & { cookie?: boolean }

/** With AUTH_COOKIE, the test page can ask for the token in the cookie as well. */
const WithCookie = Type.Object(
  {
    ...DevTokenBody.properties,
    cookie: Type.Optional(
      Type.Boolean({
        description:
          'Also set the AUTH_COOKIE cookie to the token (HttpOnly, SameSite=Strict, Path=/api/sse; Secure over https)',
      }),
    ),
  },
  { additionalProperties: false },
)

const DevTokenResponse = Type.Object({
  token: Type.String({ description: 'A JWT signed with the configured secret' }),
  sub: Type.String(),
  scopes: Type.Array(Type.String()),
  expiresAt: Type.String({ format: 'date-time' }),
})

/**
 * Development only (DEV_LOGIN): mints a short-lived token for any name, so the test
 * page can "sign in as" someone. Not registered at all when disabled, so it is a 404.
 */
export const devTokenRoutes: FastifyPluginAsync = async (app) => {
  app.post(
    '/api/dev/token',
    {
      schema: {
        tags: ['development'],
        summary: 'Mint a short-lived token (DEV_LOGIN only; never in production)',
        body: app.authCookie === null ? DevTokenBody : WithCookie,
        response: { 200: DevTokenResponse, ...errorResponses(400, 415) },
      },
    },
    async (request, reply) => {
      const body = request.body as DevTokenBody
      const scopes = [...new Set(body.scopes ?? [])]
      const lifetime = body.expiresInSeconds ?? DEFAULT_LIFETIME_SECONDS
      const token = app.mintToken({ sub: body.sub, scopes, expiresInSeconds: lifetime })
      const exp = app.jwt.decode<{ exp: number }>(token)?.exp ?? Math.floor(Date.now() / 1000) + lifetime
      const expiresAt = new Date(exp * 1000).toISOString()
      if (body.cookie === true) app.setAuthCookie(reply, token, exp - Math.floor(Date.now() / 1000))
      request.log.info(
        { sub: body.sub, scopes, expiresInSeconds: lifetime, cookie: body.cookie === true },
        'dev token minted',
      )
      return { token, sub: body.sub, scopes, expiresAt }
    },
  )
}
