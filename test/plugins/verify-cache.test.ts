// A publisher's repeated token is verified once, and never trusted past its expiry.
import t from 'tap'
import { expectError, mint, post, serve, sleep } from '../helper.js'

t.test('the verification cache never outlives the token', async (t) => {
  const { url } = await serve(t, { jwtVerifyCacheSize: 100 })
  const token = mint('publisher', { scopes: ['sse:publish'], expiresInMs: 2000 })
  const body = { event: 'e', data: 1, broadcast: true }
  for (let i = 0; i < 5; i++)
    t.equal((await post(url, '/api/sse', body, token)).status, 202, `request ${i + 1}`)
  await sleep(2600)
  expectError(t, await post(url, '/api/sse', body, token), 401, 'SSE_ERR_INVALID_TOKEN', /expired/)
  const tampered = `${token.slice(0, -4)}AAAA`
  expectError(t, await post(url, '/api/sse', body, tampered), 401, 'SSE_ERR_INVALID_TOKEN')
  const noScope = mint('publisher')
  expectError(t, await post(url, '/api/sse', body, noScope), 403, 'SSE_ERR_MISSING_SCOPE')
  expectError(t, await post(url, '/api/sse', body, noScope), 403, 'SSE_ERR_MISSING_SCOPE', /sse:publish/)
})
