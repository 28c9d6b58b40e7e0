import { readFileSync } from 'node:fs'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifySchema } from 'fastify'
import fp from 'fastify-plugin'
import { errorRef } from '../schemas.js'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version?: string
  description?: string
}

/** Pages and the docs themselves are not part of the API. */
const UNDOCUMENTED = /^\/(docs|sse-client)(\/|$)/

type Security = Record<string, string[]>[]

/**
 * Adds what every route can answer whatever its own schema says: 500 from the error
 * handler, and drops the ways to authenticate this configuration does not offer (the
 * cookie without AUTH_COOKIE). Only the document changes; serialization keeps the route's own schema.
 */
function transformFor(schemes: ReadonlySet<string>) {
  return function transform({ schema, url }: { schema: FastifySchema | undefined; url: string }): {
    schema: FastifySchema
    url: string
  } {
    const own = (schema ?? {}) as FastifySchema & { hide?: boolean; security?: Security }
    if (UNDOCUMENTED.test(url)) return { schema: { ...own, hide: true } as FastifySchema, url }
    if (own.hide === true) return { schema: own, url }
    const response: Record<string, unknown> = { ...(own.response as Record<string, unknown> | undefined) }
    response['500'] ??= errorRef
    const security = own.security?.filter((s) => Object.keys(s).every((name) => schemes.has(name)))
    return { schema: { ...own, response, ...(security ? { security } : {}) } as FastifySchema, url }
  }
}

/**
 * OpenAPI 3.1 built from the route schemas that already validate requests, served
 * as JSON at `/docs/json` and browsable at `/docs` (assets ship with the package: no CDN).
 * Register it before the routes: it collects them as they are added.
 */
export const docsPlugin = fp<{ authCookie?: string | null }>(
  async (app, { authCookie }) => {
    const securitySchemes = {
      bearerAuth: {
        type: 'http' as const,
        scheme: 'bearer',
        bearerFormat: 'JWT',
        description:
          'A JWT: HMAC (JWT_SECRET), a public key (JWT_PUBLIC_KEY) or an identity provider key set ' +
          "picked by the token's kid (JWT_JWKS_URL). The user id comes from JWT_USER_CLAIM (sub), " +
          'scopes from JWT_SCOPE_CLAIM (scope or scp) as mapped by JWT_SCOPE_MAP',
      },
      queryToken: {
        type: 'apiKey' as const,
        in: 'query' as const,
        name: 'token',
        description: 'The same JWT in ?token= (GET /api/sse only; prefer the cookie in browsers)',
      },
      ...(authCookie
        ? {
            authCookie: {
              type: 'apiKey' as const,
              in: 'cookie' as const,
              name: authCookie,
              description:
                'The same JWT in the AUTH_COOKIE cookie (GET /api/sse only; with EventSource withCredentials)',
            },
          }
        : {}),
      metricsToken: {
        type: 'http' as const,
        scheme: 'bearer',
        description: 'The METRICS_TOKEN value, when one is configured',
      },
    }
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'sse-manager',
          version: pkg.version ?? '0.0.0',
          description:
            `${pkg.description ?? ''}\n\nErrors have the shape {statusCode, error, message, code}; ` +
            'codes are stable. Tokens are JWTs with a `sub` and, for publishing and admin, the scopes ' +
            '`sse:publish` and `sse:admin`.',
        },
        tags: [
          { name: 'stream', description: 'Server-sent events for browsers' },
          { name: 'publish', description: 'Send events (scope sse:publish)' },
          { name: 'admin', description: 'Statistics and disconnects (scope sse:admin)' },
          { name: 'operations', description: 'Health, readiness and metrics' },
          { name: 'development', description: 'Development helpers (DEV_LOGIN)' },
        ],
        components: { securitySchemes },
      },
      // Shared schemas keep their $id as their name (#/components/schemas/ErrorResponse).
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) =>
          typeof json.$id === 'string' ? json.$id : `def-${i}`,
      },
      transform: transformFor(new Set(Object.keys(securitySchemes))),
    })
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      staticCSP: true,
      uiConfig: { docExpansion: 'list', deepLinking: true },
    })
  },
  { name: 'sse-docs', fastify: '5.x' },
)
