import { generateKeyPairSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { expectError, get, memoryLogger, openStream, post, postRaw, SECRET, serve } from '../helper.js'

const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>

t.test('POST /api/dev/token mints a working short-lived token', async (t) => {
  const { logger, lines } = memoryLogger()
  const { url } = await serve(t, {}, logger)
  const before = Math.floor(Date.now() / 1000)
  const res = await post(url, '/api/dev/token', {
    sub: 'alice',
    scopes: ['sse:publish', 'sse:admin'],
    expiresInSeconds: 120,
  })
  t.equal(res.status, 200)
  t.match(res.body, { sub: 'alice', scopes: ['sse:publish', 'sse:admin'], token: /^[\w-]+\.[\w-]+\.[\w-]+$/ })
  const claims = claimsOf(res.body.token)
  t.match(claims, { sub: 'alice', scope: 'sse:publish sse:admin' })
  const exp = claims.exp as number
  t.ok(exp >= before + 120 && exp <= Math.ceil(Date.now() / 1000) + 120, 'exp is 120 s away')
  t.equal(res.body.expiresAt, new Date(exp * 1000).toISOString(), 'expiresAt is the token exp')

  // The token works: a stream as alice, and publishing with her scope.
  const s = await openStream(url, { token: res.body.token })
  t.teardown(() => s.close())
  t.match((await s.waitFor((e) => e.event === 'connected')).json, { userId: 'alice', anonymous: false })
  const sent = await post(url, '/api/sse', { event: 'hi', data: 1, userIds: ['alice'] }, res.body.token)
  t.equal(sent.status, 202)
  t.equal((await get(url, '/api/sse/stats', res.body.token)).status, 200)
  t.notOk(lines.join('').includes(res.body.token), 'the token is never logged')
  t.ok(
    lines.some((l) => l.includes('dev token minted')),
    'the minting is logged',
  )
})

t.test('defaults: no scopes, one hour', async (t) => {
  const { url } = await serve(t)
  const res = await post(url, '/api/dev/token', { sub: 'bob' })
  t.equal(res.status, 200)
  t.same(res.body.scopes, [])
  const claims = claimsOf(res.body.token)
  t.equal(claims.scope, undefined, 'no scope claim')
  t.equal((claims.exp as number) - (claims.iat as number), 3600)
  expectError(
    t,
    await post(url, '/api/sse', { event: 'x', data: 1, broadcast: true }, res.body.token),
    403,
    'SSE_ERR_MISSING_SCOPE',
  )
})

t.test('bad requests are refused', async (t) => {
  const { url } = await serve(t)
  const cases: [string, unknown][] = [
    ['unknown scope', { sub: 'alice', scopes: ['sse:root'] }],
    ['scope string', { sub: 'alice', scopes: 'sse:admin' }],
    ['no sub', { scopes: [] }],
    ['empty sub', { sub: '' }],
    ['blank sub', { sub: '  ' }],
    ['long sub', { sub: 'x'.repeat(257) }],
    ['zero lifetime', { sub: 'alice', expiresInSeconds: 0 }],
    ['over a day', { sub: 'alice', expiresInSeconds: 86_401 }],
    ['fractional lifetime', { sub: 'alice', expiresInSeconds: 1.5 }],
    ['extra field', { sub: 'alice', admin: true }],
  ]
  for (const [name, body] of cases) {
    expectError(t, await post(url, '/api/dev/token', body), 400, 'FST_ERR_VALIDATION')
    t.comment(name)
  }
  const unknown = await post(url, '/api/dev/token', { sub: 'alice', scopes: ['sse:root'] })
  t.match(unknown.body.message, /allowed values/, 'says the scope is not one of the allowed values')
  t.equal((await postRaw(url, '/api/dev/token', 'sub=alice', { 'content-type': 'text/plain' })).status, 415)
})

t.test('DEV_LOGIN=false: the endpoint does not exist', async (t) => {
  const { url } = await serve(t, { devLogin: false })
  expectError(t, await post(url, '/api/dev/token', { sub: 'alice' }), 404, 'SSE_ERR_NOT_FOUND')
  const config = await get(url, '/sse-client/config.json')
  t.same(config.body, { devLogin: false, allowAnonymous: true })
})

t.test('DEV_LOGIN in the configuration', async (t) => {
  const dev = { NODE_ENV: 'development', JWT_SECRET: SECRET }
  const prod = { NODE_ENV: 'production', JWT_SECRET: SECRET, CORS_ORIGINS: 'https://app.example.com' }
  t.equal(loadConfig(dev).devLogin, false, 'off by default with a configured secret')
  t.equal(loadConfig({ ...dev, DEV_LOGIN: 'true' }).devLogin, true, 'on when asked for, with a secret')
  t.equal(loadConfig({ NODE_ENV: 'development' }).devLogin, true, 'on by default with the generated secret')
  t.equal(loadConfig({ ...dev, DEV_LOGIN: 'false' }).devLogin, false)
  t.equal(loadConfig(prod).devLogin, false, 'off in production')
  t.equal(loadConfig({ ...prod, DEV_LOGIN: 'false' }).devLogin, false)
  t.throws(() => loadConfig({ ...prod, DEV_LOGIN: 'true' }), { name: 'ConfigError', variable: 'DEV_LOGIN' })
  t.throws(() => loadConfig({ ...dev, DEV_LOGIN: 'maybe' }), { name: 'ConfigError', variable: 'DEV_LOGIN' })
  const publicKey = generateKeyPairSync('ed25519')
    .publicKey.export({ type: 'spki', format: 'pem' })
    .toString()
  const withKey = { NODE_ENV: 'development', JWT_PUBLIC_KEY: publicKey }
  t.equal(loadConfig(withKey).devLogin, false, 'off when tokens are signed elsewhere')
  t.throws(() => loadConfig({ ...withKey, DEV_LOGIN: 'true' }), {
    name: 'ConfigError',
    variable: 'DEV_LOGIN',
  })
})

t.test('the page is served with a strict policy and no outside resources', async (t) => {
  const { url } = await serve(t)
  const redirect = await get(url, '/sse-client')
  t.equal(redirect.status, 302)
  t.equal(redirect.headers.location, 'sse-client/', 'a relative redirect to the folder')
  const page = await get(url, '/sse-client/')
  t.equal(page.status, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.headers['content-security-policy'], "default-src 'none'")
  t.match(page.headers['content-security-policy'], "connect-src 'self'")
  t.match(page.body, '<script type="module" src="app.js">')
  for (const [file, type] of [
    ['app.js', /javascript/],
    ['style.css', /^text\/css/],
  ] as const) {
    const res = await get(url, `/sse-client/${file}`)
    t.equal(res.status, 200, file)
    t.match(res.headers['content-type'], type, `${file} type`)
    t.match(res.headers['content-security-policy'], "default-src 'none'")
  }
  t.same((await get(url, '/sse-client/config.json')).body, { devLogin: true, allowAnonymous: true })
  for (const path of [
    '/sse-client/../package.json',
    '/sse-client/%2e%2e/package.json',
    '/sse-client/nope.js',
  ]) {
    const res = await get(url, path)
    t.equal(res.status, 404, `${path} is not served`)
    t.notMatch(String(JSON.stringify(res.body)), '"dependencies"')
  }
  for (const file of ['index.html', 'app.js', 'style.css']) {
    const text = readFileSync(new URL(`../../public/${file}`, import.meta.url), 'utf8')
    t.notMatch(text, /(src|href)="(https?:)?\/\//, `${file} loads nothing from elsewhere`)
    t.notMatch(text, /https?:\/\/(?!localhost)/, `${file} names no outside host`)
  }
})
