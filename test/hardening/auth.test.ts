import { spawnSync } from 'node:child_process'
import { createHmac, generateKeyPairSync } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { loadConfig } from '../../src/config.js'
import { memoryLogger, mint, openStream, post, SECRET, serve, testConfig } from '../helper.js'

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const nowSec = () => Math.floor(Date.now() / 1000)

/** Signs any header/payload by hand, to build tokens a library would refuse to make. */
function rawToken(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key: string | null,
): string {
  const input = `${b64(header)}.${b64(payload)}`
  if (key === null) return `${input}.`
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`
}

async function rawGet(url: string, path: string, headers: Record<string, string>) {
  const res = await request(`${url}${path}`, { headers })
  const text = await res.body.text()
  return { status: res.statusCode, contentType: String(res.headers['content-type']), text }
}

/** Every protected surface, with the answer a bad token must get. */
const PROTECTED = [
  ['POST', '/api/sse'],
  ['GET', '/api/sse/stats'],
  ['POST', '/api/sse/disconnect-all'],
] as const
const EVERYWHERE = [['GET', '/api/sse'], ...PROTECTED] as const

async function refusedEverywhere(
  t: Test,
  url: string,
  authorization: string,
  label: string,
  status = 401,
  routes: readonly (readonly ['GET' | 'POST', string])[] = EVERYWHERE,
) {
  for (const [method, path] of routes) {
    const res = await request(`${url}${path}`, {
      method,
      headers: { authorization, 'content-type': 'application/json' },
      body: method === 'POST' ? JSON.stringify({ event: 'x', data: 1, broadcast: true }) : undefined,
    })
    const text = await res.body.text()
    t.equal(res.statusCode, status, `${label}: ${method} ${path} is ${status}`)
    t.match(
      String(res.headers['content-type']),
      /application\/json/,
      `${label}: ${method} ${path} no stream byte`,
    )
    t.notMatch(text, /event:/)
  }
}

t.test('tokens that must never pass', async (t) => {
  const { url, app } = await serve(t)
  const payload = { sub: 'mallory', scope: 'sse:publish sse:admin', exp: nowSec() + 3600 }
  const cases: [string, string][] = [
    ['alg none', rawToken({ alg: 'none', typ: 'JWT' }, payload, null)],
    ['alg none with a signature', rawToken({ alg: 'none', typ: 'JWT' }, payload, SECRET)],
    [
      'no exp',
      rawToken({ alg: 'HS256', typ: 'JWT' }, { sub: 'mallory', scope: 'sse:publish sse:admin' }, SECRET),
    ],
    ['expired', mint('mallory', { scopes: ['sse:publish', 'sse:admin'], expiresInMs: -60_000 })],
    ['not yet valid', rawToken({ alg: 'HS256' }, { ...payload, nbf: nowSec() + 600 }, SECRET)],
    ['no sub', mint(undefined, { scopes: ['sse:publish', 'sse:admin'] })],
    ['empty sub', rawToken({ alg: 'HS256' }, { ...payload, sub: '' }, SECRET)],
    ['numeric sub', rawToken({ alg: 'HS256' }, { ...payload, sub: 42 }, SECRET)],
    [
      'wrong secret',
      mint('mallory', { scopes: ['sse:publish'], secret: 'another-secret-0123456789-abcdefghijkl' }),
    ],
    ['HS512 when only HS256 is allowed', mint('mallory', { scopes: ['sse:publish'], algorithm: 'HS512' })],
    [
      'unknown crit header',
      rawToken({ alg: 'HS256', crit: ['x-must-understand'], 'x-must-understand': 1 }, payload, SECRET),
    ],
    [
      'tampered payload',
      (() => {
        const good = mint('alice', { scopes: ['sse:publish'] })
        const [h, , s] = good.split('.')
        return `${h}.${b64({ ...payload })}.${s}`
      })(),
    ],
  ]
  for (const [label, token] of cases) await refusedEverywhere(t, url, `Bearer ${token}`, label)
  t.equal(app.sse.size, 0, 'no stream was opened')
})

t.test('malformed Authorization headers are 401, never anonymous', async (t) => {
  const { url } = await serve(t)
  const good = mint('alice', { scopes: ['sse:publish', 'sse:admin'] })
  for (const header of [
    'Bearer',
    'Bearer ',
    `Basic ${good}`,
    `Bearer ${good} extra`,
    `Bearer  ${good}`,
    'Bearer not-a-jwt',
    `Token ${good}`,
  ]) {
    const res = await rawGet(url, '/api/sse', { authorization: header })
    t.equal(res.status, 401, JSON.stringify(header.slice(0, 12)))
    t.match(res.contentType, /application\/json/)
  }
  // The scheme is case-insensitive (RFC 9110).
  const s = await openStream(url, { headers: { authorization: `bearer ${good}` } })
  t.equal(s.status, 200)
  s.close()
})

t.test(
  'with a public key configured, HS256 signed with that public key fails (algorithm confusion)',
  async (t) => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
    const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    const base = testConfig()
    const jwt = loadConfig({ NODE_ENV: 'test', JWT_PUBLIC_KEY: publicPem }).jwt
    t.same(jwt.algorithms, ['RS256'])
    const { url } = await serve(t, { jwt: { ...jwt, issuer: base.jwt.issuer } })
    const claims = { sub: 'mallory', scope: 'sse:publish sse:admin', exp: nowSec() + 3600 }
    await refusedEverywhere(
      t,
      url,
      `Bearer ${rawToken({ alg: 'HS256', typ: 'JWT' }, claims, publicPem)}`,
      'HS256 with the public key',
    )
    const good = createSigner({ key: privatePem, algorithm: 'RS256', expiresIn: 60_000 })({
      sub: 'alice',
      scope: 'sse:publish',
    })
    const res = await post(url, '/api/sse', { event: 'ok', data: 1, broadcast: true }, good)
    t.equal(res.status, 202, 'a real RS256 token works')
  },
)

t.test('issuer and audience are enforced when configured', async (t) => {
  const base = testConfig()
  const { url } = await serve(t, {
    jwt: { ...base.jwt, issuer: 'https://auth.test', audience: 'sse-manager' },
  })
  const sign = (claims: Record<string, unknown>) =>
    rawToken({ alg: 'HS256' }, { sub: 'alice', scope: 'sse:publish', exp: nowSec() + 600, ...claims }, SECRET)
  await refusedEverywhere(
    t,
    url,
    `Bearer ${sign({ iss: 'https://evil.test', aud: 'sse-manager' })}`,
    'wrong iss',
  )
  await refusedEverywhere(t, url, `Bearer ${sign({ iss: 'https://auth.test', aud: 'other' })}`, 'wrong aud')
  await refusedEverywhere(t, url, `Bearer ${sign({})}`, 'missing iss and aud')
  const ok = await post(
    url,
    '/api/sse',
    { event: 'x', data: 1, broadcast: true },
    sign({ iss: 'https://auth.test', aud: 'sse-manager' }),
  )
  t.equal(ok.status, 202)
})

t.test('the right user without the scope is 403 on publish, stats and disconnect-all', async (t) => {
  const { url } = await serve(t)
  for (const scopes of [[], ['sse:subscribe'], ['sse:publisher'], ['SSE:ADMIN']]) {
    await refusedEverywhere(
      t,
      url,
      `Bearer ${mint('alice', { scopes })}`,
      `scopes ${JSON.stringify(scopes)}`,
      403,
      PROTECTED,
    )
  }
  const publisher = mint('svc', { scopes: ['sse:publish'] })
  const stats = await rawGet(url, '/api/sse/stats', { authorization: `Bearer ${publisher}` })
  t.equal(stats.status, 403, 'publish scope is not admin')
  t.match(JSON.parse(stats.text), { code: 'SSE_ERR_MISSING_SCOPE' })
})

t.test('a whitespace-padded or short key stops startup, naming the variable', async (t) => {
  t.throws(() => loadConfig({ JWT_SECRET: ` ${SECRET}` }), /JWT_SECRET/)
  t.throws(() => loadConfig({ JWT_SECRET: `${SECRET}\n` }), /JWT_SECRET/)
  t.throws(() => loadConfig({ JWT_SECRET: 'short-secret' }), /JWT_SECRET/)
  t.throws(() => loadConfig({ JWT_PUBLIC_KEY: 'not a key' }), /JWT_PUBLIC_KEY/)
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: {
      ...process.env,
      JWT_SECRET: 'too-short',
      PORT: '0',
      NODE_ENV: 'production',
      CORS_ORIGINS: 'https://a.test',
    },
    encoding: 'utf8',
    timeout: 20_000,
  })
  t.equal(run.status, 1, 'the process exits 1')
  t.match(run.stderr, /JWT_SECRET/)
})

t.test('another user cannot be subscribed to, and replay never leaks', async (t) => {
  const { url, app } = await serve(t)
  const s = await openStream(url, { token: mint('alice'), query: { userId: 'bob' } })
  t.equal(s.status, 403)
  t.match(s.body, { code: 'SSE_ERR_USER_MISMATCH' })
  const first = app.sse.broadcast('b', 0).id
  app.sse.sendToUsers('secret', { for: 'bob' }, ['bob'])
  app.sse.sendToClients('secret', { for: 'a client' }, ['00000000-0000-4000-8000-000000000000'])
  const mine = app.sse.sendToUsers('mine', { for: 'alice' }, ['alice']).id
  const replay = await openStream(url, { token: mint('alice'), headers: { 'last-event-id': first } })
  await replay.waitFor((e) => e.id === mine)
  t.equal(replay.named('secret').length, 0)
  replay.close()
})

t.test("a token's value never appears in any log line", async (t) => {
  const { logger, lines } = memoryLogger('trace')
  const { url } = await serve(t, {}, logger)
  const token = mint('alice', { scopes: ['sse:publish', 'sse:admin'] })
  const bad = mint('alice', { expiresInMs: -1000 })
  const a = await openStream(url, { query: { token } })
  await a.waitFor((e) => e.event === 'connected')
  const b = await openStream(url, { token })
  await b.waitFor((e) => e.event === 'connected')
  const c = await openStream(url, { query: { token: bad } })
  t.equal(c.status, 401)
  await post(url, '/api/sse', { event: 'x', data: 1, broadcast: true }, token)
  await post(url, '/api/sse', { event: 'x', data: 1, broadcast: true }, bad)
  await rawGet(url, `/nope?token=${token}`, {})
  a.close()
  b.close()
  await new Promise((r) => setTimeout(r, 100))
  t.ok(lines.length > 5, `captured ${lines.length} log lines`)
  const signatures = [token, bad].map((tk) => tk.split('.')[2] as string)
  const leaked = lines.filter((l) => signatures.some((sig) => l.includes(sig)))
  t.same(leaked, [], 'no line carries a token')
  t.ok(
    lines.some((l) => l.includes('[REDACTED]')),
    'the query token is shown as redacted',
  )
})
