import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import type { Config } from '../config.js'

/** public/ sits next to src/ and dist/ alike, so the same relative path works built or not. */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url))

/**
 * The browser client, built from src/browser/ by `npm run build` (scripts/build-browser.mjs) into
 * dist/browser/, which is also two levels up from both src/routes/ and dist/routes/.
 */
export const BROWSER_CLIENT = fileURLToPath(new URL('../../dist/browser/sse-manager.js', import.meta.url))

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

function pageHeaders(reply: FastifyReply): void {
  reply.header('content-security-policy', CSP)
  reply.header('cache-control', 'no-cache')
  reply.header('x-content-type-options', 'nosniff')
  reply.header('referrer-policy', 'no-referrer')
}

/** `GET /sse-client`: the built-in test page (plain files under public/, no build step). */
export const pageRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  await app.register(fastifyStatic, {
    root: PUBLIC_DIR,
    prefix: '/sse-client/',
    decorateReply: false,
    redirect: false,
    index: ['index.html'],
    cacheControl: false,
    setHeaders: pageHeaders,
  })

  // A relative Location keeps working behind a proxy that mounts the service under a path.
  app.get('/sse-client', { schema: { hide: true } }, async (_request, reply) =>
    reply.redirect('sse-client/', 302),
  )

  // Read at each request (about 7 KB): a rebuilt client is served without a restart.
  app.get('/sse-client/sse-manager.js', { schema: { hide: true } }, async (request, reply) => {
    let code: Buffer
    try {
      code = await readFile(BROWSER_CLIENT)
    } catch {
      request.log.warn('the browser client is not built: run `npm run build`')
      return reply.callNotFound()
    }
    pageHeaders(reply)
    reply.type('text/javascript; charset=utf-8')
    return code
  })

  // What the page should offer; it never carries a secret.
  app.get('/sse-client/config.json', { schema: { hide: true } }, async (_request, reply) => {
    reply.header('cache-control', 'no-store')
    return { devLogin: config.devLogin, allowAnonymous: config.allowAnonymous }
  })
}
