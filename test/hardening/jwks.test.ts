// With JWT_JWKS_URL: every token that must never pass, on every route, and proof (requests
// counted at the servers) that a token never chooses where keys are fetched from.
import { createHmac, generateKeyPairSync } from 'node:crypto'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { memoryLogger, serve } from '../helper.js'
import { JwksProvider, jwksConfig, makeKey, type ProviderKey, sign } from '../plugins/jwks-provider.js'

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const nowSec = () => Math.floor(Date.now() / 1000)
const CLAIMS = () => ({ sub: 'mallory', scope: 'sse:publish sse:admin', exp: nowSec() + 3600 })

/** HS256 over any header and payload with any key bytes: what a library would refuse to make. */
function hmacToken(header: Record<string, unknown>, payload: Record<string, unknown>, key: string | null) {
  const input = `${b64(header)}.${b64(payload)}`
  return key === null
    ? `${input}.`
    : `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`
}

const ROUTES = [
  ['GET', '/api/sse'],
  ['POST', '/api/sse'],
  ['GET', '/api/sse/stats'],
  ['POST', '/api/sse/disconnect-all'],
] as const

async function refusedEverywhere(t: Test, url: string, token: string, label: string, reason?: RegExp) {
  for (const [method, path] of ROUTES) {
    const res = await request(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: method === 'POST' ? JSON.stringify({ event: 'x', data: 1, broadcast: true }) : undefined,
    })
    if (res.statusCode === 200) res.body.destroy() // a stream: it must not be, and must not hang the test
    const text = res.statusCode === 200 ? '{}' : await res.body.text()
    t.equal(res.statusCode, 401, `${label}: ${method} ${path} is 401`)
    t.match(String(res.headers['content-type']), /application\/json/, `${label}: no stream byte`)
    t.match(JSON.parse(text), { code: 'SSE_ERR_INVALID_TOKEN', ...(reason ? { message: reason } : {}) })
  }
}

t.test('tokens that must never pass with keys from a key set', async (t) => {
  const rsa = makeKey('RS256', { withAlg: false })
  const ec = makeKey('ES256')
  const enc = makeKey('RS256', { use: 'enc' })
  const hmacSecret = 'a-shared-secret-0123456789-abcdefghijklmnop'
  const oct = { kty: 'oct', kid: 'hmac', alg: 'HS256', k: Buffer.from(hmacSecret).toString('base64url') }
  const provider = await JwksProvider.start([rsa, ec, enc])
  provider.keys.push(oct)
  t.teardown(() => provider.stop())
  // Where an attacker would like the keys fetched from: it must never be asked.
  const evilKey = makeKey('RS256')
  const evil = await JwksProvider.start([evilKey], '/.well-known/jwks.json')
  t.teardown(() => evil.stop())

  const { logger, lines } = memoryLogger()
  const { url, app } = await serve(
    t,
    jwksConfig(provider.url, { JWT_JWKS_COOLDOWN_MS: '100', JWT_ISSUER: 'https://idp.test/' }),
    logger,
  )
  const iss = 'https://idp.test/'
  const good = sign(rsa, { ...CLAIMS(), iss })
  const ok = await request(`${url}/api/sse/stats`, { headers: { authorization: `Bearer ${good}` } })
  t.equal(ok.statusCode, 200, 'a good token passes')
  await ok.body.text()

  const cases: [string, string, RegExp?][] = [
    // Algorithm confusion: HMAC "signed" with what the service could know of the public key.
    [
      'HS256 signed with the public key PEM',
      hmacToken({ alg: 'HS256', kid: rsa.kid }, { ...CLAIMS(), iss }, rsa.publicPem),
      /algorithm/,
    ],
    [
      'HS256 signed with the JWK JSON',
      hmacToken({ alg: 'HS256', kid: rsa.kid }, { ...CLAIMS(), iss }, JSON.stringify(rsa.jwk)),
      /algorithm/,
    ],
    [
      'HS256 with a published oct key',
      hmacToken({ alg: 'HS256', kid: 'hmac' }, { ...CLAIMS(), iss }, hmacSecret),
      /algorithm/,
    ],
    ['RS256 naming the oct key', sign(evilKey, { ...CLAIMS(), iss }, { kid: 'hmac' })],
    ['alg none', hmacToken({ alg: 'none', kid: rsa.kid }, { ...CLAIMS(), iss }, null), /algorithm/],
    ['alg None', hmacToken({ alg: 'None', kid: rsa.kid }, { ...CLAIMS(), iss }, null), /algorithm/],
    ['no alg', hmacToken({ kid: rsa.kid }, { ...CLAIMS(), iss }, 'x'), /algorithm/],
    // Headers that point at a key of the token's choosing.
    ['jku to another server', sign(evilKey, { ...CLAIMS(), iss }, { header: { jku: evil.url } }), /jku/],
    [
      'jku with a real kid',
      sign(evilKey, { ...CLAIMS(), iss }, { kid: rsa.kid, header: { jku: evil.url } }),
      /jku/,
    ],
    [
      'x5u to another server',
      sign(evilKey, { ...CLAIMS(), iss }, { header: { x5u: `${evil.origin}/cert.pem` } }),
      /x5u/,
    ],
    [
      'an embedded jwk',
      sign(evilKey, { ...CLAIMS(), iss }, { kid: null, header: { jwk: evilKey.jwk } }),
      /jwk/,
    ],
    [
      'an embedded jwk with a real kid',
      sign(evilKey, { ...CLAIMS(), iss }, { kid: rsa.kid, header: { jwk: evilKey.jwk } }),
      /jwk/,
    ],
    [
      'an embedded x5c',
      sign(evilKey, { ...CLAIMS(), iss }, { header: { x5c: ['MIIBIjANBgkqhkiG9w0BAQEFAAOC'] } }),
      /x5c/,
    ],
    // An iss elsewhere: never where keys come from (and not the configured issuer).
    ['iss pointing to another server', sign(evilKey, { ...CLAIMS(), iss: `${evil.origin}/` })],
    // The key set's own keys, misused.
    ['a real kid, signed by another key', sign(evilKey, { ...CLAIMS(), iss }, { kid: rsa.kid }), /signature/],
    ['RS512 with an RS256 key', sign(rsa, { ...CLAIMS(), iss }, { algorithm: 'RS512' }), /algorithm/],
    [
      'PS256 with a key that allows RS256',
      sign(rsa, { ...CLAIMS(), iss }, { algorithm: 'PS256' }),
      /algorithm/,
    ],
    ['ES256 naming an RSA key', sign(ec, { ...CLAIMS(), iss }, { kid: rsa.kid }), /algorithm/],
    ['RS256 naming an ES256 key', sign(rsa, { ...CLAIMS(), iss }, { kid: ec.kid })],
    ['a key for encryption', sign(enc, { ...CLAIMS(), iss }), /not a signing key/],
    ['no kid', sign(rsa, { ...CLAIMS(), iss }, { kid: null }), /kid/],
    ['a numeric kid', sign(rsa, { ...CLAIMS(), iss }, { header: { kid: 7 } }), /kid/],
    ['a 300-character kid', sign(rsa, { ...CLAIMS(), iss }, { kid: 'k'.repeat(300) }), /kid/],
    [
      'an unknown crit header',
      sign(rsa, { ...CLAIMS(), iss }, { header: { crit: ['x-must'], 'x-must': 1 } }),
      /critical/,
    ],
    // Claims, as with any key.
    ['expired', sign(rsa, { ...CLAIMS(), iss, exp: nowSec() - 60 }), /expired/],
    ['not yet valid', sign(rsa, { ...CLAIMS(), iss, nbf: nowSec() + 600 }), /not valid yet/],
    ['no exp', sign(rsa, { sub: 'mallory', iss }, { expiresInMs: 0 }), /exp/],
    ['no sub', sign(rsa, { scope: 'sse:admin', iss }), /sub/],
    ['wrong iss', sign(rsa, { ...CLAIMS(), iss: 'https://other.test/' }), /issuer/],
    ['no iss', sign(rsa, CLAIMS()), /required claim/],
    [
      'a tampered payload',
      (() => {
        const [h, , s] = sign(rsa, { sub: 'alice', iss }).split('.')
        return `${h}.${b64({ ...CLAIMS(), iss })}.${s}`
      })(),
      /signature/,
    ],
    ['garbage', 'a.b.c', /malformed/],
  ]
  for (const [label, token, reason] of cases) {
    // Past the cooldown a refusal may have started, so that each case gets its own reason.
    await new Promise((r) => setTimeout(r, 120))
    await refusedEverywhere(t, url, token, label, reason)
  }
  t.equal(app.sse.size, 0, 'no stream was opened')
  t.equal(evil.requests.length, 0, 'the server a token pointed at was never asked for anything')
  t.ok(
    provider.requests.every((r) => r === new URL(provider.url).pathname),
    'the configured key set is the only URL ever fetched',
  )
  t.ok(
    provider.fetches <= 12,
    `few fetches for ${cases.length * ROUTES.length} refusals (${provider.fetches})`,
  )
  const signatures = cases.map(([, token]) => token.split('.')[2]).filter((s) => s && s.length > 10)
  t.notOk(
    lines.some((l) => signatures.some((s) => l.includes(s as string))),
    'no refused token appears in the log',
  )
})

t.test('a key set holding a key this service cannot use refuses it, and keeps serving', async (t) => {
  const weird = makeKey('RS256')
  const secp = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ format: 'jwk' })
  const broken: Record<string, unknown>[] = [
    { ...secp, kid: 'k1', alg: 'ES256K' },
    { kty: 'RSA', kid: 'k2', alg: 'RS256', n: 'AQAB', e: 'AQAB' },
    { kty: 'EC', kid: 'k3', crv: 'P-256', x: 'nope', y: 'nope' },
  ]
  const provider = await JwksProvider.start([weird])
  provider.keys.push(...broken)
  t.teardown(() => provider.stop())
  const { url } = await serve(t, jwksConfig(provider.url, { JWT_JWKS_COOLDOWN_MS: '100' }))
  const admin = () => sign(weird, { sub: 'op', scope: 'sse:admin' })
  const first = await request(`${url}/api/sse/stats`, { headers: { authorization: `Bearer ${admin()}` } })
  t.equal(first.statusCode, 200, 'the usable key works')
  await first.body.text()
  for (const jwk of broken) {
    await new Promise((r) => setTimeout(r, 120))
    const token = sign(weird as ProviderKey, CLAIMS(), { kid: jwk.kid as string })
    await refusedEverywhere(t, url, token, `an unusable ${String(jwk.kid)}`)
  }
  const res = await request(`${url}/api/sse/stats`, { headers: { authorization: `Bearer ${admin()}` } })
  t.equal(res.statusCode, 200, 'the usable key still works')
  await res.body.text()
})
