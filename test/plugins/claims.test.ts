// Claim mapping: JWT_USER_CLAIM, JWT_SCOPE_CLAIM, JWT_TOPICS_CLAIM (names, dotted paths and
// URL-like names) and JWT_SCOPE_MAP, as the providers' tokens carry them.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import t from 'tap'
import type { ClaimsConfig } from '../../src/config/auth.js'
import { loadConfig } from '../../src/config.js'
import { claimAt, DEFAULT_CLAIMS, identityOf } from '../../src/plugins/claims.js'
import { build, expectError, mint, openStream, post, serve, testConfig } from '../helper.js'
import { JwksProvider, jwksConfig, makeKey, sign } from './jwks-provider.js'

const claimsFrom = (env: Record<string, string>): ClaimsConfig =>
  loadConfig({ JWT_SECRET: 'x'.repeat(32), ...env }).jwt.claims as ClaimsConfig

/** What authenticate makes of a bearer token, without a route in between. */
function authOf(app: FastifyInstance, token: string) {
  const request = { headers: { authorization: `Bearer ${token}` }, query: {} } as unknown as FastifyRequest
  return app.authenticate(request)
}

t.test('claimAt: names, dotted paths and URL-like names', async (t) => {
  const payload = {
    sub: 'u1',
    'https://example.com/roles': ['admin'],
    'https://example.com/app': { roles: ['nested-under-a-url'] },
    realm_access: { roles: ['backend'] },
    resource_access: { 'sse-manager': { roles: ['sse:publish'] } },
    'a.b': 'the literal name wins',
    a: { b: 'the path' },
    list: [{ x: 1 }],
  }
  t.equal(claimAt(payload, 'sub'), 'u1')
  t.same(claimAt(payload, 'https://example.com/roles'), ['admin'])
  t.same(claimAt(payload, 'https://example.com/app.roles'), ['nested-under-a-url'])
  t.same(claimAt(payload, 'realm_access.roles'), ['backend'])
  t.same(claimAt(payload, 'resource_access.sse-manager.roles'), ['sse:publish'])
  t.equal(claimAt(payload, 'a.b'), 'the literal name wins')
  t.equal(claimAt(payload, 'realm_access.missing'), undefined)
  t.equal(claimAt(payload, 'list.0.x'), undefined, 'arrays are not walked')
  t.equal(claimAt(payload, 'sub.length'), undefined, 'strings are not walked')
  for (const name of [
    '__proto__',
    'constructor',
    'toString',
    'realm_access.__proto__',
    'a.constructor.name',
  ]) {
    t.equal(claimAt(payload, name), undefined, `${name}: only the token's own claims`)
  }
  const poisoned = JSON.parse('{"__proto__": {"roles": ["sse:admin"]}, "sub": "x"}')
  t.same(claimAt(poisoned, '__proto__.roles'), ['sse:admin'], 'a claim named __proto__ is read as data')
  t.equal(claimAt(poisoned, 'roles'), undefined, 'and never becomes a prototype')
})

t.test('identityOf: user, scopes with the map, topics', async (t) => {
  t.same(identityOf({ sub: 'a', scope: 'sse:publish x' }, DEFAULT_CLAIMS), {
    userId: 'a',
    scopes: ['sse:publish', 'x'],
    topics: [],
  })
  t.same(identityOf({ sub: 'a', scp: ['sse:admin'] }, DEFAULT_CLAIMS).scopes, ['sse:admin'], 'scp as today')
  const mapped = claimsFrom({
    JWT_USER_CLAIM: 'https://example.com/uid',
    JWT_SCOPE_CLAIM: 'realm_access.roles',
    JWT_TOPICS_CLAIM: 'https://example.com/topics',
    JWT_SCOPE_MAP: 'admin=sse:admin, backend=sse:publish, owner=sse:admin, owner=sse:publish',
  })
  const identity = identityOf(
    {
      sub: 'ignored',
      'https://example.com/uid': 'user-42',
      realm_access: { roles: ['backend', 'offline_access'] },
      'https://example.com/topics': ['orders/*', 'bad pattern', 'users/{sub}/**'],
      scp: 'sse:admin',
    },
    mapped,
  )
  t.same(identity, {
    userId: 'user-42',
    scopes: ['backend', 'offline_access', 'sse:publish'],
    topics: ['orders/*', 'users/{sub}/**'],
  })
  t.same(
    identityOf({ 'https://example.com/uid': 'u', realm_access: { roles: ['owner'] } }, mapped).scopes,
    ['owner', 'sse:admin', 'sse:publish'],
    'a role named twice grants both',
  )
  t.same(
    identityOf({ 'https://example.com/uid': 'u', scope: 'sse:admin' }, mapped).scopes,
    [],
    'with another scope claim, scope and scp are not read',
  )
  t.same(
    identityOf(
      { 'https://example.com/uid': 'u', realm_access: { roles: ['constructor', 'toString'] } },
      mapped,
    ).scopes,
    ['constructor', 'toString'],
    'the map grants only what it names',
  )
  t.throws(() => identityOf({ sub: 'x' }, mapped), {
    code: 'SSE_ERR_INVALID_TOKEN',
    message: /https:\/\/example.com\/uid/,
  })
  t.throws(() => identityOf({ 'https://example.com/uid': 42 }, mapped), { code: 'SSE_ERR_INVALID_TOKEN' })
  t.throws(() => identityOf({ 'https://example.com/uid': '' }, mapped), { code: 'SSE_ERR_INVALID_TOKEN' })
  t.throws(() => identityOf({ 'https://example.com/uid': { id: 'x' } }, mapped), {
    code: 'SSE_ERR_INVALID_TOKEN',
  })
})

t.test('configuration of the claims', async (t) => {
  t.same(claimsFrom({}), { user: 'sub', scope: 'scope', topics: 'topics', scopeMap: {} }, 'defaults')
  const refuses = (env: Record<string, string>, variable: string) =>
    t.throws(() => claimsFrom(env), { name: 'ConfigError', variable }, `${variable}=${Object.values(env)[0]}`)
  refuses({ JWT_USER_CLAIM: 'a b' }, 'JWT_USER_CLAIM')
  refuses({ JWT_USER_CLAIM: '.sub' }, 'JWT_USER_CLAIM')
  refuses({ JWT_SCOPE_CLAIM: 'realm_access..roles' }, 'JWT_SCOPE_CLAIM')
  refuses({ JWT_TOPICS_CLAIM: 'topics.' }, 'JWT_TOPICS_CLAIM')
  refuses({ JWT_TOPICS_CLAIM: 'x'.repeat(257) }, 'JWT_TOPICS_CLAIM')
  refuses({ JWT_SCOPE_MAP: 'admin' }, 'JWT_SCOPE_MAP')
  refuses({ JWT_SCOPE_MAP: 'admin=sse:root' }, 'JWT_SCOPE_MAP')
  refuses({ JWT_SCOPE_MAP: '=sse:admin' }, 'JWT_SCOPE_MAP')
  refuses({ JWT_SCOPE_MAP: 'super admin=sse:admin' }, 'JWT_SCOPE_MAP')
  t.same(claimsFrom({ JWT_SCOPE_MAP: 'a=sse:admin,a=sse:admin,b=sse:publish' }).scopeMap, {
    a: ['sse:admin'],
    b: ['sse:publish'],
  })
  t.ok(Object.isFrozen(claimsFrom({ JWT_SCOPE_MAP: 'a=sse:admin' }).scopeMap))
})

t.test('a Keycloak-like token over the wire: the user and roles from their claims', async (t) => {
  const env = {
    JWT_USER_CLAIM: 'preferred_username',
    JWT_SCOPE_CLAIM: 'resource_access.sse-manager.roles',
    JWT_SCOPE_MAP: 'admin=sse:admin,backend=sse:publish',
  }
  const { url } = await serve(t, testConfig({}, env))
  const token = (roles: string[], extra: Record<string, unknown> = {}) =>
    mint(undefined, {
      claims: {
        sub: 'f:1234',
        preferred_username: 'alice',
        resource_access: { 'sse-manager': { roles } },
        ...extra,
      },
    })
  const s = await openStream(url, { token: token([]) })
  t.teardown(() => s.close())
  t.match(
    (await s.waitFor((e) => e.event === 'connected')).json,
    { userId: 'alice' },
    'the user id is the mapped claim',
  )
  const asserted = await openStream(url, { token: token([]), query: { userId: 'f:1234' } })
  t.equal(asserted.status, 403, 'userId must equal the mapped claim, not sub')

  const body = { event: 'x', data: 1, broadcast: true }
  t.equal((await post(url, '/api/sse', body, token(['backend']))).status, 202, 'backend publishes')
  expectError(t, await post(url, '/api/sse', body, token(['viewer'])), 403, 'SSE_ERR_MISSING_SCOPE')
  expectError(
    t,
    await post(url, '/api/sse', body, token([], { scope: 'sse:publish' })),
    403,
    'SSE_ERR_MISSING_SCOPE',
  )
  const stats = await post(url, '/api/sse/disconnect-all', undefined, token(['admin']))
  t.equal(stats.status, 200, 'admin is sse:admin')
  expectError(
    t,
    await post(url, '/api/sse', body, mint('alice', { scopes: ['sse:publish'] })),
    401,
    'SSE_ERR_INVALID_TOKEN',
    /preferred_username/,
  )
})

t.test('Auth0-like URL-named claims from a JWKS, and the topics claim', async (t) => {
  const key = makeKey('RS256')
  const p = await JwksProvider.start([key])
  t.teardown(() => p.stop())
  const app = await build(
    t,
    jwksConfig(p.url, {
      JWT_SCOPE_CLAIM: 'permissions',
      JWT_TOPICS_CLAIM: 'https://sse.example.com/topics',
      JWT_USER_CLAIM: 'https://example.com/user.id',
    }),
  )
  const token = sign(key, {
    sub: 'auth0|abc',
    permissions: ['sse:publish', 'read:things'],
    'https://sse.example.com/topics': 'orders/* chat/{sub}',
    'https://example.com/user': { id: 'u-7' },
  })
  t.match(await authOf(app, token), {
    userId: 'u-7',
    scopes: ['sse:publish', 'read:things'],
    topics: ['orders/*', 'chat/{sub}'],
  })
  const plain = await build(t, testConfig())
  t.match(
    await authOf(plain, mint('bob', { claims: { topics: ['news/**', 42, ''] } })),
    {
      userId: 'bob',
      topics: ['news/**'],
    },
    'the default topics claim, malformed entries dropped',
  )
})
