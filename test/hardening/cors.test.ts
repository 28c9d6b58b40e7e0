import t from 'tap'
import { request } from 'undici'
import { openStream, serve } from '../helper.js'

t.test('CORS: allowed origins only, on the stream response too; never Origin: null', async (t) => {
  const { url } = await serve(t, { corsOrigins: ['https://app.test'] })

  const allowed = await openStream(url, { headers: { origin: 'https://app.test' } })
  t.equal(allowed.status, 200)
  t.equal(
    allowed.headers['access-control-allow-origin'],
    'https://app.test',
    'the stream carries the CORS header',
  )
  t.equal(allowed.headers['access-control-allow-credentials'], 'true')
  allowed.close()

  for (const origin of ['https://evil.test', 'null', 'https://app.test.evil.test', 'http://app.test']) {
    const s = await openStream(url, { headers: { origin } })
    t.equal(s.headers['access-control-allow-origin'], undefined, `${origin}: no allow-origin`)
    s.close()
  }

  const preflight = await request(`${url}/api/sse`, {
    method: 'OPTIONS',
    headers: {
      origin: 'https://app.test',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type',
    },
  })
  await preflight.body.dump()
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.headers['access-control-allow-origin'], 'https://app.test')
  t.match(String(preflight.headers['access-control-allow-headers']), /authorization/)
})

t.test('CORS with *: any origin without credentials, still never Origin: null', async (t) => {
  const { url } = await serve(t, { corsOrigins: ['*'] })
  const s = await openStream(url, { headers: { origin: 'https://anywhere.test' } })
  t.equal(s.headers['access-control-allow-origin'], '*')
  t.equal(s.headers['access-control-allow-credentials'], undefined)
  s.close()
  const n = await openStream(url, { headers: { origin: 'null' } })
  t.equal(n.headers['access-control-allow-origin'], undefined)
  n.close()
})
