import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'
import type { Config } from '../config.js'

/** public/ sits next to src/ and dist/ alike, so the same relative path works built or not. */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url))

/** The page loads only its own files and talks only to this service. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

/** `GET /sse-client`: the built-in test page (plain files under public/, no build step). */
export const pageRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  await app.register(fastifyStatic, {
    root: PUBLIC_DIR,
    prefix: '/sse-client/',
    decorateReply: false,
    redirect: false,
    index: ['index.html'],
    cacheControl: false,
    setHeaders(reply) {
      reply.header('content-security-policy', CSP)
      reply.header('cache-control', 'no-cache')
      reply.header('x-content-type-options', 'nosniff')
      reply.header('referrer-policy', 'no-referrer')
    },
  })

  // A relative Location keeps working behind a proxy that mounts the service under a path.
  app.get('/sse-client', { schema: { hide: true } }, async (_request, reply) =>
    reply.redirect('sse-client/', 302),
  )

  // What the page should offer; it never carries a secret.
  app.get('/sse-client/config.json', { schema: { hide: true } }, async (_request, reply) => {
    reply.header('cache-control', 'no-store')
    return { devLogin: config.devLogin, allowAnonymous: config.allowAnonymous }
  })
}
