// AUTH_COOKIE over undici: a stream reads its JWT from the cookie when it has no Authorization
// header and no ?token=; a bad cookie is 401 like a bad header; routes that change anything
// never take it; the dev login can set it; CORS sends credentials for the allowed origins.
import SwaggerParser from '@apidevtools/swagger-parser'
import t from 'tap'
import { request } from 'undici'
import { loadConfig } from '../../src/config.js'
import {
  expectError,
  get,
  memoryLogger,
  mint,
  openStream,
  post,
  SECRET,
  serve,
  testConfig,
} from '../helper.js'
import { JwksProvider, jwksConfig, makeKey, sign } from './jwks-provider.js'

const COOKIE = 'sse_token'
const APP = 'https://app.test'
const withCookie = (env: Record<string, string> = {}) =>
  testConfig({}, { AUTH_COOKIE: COOKIE, CORS_ORIGINS: APP, ...env })
const cookie = (token: string) => ({ cookie: `theme=dark; ${COOKIE}=${token}` })
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

t.test('a stream without a header or ?token= authenticates with the cookie', async (t) => {
  const { url } = await serve(t, withCookie())
  const s = await openStream(url, { headers: cookie(mint('alice')) })
  t.teardown(() => s.close())
  t.match((await s.waitFor((e) => e.event === 'connected')).json, { userId: 'alice', anonymous: false })

  const header = await openStream(url, { token: mint('bob'), headers: cookie(mint('alice')) })
  t.teardown(() => header.close())
  t.match((await header.waitFor((e) => e.event === 'connected')).json, { userId: 'bob' }, 'the header wins')
  const query = await openStream(url, { query: { token: mint('carol') }, headers: cookie(mint('alice')) })
  t.teardown(() => query.close())
  t.match((await query.waitFor((e) => e.event === 'connected')).json, { userId: 'carol' }, '?token= wins')

  const none = await openStream(url, { headers: { cookie: 'theme=dark; other_sse_token=x' } })
  t.teardown(() => none.close())
  t.match((await none.waitFor((e) => e.event === 'connected')).json, { userId: null }, 'no cookie: anonymous')
  const empty = await openStream(url, { headers: { cookie: `${COOKIE}=` } })
  t.teardown(() => empty.close())
  t.match(
    (await empty.waitFor((e) => e.event === 'connected')).json,
    { userId: null },
    'an empty cookie: none',
  )
  const asserted = await openStream(url, { headers: cookie(mint('alice')), query: { userId: 'bob' } })
  t.equal(asserted.status, 403, '?userId= must equal the cookie token subject')
})

t.test('an invalid, expired or tampered cookie is 401 like a header token, never anonymous', async (t) => {
  const { url, app } = await serve(t, withCookie())
  const good = mint('alice')
  const [h, , s] = good.split('.')
  const bad: Record<string, string> = {
    expired: mint('alice', { expiresInMs: -60_000 }),
    'bad signature': mint('alice', { secret: `${SECRET}-other` }),
    tampered: `${h}.${b64({ sub: 'admin', exp: 9_999_999_999 })}.${s}`,
    'alg none': `${b64({ alg: 'none' })}.${b64({ sub: 'alice', exp: 9_999_999_999 })}.`,
    'no sub': mint(undefined),
    garbage: 'not-a-jwt',
    'url-encoded garbage': '%E0%A4%A',
  }
  for (const [what, token] of Object.entries(bad)) {
    const res = await openStream(url, { headers: cookie(token) })
    expectError(t, { status: res.status, body: res.body }, 401, 'SSE_ERR_INVALID_TOKEN')
    t.comment(what)
  }
  t.equal(app.sse.size, 0, 'no stream was opened')
})

t.test('publish, stats and disconnect-all never take the cookie (no cross-site requests)', async (t) => {
  const { url, app } = await serve(t, withCookie())
  const admin = mint('op', { scopes: ['sse:publish', 'sse:admin'] })
  const routes = [
    ['POST', '/api/sse'],
    ['GET', '/api/sse/stats'],
    ['POST', '/api/sse/disconnect-all'],
  ] as const
  for (const [method, path] of routes) {
    const res = await app.inject({
      method,
      url: path,
      headers: { ...cookie(admin), origin: APP, 'content-type': 'application/json' },
      ...(method === 'POST' ? { payload: { event: 'x', data: 1, broadcast: true } } : {}),
    })
    expectError(t, { status: res.statusCode, body: res.json() }, 401, 'SSE_ERR_TOKEN_REQUIRED')
  }
  t.equal(
    (await post(url, '/api/sse', { event: 'x', data: 1, broadcast: true }, admin)).status,
    202,
    'the header works',
  )
})

t.test('a cookie stream still ends at the token expiry with token_expired', async (t) => {
  const { url } = await serve(t, withCookie())
  const s = await openStream(url, { headers: cookie(mint('alice', { expiresInMs: 1500 })) })
  t.teardown(() => s.close())
  await s.waitFor((e) => e.event === 'connected')
  const bye = await s.waitFor((e) => e.event === 'disconnected', 5000)
  t.match(bye.json, { reason: 'token_expired' })
  await s.waitForEnd()
})

t.test('CORS: credentials for the allowed origins, on the stream and the preflight', async (t) => {
  const { url } = await serve(t, withCookie())
  const s = await openStream(url, { headers: { ...cookie(mint('alice')), origin: APP } })
  t.teardown(() => s.close())
  t.equal(s.headers['access-control-allow-origin'], APP)
  t.equal(s.headers['access-control-allow-credentials'], 'true')
  t.match(String(s.headers.vary), /origin/i)
  const other = await openStream(url, { headers: { ...cookie(mint('alice')), origin: 'https://evil.test' } })
  t.teardown(() => other.close())
  t.equal(other.headers['access-control-allow-origin'], undefined, 'no CORS header for another origin')
  t.equal(other.headers['access-control-allow-credentials'], undefined)
  // What a page's fetch with credentials (the dev login, say) asks first.
  const preflight = await request(`${url}/api/dev/token`, {
    method: 'OPTIONS',
    headers: {
      origin: APP,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type',
    },
  })
  await preflight.body.dump()
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.headers['access-control-allow-origin'], APP)
  t.equal(preflight.headers['access-control-allow-credentials'], 'true')
})

t.test('configuration: AUTH_COOKIE needs listed origins', async (t) => {
  const base = { JWT_SECRET: SECRET }
  t.equal(loadConfig({ ...base, AUTH_COOKIE: COOKIE }).jwt.cookie, COOKIE)
  t.equal(loadConfig(base).jwt.cookie, undefined, 'unset by default')
  t.throws(() => loadConfig({ ...base, AUTH_COOKIE: COOKIE, CORS_ORIGINS: '*' }), {
    name: 'ConfigError',
    variable: 'AUTH_COOKIE',
    message: /CORS_ORIGINS/,
  })
  for (const name of ['a b', 'a;b', 'a=b', 'x'.repeat(65), 'é']) {
    t.throws(
      () => loadConfig({ ...base, AUTH_COOKIE: name }),
      { name: 'ConfigError', variable: 'AUTH_COOKIE' },
      JSON.stringify(name),
    )
  }
  t.same(
    loadConfig({ AUTH_COOKIE: COOKIE }).corsOrigins,
    [],
    'with the generated secret, no longer * by default',
  )
  t.same(loadConfig({}).corsOrigins, ['*'], 'without the cookie, as before')
  t.same(
    loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET, AUTH_COOKIE: COOKIE, CORS_ORIGINS: APP })
      .corsOrigins,
    [APP],
  )
})

t.test('POST /api/dev/token can set the cookie, which then opens streams', async (t) => {
  const { logger, lines } = memoryLogger()
  const { url } = await serve(t, withCookie(), logger)
  const res = await post(url, '/api/dev/token', { sub: 'alice', expiresInSeconds: 120, cookie: true })
  t.equal(res.status, 200)
  const setCookie = String(res.headers['set-cookie'])
  t.match(setCookie, new RegExp(`^${COOKIE}=${res.body.token.replace(/\./g, '\\.')};`))
  t.match(setCookie, /; Max-Age=1[12]\d(;|$)/)
  t.match(setCookie, /; Path=\/api\/sse(;|$)/)
  t.match(setCookie, /; HttpOnly(;|$)/)
  t.match(setCookie, /; SameSite=Strict(;|$)/)
  t.notMatch(setCookie, /Secure/, 'not Secure over plain http (development)')
  const value = setCookie.split(';')[0] as string
  const s = await openStream(url, { headers: { cookie: value } })
  t.teardown(() => s.close())
  t.match((await s.waitFor((e) => e.event === 'connected')).json, { userId: 'alice' })
  const plain = await post(url, '/api/dev/token', { sub: 'bob' })
  t.equal(plain.headers['set-cookie'], undefined, 'no cookie unless asked for')
  t.notOk(lines.join('').includes(res.body.token), 'the token is never logged')
  t.ok(lines.some((l) => l.includes('"cookie":true')))

  // Without AUTH_COOKIE the field does not exist.
  const { url: noCookie } = await serve(t)
  expectError(
    t,
    await post(noCookie, '/api/dev/token', { sub: 'alice', cookie: true }),
    400,
    'FST_ERR_VALIDATION',
  )
})

t.test('a JWKS token in the cookie, and a cookie never logged', async (t) => {
  const key = makeKey('ES256')
  const p = await JwksProvider.start([key])
  t.teardown(() => p.stop())
  const { logger, lines } = memoryLogger('trace')
  const { url } = await serve(t, jwksConfig(p.url, { AUTH_COOKIE: COOKIE, CORS_ORIGINS: APP }), logger)
  const token = sign(key, { sub: 'alice' })
  const s = await openStream(url, { headers: cookie(token) })
  t.teardown(() => s.close())
  t.match((await s.waitFor((e) => e.event === 'connected')).json, { userId: 'alice' })
  const expired = sign(key, { sub: 'alice', exp: Math.floor(Date.now() / 1000) - 10 })
  t.equal((await openStream(url, { headers: cookie(expired) })).status, 401)
  t.equal((await get(url, '/ready')).status, 200)
  const signatures = [token, expired].map((x) => x.split('.')[2] as string)
  t.notOk(
    lines.some((l) => signatures.some((sig) => l.includes(sig))),
    'no cookie value in any log line',
  )
})

t.test('OpenAPI: the stream lists header, ?token= and, with AUTH_COOKIE, the cookie', async (t) => {
  type Doc = {
    components: { securitySchemes: Record<string, Record<string, string>> }
    paths: Record<string, Record<string, { security?: Record<string, string[]>[] }>>
  }
  const { url } = await serve(t, withCookie())
  const doc = (await get(url, '/docs/json')).body as Doc
  await t.resolves(SwaggerParser.validate(structuredClone(doc) as never), 'a valid document')
  t.match(doc.components.securitySchemes.authCookie, { type: 'apiKey', in: 'cookie', name: COOKIE })
  t.match(doc.components.securitySchemes.queryToken, { type: 'apiKey', in: 'query', name: 'token' })
  t.match(doc.components.securitySchemes.bearerAuth?.description, /JWT_JWKS_URL/)
  t.same(doc.paths['/api/sse']?.get?.security, [
    { bearerAuth: [] },
    { queryToken: [] },
    { authCookie: [] },
    {},
  ])
  t.same(doc.paths['/api/sse']?.post?.security, [{ bearerAuth: [] }], 'publishing: the header only')

  const { url: plain } = await serve(t)
  const without = (await get(plain, '/docs/json')).body as Doc
  await t.resolves(SwaggerParser.validate(structuredClone(without) as never))
  t.equal(without.components.securitySchemes.authCookie, undefined, 'no cookie scheme without AUTH_COOKIE')
  t.same(without.paths['/api/sse']?.get?.security, [{ bearerAuth: [] }, { queryToken: [] }, {}])
})
