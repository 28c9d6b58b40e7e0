// JWT_JWKS_URL against a local identity provider (node:http on 127.0.0.1, keys from node:crypto):
// algorithms from the keys, rotation without a restart, the unknown-kid cooldown counted at the
// provider, and an outage.
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config.js'
import { expectError, get, memoryLogger, openStream, post, serve, sleep } from '../helper.js'
import { JwksProvider, jwksConfig, makeKey, type ProviderKey, sign } from './jwks-provider.js'

const ADMIN = { sub: 'op', scope: 'sse:admin' }
const stats = (url: string, token: string) => get(url, '/api/sse/stats', token)

async function provider(t: Test, keys: ProviderKey[]) {
  const p = await JwksProvider.start(keys)
  t.teardown(() => p.stop())
  return p
}

t.test('RS256, PS256, ES256, ES384 and EdDSA tokens verify with keys from the key set', async (t) => {
  const keys = [
    makeKey('RS256'),
    makeKey('RS256', { withAlg: false }), // as Azure AD publishes them
    makeKey('PS256'),
    makeKey('ES256'),
    makeKey('ES256', { withAlg: false }),
    makeKey('ES384'),
    makeKey('EdDSA'),
  ]
  const p = await provider(t, keys)
  const { url } = await serve(t, jwksConfig(p.url))
  for (const key of keys) {
    const res = await stats(url, sign(key, ADMIN))
    t.equal(res.status, 200, `${key.alg}${key.jwk.alg ? '' : ' (no alg in the JWK)'}`)
  }
  t.equal(p.fetches, keys.length, 'one fetch per key id (get-jwks keeps one entry per id)')
  for (const key of keys) t.equal((await stats(url, sign(key, ADMIN))).status, 200)
  t.equal(p.fetches, keys.length, 'cached: no more fetches')

  // A stream is opened as the token's subject, and publishing works with the scope.
  const es = keys[3] as ProviderKey
  const s = await openStream(url, { token: sign(es, { sub: 'alice' }) })
  t.teardown(() => s.close())
  t.match((await s.waitFor((e) => e.event === 'connected')).json, { userId: 'alice', anonymous: false })
  const sent = await post(
    url,
    '/api/sse',
    { event: 'hi', data: 1, userIds: ['alice'] },
    sign(es, { sub: 'svc', scope: 'sse:publish' }),
  )
  t.equal(sent.status, 202)
  await s.waitFor((e) => e.event === 'hi')
  const q = await openStream(url, { query: { token: sign(keys[0] as ProviderKey, { sub: 'bob' }) } })
  t.teardown(() => q.close())
  t.match((await q.waitFor((e) => e.event === 'connected')).json, { userId: 'bob' }, '?token= works too')
})

t.test('a rotated-in key works without a restart; a removed key stops after the cache', async (t) => {
  const old = makeKey('RS256')
  const p = await provider(t, [old])
  const { url } = await serve(
    t,
    jwksConfig(p.url, { JWT_JWKS_CACHE_MS: '800', JWT_JWKS_COOLDOWN_MS: '5000' }),
  )
  t.equal((await stats(url, sign(old, ADMIN))).status, 200)
  t.equal(p.fetches, 1)

  // The provider rotates: a new key is added, tokens signed with it arrive.
  const next = makeKey('ES256')
  p.publish(next)
  t.equal((await stats(url, sign(next, ADMIN))).status, 200, 'the new key works at once')
  t.equal(p.fetches, 2, 'fetched once for the new key id')

  // Then the old one is removed: it keeps working while cached, and stops after the cache.
  p.remove(old.kid)
  t.equal((await stats(url, sign(old, ADMIN))).status, 200, 'still cached')
  await sleep(1000)
  const gone = await stats(url, sign(old, ADMIN))
  expectError(t, gone, 401, 'SSE_ERR_INVALID_TOKEN', /not one of the identity provider keys/)
  t.equal((await stats(url, sign(next, ADMIN))).status, 200, 'the new key is fetched again and still works')
  const fetches = p.fetches
  for (let i = 0; i < 20; i++) await stats(url, sign(old, ADMIN))
  t.equal(p.fetches, fetches, 'the removed key costs no further fetch within the cooldown')
})

t.test('a flood of made-up kids makes at most one fetch per cooldown', async (t) => {
  const real = makeKey('RS256')
  const p = await provider(t, [real])
  const cooldownMs = 3000
  const { url } = await serve(
    t,
    jwksConfig(p.url, { JWT_JWKS_COOLDOWN_MS: String(cooldownMs), RATE_LIMIT_CONNECT: '0' }),
  )
  t.equal((await stats(url, sign(real, ADMIN))).status, 200)
  t.equal(p.fetches, 1)

  const started = Date.now()
  const flood = Array.from({ length: 300 }, (_, i) =>
    i % 3 === 0
      ? openStream(url, { token: sign(real, { sub: 'mallory' }, { kid: `kid-${i}` }) })
      : stats(url, sign(real, ADMIN, { kid: randomUUID() })),
  )
  const answers = await Promise.all(flood)
  t.ok(
    answers.every((a) => a.status === 401),
    'every made-up kid is 401',
  )
  t.equal((await stats(url, sign(real, ADMIN))).status, 200, 'the real key still works, from the cache')
  // The same made-up kid again and again, and new ones, one by one.
  for (let i = 0; i < 30; i++) await stats(url, sign(real, ADMIN, { kid: i % 2 ? 'kid-1' : randomUUID() }))
  const elapsed = Date.now() - started
  const during = p.fetches - 1
  t.ok(during >= 1, 'the flood made the service look')
  t.ok(
    during <= 1 + Math.floor(elapsed / cooldownMs),
    `${during} fetch(es) for 330 made-up kids in ${elapsed} ms (cooldown ${cooldownMs} ms)`,
  )
  if (elapsed < cooldownMs) t.equal(during, 1, 'all within one cooldown: exactly one fetch')

  // Once the cooldown is over, the next flood makes one more.
  const last = p.fetchTimes.at(-1) as number
  await sleep(Math.max(0, last + cooldownMs + 200 - Date.now()))
  const before = p.fetches
  await Promise.all(Array.from({ length: 50 }, () => stats(url, sign(real, ADMIN, { kid: randomUUID() }))))
  t.equal(p.fetches, before + 1, 'after the cooldown, one more fetch for the next flood')
  const gaps = p.fetchTimes.slice(1).map((at, i) => at - (p.fetchTimes[i] as number))
  t.ok(
    gaps.slice(1).every((gap) => gap >= cooldownMs),
    `fetches for made-up kids are a cooldown apart or more (${gaps.join(', ')} ms)`,
  )
})

t.test('the provider down: cached keys keep working, unknown keys are 401, logged once', async (t) => {
  const key = makeKey('ES256')
  const p = await JwksProvider.start([key])
  const jwksUrl = p.url
  const port = Number(new URL(jwksUrl).port)
  const { logger, lines } = memoryLogger()
  const { url } = await serve(
    t,
    jwksConfig(p.url, { JWT_JWKS_CACHE_MS: '300', JWT_JWKS_COOLDOWN_MS: '200' }),
    logger,
  )
  t.equal((await stats(url, sign(key, ADMIN))).status, 200)
  await p.stop()

  t.equal((await stats(url, sign(key, ADMIN))).status, 200, 'cached: works')
  await sleep(400)
  for (let i = 0; i < 5; i++) {
    t.equal((await stats(url, sign(key, ADMIN))).status, 200, 'past the cache: the key it had still works')
    await sleep(100)
  }
  const unknown = await stats(url, sign(key, ADMIN, { kid: 'rotated-in-during-the-outage' }))
  expectError(t, unknown, 401, 'SSE_ERR_INVALID_TOKEN', /could not be fetched/)
  const s = await openStream(url, { token: sign(key, { sub: 'alice' }, { kid: 'another-unknown' }) })
  t.equal(s.status, 401, 'a stream with an unknown key is 401, never anonymous')
  t.equal((await get(url, '/ready')).status, 200, '/ready stays 200: the outage is the provider’s')
  t.equal((await get(url, '/health')).status, 200)
  const down = lines.filter((l) => l.includes('JWKS unreachable'))
  t.equal(down.length, 1, 'the outage is logged once')
  t.match(JSON.parse(down[0] ?? '{}'), { level: 40, jwksUrl, err: { code: 'ECONNREFUSED' } })

  // A provider answering 500 is down as well; when it is back, that is logged once.
  const back = await JwksProvider.start([key], undefined, port)
  t.teardown(() => back.stop())
  back.failWith = 500
  await sleep(250)
  t.equal((await stats(url, sign(key, ADMIN))).status, 200, 'a 500 from the provider: the key it had')
  back.failWith = null
  await sleep(250)
  t.equal((await stats(url, sign(key, ADMIN))).status, 200)
  t.equal(lines.filter((l) => l.includes('JWKS unreachable')).length, 1, 'still one outage')
  t.equal(lines.filter((l) => l.includes('JWKS reachable again')).length, 1, 'and its end, once')
  t.notOk(
    lines.some((l) => l.includes(sign(key, ADMIN).split('.')[2] as string)),
    'no token in any log line',
  )
})

t.test('a provider that never had the key: 401, not 500', async (t) => {
  const key = makeKey('RS256')
  const p = await provider(t, [])
  const { url } = await serve(t, jwksConfig(p.url))
  expectError(t, await stats(url, sign(key, ADMIN)), 401, 'SSE_ERR_INVALID_TOKEN', /not one of/)
  p.failWith = 404
  const other = makeKey('RS256')
  await sleep(10)
  const { url: url2 } = await serve(t, jwksConfig(p.url))
  expectError(t, await stats(url2, sign(other, ADMIN)), 401, 'SSE_ERR_INVALID_TOKEN', /could not be fetched/)
})

t.test('several key sets: a key from any of them works', async (t) => {
  const a = makeKey('RS256')
  const b = makeKey('EdDSA')
  const pa = await provider(t, [a])
  const pb = await provider(t, [b])
  const { url } = await serve(t, jwksConfig([pa.url, pb.url]))
  t.equal((await stats(url, sign(a, ADMIN))).status, 200)
  t.equal((await stats(url, sign(b, ADMIN))).status, 200)
  t.ok(pa.fetches >= 1 && pb.fetches >= 1)
})

t.test('issuer and audience lists, with keys from the key set', async (t) => {
  const key = makeKey('ES256')
  const p = await provider(t, [key])
  const { url } = await serve(
    t,
    jwksConfig(p.url, {
      JWT_ISSUER: 'https://idp-a.test/, https://idp-b.test/',
      JWT_AUDIENCE: 'sse-manager,account',
    }),
  )
  const token = (claims: Record<string, unknown>) => sign(key, { ...ADMIN, ...claims })
  t.equal((await stats(url, token({ iss: 'https://idp-a.test/', aud: 'sse-manager' }))).status, 200)
  t.equal((await stats(url, token({ iss: 'https://idp-b.test/', aud: ['other', 'account'] }))).status, 200)
  for (const claims of [
    { iss: 'https://idp-c.test/', aud: 'sse-manager' },
    { iss: 'https://idp-a.test/', aud: 'other' },
    { aud: 'sse-manager' },
    { iss: 'https://idp-a.test/' },
  ]) {
    expectError(t, await stats(url, token(claims)), 401, 'SSE_ERR_INVALID_TOKEN')
  }
})

t.test('JWKS configuration', async (t) => {
  const url = 'https://idp.example.com/realms/x/protocol/openid-connect/certs'
  const jwt = loadConfig({ JWT_JWKS_URL: url }).jwt
  t.same(
    jwt.jwks,
    { urls: [url], cacheMs: 600_000, cooldownMs: 30_000 },
    'defaults: 10 min cache, 30 s cooldown',
  )
  t.equal(jwt.secret, undefined)
  t.notOk(jwt.ephemeral)
  t.ok(jwt.algorithms.includes('RS256') && !jwt.algorithms.some((a) => a.startsWith('HS')), 'no HS*')
  const two = loadConfig({
    JWT_JWKS_URL: ` ${url} , https://login.example.com/tenant/discovery/v2.0/keys?appid=1`,
    JWT_JWKS_CACHE_MS: '60000',
    JWT_JWKS_COOLDOWN_MS: '5000',
    JWT_ALGORITHMS: 'RS256,ES256',
  }).jwt
  t.same(two.jwks, {
    urls: [url, 'https://login.example.com/tenant/discovery/v2.0/keys?appid=1'],
    cacheMs: 60_000,
    cooldownMs: 5000,
  })
  t.same(two.algorithms, ['RS256', 'ES256'])
  t.ok(
    loadConfig({ NODE_ENV: 'production', JWT_JWKS_URL: url, CORS_ORIGINS: 'https://app.test' }).jwt.jwks,
    'a key set is enough in production',
  )
  t.match(loadConfig({ JWT_SECRET: 'x'.repeat(32), JWT_ISSUER: 'a, b', JWT_AUDIENCE: 'c' }).jwt, {
    issuer: ['a', 'b'],
    audience: 'c',
  })

  const refuses = (env: Record<string, string>, variable: string, message: RegExp) =>
    t.throws(() => loadConfig(env), { name: 'ConfigError', variable, message }, `${variable}: ${message}`)
  refuses({ JWT_JWKS_URL: url, JWT_SECRET: 'x'.repeat(32) }, 'JWT_JWKS_URL', /not both/)
  refuses({ JWT_JWKS_URL: url, JWT_PUBLIC_KEY: makeKey('EdDSA').publicPem }, 'JWT_JWKS_URL', /not both/)
  refuses({ JWT_JWKS_URL: 'not a url' }, 'JWT_JWKS_URL', /not a URL/)
  refuses({ JWT_JWKS_URL: 'ftp://idp.example.com/keys' }, 'JWT_JWKS_URL', /https/)
  refuses({ JWT_JWKS_URL: 'https://user:pw@idp.example.com/keys' }, 'JWT_JWKS_URL', /credentials/)
  refuses({ JWT_JWKS_URL: 'https://idp.example.com/' }, 'JWT_JWKS_URL', /key set itself/)
  refuses({ JWT_JWKS_URL: ',' }, 'JWT_JWKS_URL', /no URL/)
  refuses({ JWT_JWKS_URL: url, JWT_ALGORITHMS: 'HS256' }, 'JWT_ALGORITHMS', /JWT_SECRET/)
  refuses({ JWT_JWKS_URL: url, JWT_ALGORITHMS: 'none' }, 'JWT_ALGORITHMS', /none/)
  refuses({ JWT_JWKS_URL: url, JWT_JWKS_CACHE_MS: '10' }, 'JWT_JWKS_CACHE_MS', /between/)
  refuses({ JWT_JWKS_URL: url, JWT_JWKS_COOLDOWN_MS: 'soon' }, 'JWT_JWKS_COOLDOWN_MS', /whole number/)
  refuses({ JWT_JWKS_URL: url, DEV_LOGIN: 'true' }, 'DEV_LOGIN', /JWT_JWKS_URL/)
  t.equal(loadConfig({ JWT_JWKS_URL: url }).devLogin, false, 'no dev login: nothing to sign with')
  refuses({ NODE_ENV: 'production', CORS_ORIGINS: 'https://a.test' }, 'JWT_SECRET', /JWT_JWKS_URL/)
})
