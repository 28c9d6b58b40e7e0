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

/**
 * Adds what every route can answer whatever its own schema says: 500 from the error
 * handler. Only the document changes; serialization keeps the route's own schema.
 */
function transform({ schema, url }: { schema: FastifySchema | undefined; url: string }): {
  schema: FastifySchema
  url: string
} {
  const own = (schema ?? {}) as FastifySchema & { hide?: boolean }
  if (UNDOCUMENTED.test(url)) return { schema: { ...own, hide: true } as FastifySchema, url }
  if (own.hide === true) return { schema: own, url }
  const response: Record<string, unknown> = { ...(own.response as Record<string, unknown> | undefined) }
  response['500'] ??= errorRef
  return { schema: { ...own, response }, url }
}

/**
 * OpenAPI 3.1 built from the route schemas that already validate requests, served
 * as JSON at `/docs/json` and browsable at `/docs` (assets ship with the package: no CDN).
 * Register it before the routes: it collects them as they are added.
 */
export const docsPlugin = fp(
  async (app) => {
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
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              bearerFormat: 'JWT',
              description: 'A JWT signed with the configured key; scopes in its `scope` claim',
            },
            metricsToken: {
              type: 'http',
              scheme: 'bearer',
              description: 'The METRICS_TOKEN value, when one is configured',
            },
          },
        },
      },
      // Shared schemas keep their $id as their name (#/components/schemas/ErrorResponse).
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) =>
          typeof json.$id === 'string' ? json.$id : `def-${i}`,
      },
      transform,
    })
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      staticCSP: true,
      uiConfig: { docExpansion: 'list', deepLinking: true },
    })
  },
  { name: 'sse-docs', fastify: '5.x' },
)
