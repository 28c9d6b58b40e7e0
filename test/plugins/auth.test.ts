import { generateKeyPairSync } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { badTokens, build, expectError, mint, noneToken, SECRET } from '../helper.js'

async function stats(app: FastifyInstance, authorization?: string, query = '') {
  const res = await app.inject({
    method: 'GET',
    url: `/api/sse/stats${query}`,
    headers: authorization === undefined ? {} : { authorization },
  })
  return { status: res.statusCode, body: res.json(), headers: res.headers }
}

const bearer = (token: string) => `Bearer ${token}`

function keyPair(type: 'rsa' | 'ec' | 'ed25519') {
  const pair =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519')
  return {
    publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  }
}

function signWith(key: string, algorithm: string, payload: Record<string, unknown>): string {
  const sign = createSigner({
    key,
    algorithm: algorithm as 'RS256',
    expiresIn: 3_600_000,
  })
  return sign(payload)
}

t.test('a good token with the scope passes', async (t) => {
  const app = await build(t)
  const res = await stats(app, bearer(mint('op', { scopes: ['sse:admin'] })))
  t.equal(res.status, 200)
})

t.test('every kind of bad token is 401 and the answer never echoes it', async (t) => {
  const app = await build(t)
  const reasons: Record<string, RegExp> = {
    expired: /expired/,
    'wrong algorithm (HS512)': /algorithm/,
    'alg none': /algorithm|not signed|malformed/,
    'bad signature': /signature/,
    'no exp': /required claim/,
    'no sub': /required claim|sub/,
    garbage: /malformed/,
  }
  for (const [what, token] of Object.entries(badTokens('op'))) {
    const res = await stats(app, bearer(token))
    t.test(what, async (t) => {
      expectError(t, res, 401, 'SSE_ERR_INVALID_TOKEN', reasons[what])
      t.notOk(JSON.stringify(res.body).includes(token), 'the token is not echoed')
    })
  }
})

t.test('a bad token with the right scope is still refused', async (t) => {
  const app = await build(t)
  const scoped = { scopes: ['sse:admin'] }
  for (const token of [
    mint('op', { ...scoped, expiresInMs: -1000 }),
    mint('op', { ...scoped, algorithm: 'HS512' }),
    mint('op', { ...scoped, secret: `${SECRET}-other` }),
    noneToken('op', { scope: 'sse:admin' }),
  ]) {
    expectError(t, await stats(app, bearer(token)), 401, 'SSE_ERR_INVALID_TOKEN')
  }
})

t.test('subject rules', async (t) => {
  const app = await build(t)
  expectError(
    t,
    await stats(app, bearer(mint('x'.repeat(257), { scopes: ['sse:admin'] }))),
    401,
    'SSE_ERR_INVALID_TOKEN',
    /sub/,
  )
  expectError(
    t,
    await stats(app, bearer(mint(undefined, { scopes: ['sse:admin'], claims: { sub: 42 } }))),
    401,
    'SSE_ERR_INVALID_TOKEN',
  )
  expectError(t, await stats(app, bearer(mint('', { scopes: ['sse:admin'] }))), 401, 'SSE_ERR_INVALID_TOKEN')
  t.equal(
    (await stats(app, bearer(mint('x'.repeat(256), { scopes: ['sse:admin'] })))).status,
    200,
    '256 characters is fine',
  )
})

t.test('a token that is not valid yet is refused', async (t) => {
  const app = await build(t)
  const nbf = Math.floor(Date.now() / 1000) + 600
  const res = await stats(app, bearer(mint('op', { scopes: ['sse:admin'], claims: { nbf } })))
  expectError(t, res, 401, 'SSE_ERR_INVALID_TOKEN', /not valid yet/)
})

t.test('a token with an unknown critical header is refused', async (t) => {
  const app = await build(t)
  const sign = createSigner({
    key: SECRET,
    algorithm: 'HS256',
    expiresIn: 60_000,
    header: { alg: 'HS256', crit: ['x-unknown'] },
  })
  const res = await stats(app, bearer(sign({ sub: 'op', scope: 'sse:admin' })))
  expectError(t, res, 401, 'SSE_ERR_INVALID_TOKEN')
})

t.test('the Authorization header must be "Bearer <jwt>"', async (t) => {
  const app = await build(t)
  const token = mint('op', { scopes: ['sse:admin'] })
  for (const header of [
    `Basic ${Buffer.from('a:b').toString('base64')}`,
    'Bearer',
    `Bearer  ${token}`,
    `Bearer ${token} x`,
    token,
    '',
  ]) {
    expectError(t, await stats(app, header), 401, 'SSE_ERR_INVALID_TOKEN', /Bearer/)
  }
})

t.test('no token is 401 token required; a token without the scope is 403', async (t) => {
  const app = await build(t)
  expectError(t, await stats(app), 401, 'SSE_ERR_TOKEN_REQUIRED', /sse:admin/)
  expectError(t, await stats(app, bearer(mint('op'))), 403, 'SSE_ERR_MISSING_SCOPE', /sse:admin/)
  expectError(
    t,
    await stats(app, bearer(mint('op', { scopes: ['sse:publish'] }))),
    403,
    'SSE_ERR_MISSING_SCOPE',
  )
})

t.test('admin and publish routes do not take a token from the query string', async (t) => {
  const app = await build(t)
  const token = mint('op', { scopes: ['sse:admin', 'sse:publish'] })
  expectError(t, await stats(app, undefined, `?token=${token}`), 401, 'SSE_ERR_TOKEN_REQUIRED')
  const res = await app.inject({
    method: 'POST',
    url: `/api/sse?token=${token}`,
    payload: { event: 'x', data: 1, broadcast: true },
  })
  expectError(t, { status: res.statusCode, body: res.json() }, 401, 'SSE_ERR_TOKEN_REQUIRED')
})

t.test('scope: a space-separated string, an array, or scp', async (t) => {
  const app = await build(t)
  const ok = [
    mint('op', { claims: { scope: 'sse:admin' } }),
    mint('op', { claims: { scope: 'openid sse:publish sse:admin profile' } }),
    mint('op', { claims: { scope: ['sse:admin'] } }),
    mint('op', { claims: { scope: ['other', 'sse:admin'] } }),
    mint('op', { claims: { scp: 'sse:admin' } }),
    mint('op', { claims: { scp: ['sse:admin'] } }),
  ]
  for (const token of ok) t.equal((await stats(app, bearer(token))).status, 200)
  const forbidden = [
    mint('op', { claims: { scope: 'sse:admins' } }),
    mint('op', { claims: { scope: 'sse:admin-lite' } }),
    mint('op', { claims: { scope: 'sse:publish,sse:admin' } }),
    mint('op', { claims: { scope: ['sse:admin sse:publish'] } }),
    mint('op', { claims: { scope: 'SSE:ADMIN' } }),
    mint('op', { claims: { scope: { 'sse:admin': true } } }),
    mint('op', { claims: { scope: 42 } }),
    mint('op', { claims: { scope: '' } }),
  ]
  for (const token of forbidden) expectError(t, await stats(app, bearer(token)), 403, 'SSE_ERR_MISSING_SCOPE')
})

t.test('issuer and audience are checked when configured', async (t) => {
  const jwt = loadConfig({
    JWT_SECRET: SECRET,
    JWT_ISSUER: 'https://issuer.test',
    JWT_AUDIENCE: 'sse-manager',
  }).jwt
  const app = await build(t, { jwt })
  const scope = { scope: 'sse:admin' }
  const good = mint('op', { claims: { ...scope, iss: 'https://issuer.test', aud: 'sse-manager' } })
  t.equal((await stats(app, bearer(good))).status, 200)
  const withAudList = mint('op', {
    claims: { ...scope, iss: 'https://issuer.test', aud: ['other', 'sse-manager'] },
  })
  t.equal((await stats(app, bearer(withAudList))).status, 200, 'aud may be a list that holds ours')
  const bad = {
    'wrong issuer': mint('op', { claims: { ...scope, iss: 'https://evil.test', aud: 'sse-manager' } }),
    'wrong audience': mint('op', { claims: { ...scope, iss: 'https://issuer.test', aud: 'other' } }),
    'no issuer': mint('op', { claims: { ...scope, aud: 'sse-manager' } }),
    'no audience': mint('op', { claims: { ...scope, iss: 'https://issuer.test' } }),
  }
  for (const [what, token] of Object.entries(bad)) {
    const res = await stats(app, bearer(token))
    t.test(what, async (t) => expectError(t, res, 401, 'SSE_ERR_INVALID_TOKEN'))
  }
})

t.test('public keys: the pinned algorithm passes, algorithm confusion fails', async (t) => {
  const rsa = keyPair('rsa')
  const app = await build(t, { jwt: loadConfig({ JWT_PUBLIC_KEY: rsa.publicPem }).jwt })
  const payload = { sub: 'op', scope: 'sse:admin' }
  t.equal(
    (await stats(app, bearer(signWith(rsa.privatePem, 'RS256', payload)))).status,
    200,
    'RS256 signed by the key',
  )
  // The classic confusion: HMAC "signed" with the public key text as the secret.
  const confused = createSigner({ key: rsa.publicPem, algorithm: 'HS256', expiresIn: 60_000 })(payload)
  expectError(t, await stats(app, bearer(confused)), 401, 'SSE_ERR_INVALID_TOKEN')
  expectError(
    t,
    await stats(app, bearer(mint('op', { scopes: ['sse:admin'] }))),
    401,
    'SSE_ERR_INVALID_TOKEN',
  )
  const otherRsa = keyPair('rsa')
  expectError(
    t,
    await stats(app, bearer(signWith(otherRsa.privatePem, 'RS256', payload))),
    401,
    'SSE_ERR_INVALID_TOKEN',
    /signature/,
  )
  expectError(
    t,
    await stats(app, bearer(signWith(rsa.privatePem, 'RS512', payload))),
    401,
    'SSE_ERR_INVALID_TOKEN',
    /algorithm/,
  )
  expectError(
    t,
    await stats(app, bearer(noneToken('op', { scope: 'sse:admin' }))),
    401,
    'SSE_ERR_INVALID_TOKEN',
  )
})

t.test('ES256 and EdDSA keys work', async (t) => {
  for (const [type, alg] of [
    ['ec', 'ES256'],
    ['ed25519', 'EdDSA'],
  ] as const) {
    const pair = keyPair(type)
    const app = await build(t, { jwt: loadConfig({ JWT_PUBLIC_KEY: pair.publicPem }).jwt })
    const res = await stats(app, bearer(signWith(pair.privatePem, alg, { sub: 'op', scope: 'sse:admin' })))
    t.equal(res.status, 200, alg)
  }
})

t.test('mintToken signs tokens the service accepts', async (t) => {
  const app = await build(t)
  const token = app.mintToken({ sub: 'dev', scopes: ['sse:publish', 'sse:admin'], expiresInSeconds: 60 })
  t.equal((await stats(app, bearer(token))).status, 200)
  const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Record<
    string,
    unknown
  >
  t.match(claims, { sub: 'dev', scope: 'sse:publish sse:admin' })
  t.equal((claims.exp as number) - (claims.iat as number), 60)
  const plain = app.mintToken({ sub: 'dev', expiresInSeconds: 0.2 })
  const plainClaims = JSON.parse(Buffer.from(plain.split('.')[1] ?? '', 'base64url').toString()) as Record<
    string,
    unknown
  >
  t.equal(plainClaims.scope, undefined, 'no scope claim without scopes')
  t.equal((plainClaims.exp as number) - (plainClaims.iat as number), 1, 'at least one second')
})
