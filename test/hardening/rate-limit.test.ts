import t from 'tap'
import { openStream, PUBLISHER, post, serve } from '../helper.js'

t.test('publishing is rate limited per IP with 429 and retry-after', async (t) => {
  const { url } = await serve(t, { rateLimitPublish: 5, rateLimitWindowMs: 60_000 })
  const token = PUBLISHER()
  const statuses: number[] = []
  let limited: Awaited<ReturnType<typeof post>> | undefined
  for (let i = 0; i < 7; i++) {
    const res = await post(url, '/api/sse', { event: 'x', data: i, broadcast: true }, token)
    statuses.push(res.status)
    if (res.status === 429) limited = res
  }
  t.same(statuses, [202, 202, 202, 202, 202, 429, 429])
  t.match(limited?.body, { statusCode: 429, error: 'Too Many Requests', code: 'SSE_ERR_RATE_LIMITED' })
  t.ok(Number(limited?.headers['retry-after']) > 0, 'retry-after is set')
})

t.test('connection attempts are rate limited per IP', async (t) => {
  const { url, app } = await serve(t, { rateLimitConnect: 3, rateLimitWindowMs: 60_000 })
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) {
    const s = await openStream(url)
    statuses.push(s.status)
    if (s.status === 429) {
      t.match(s.body, { code: 'SSE_ERR_RATE_LIMITED' })
      t.ok(Number(s.headers['retry-after']) > 0)
    }
    s.close()
  }
  t.same(statuses, [200, 200, 200, 429, 429])
  t.ok(app.sse.size <= 3)
})

t.test('a limit of 0 turns the limiter off', async (t) => {
  const { url } = await serve(t, { rateLimitPublish: 0 })
  for (let i = 0; i < 20; i++) {
    const res = await post(url, '/api/sse', { event: 'x', data: i, broadcast: true }, PUBLISHER())
    if (res.status !== 202) t.fail(`request ${i}: ${res.status}`)
  }
  t.pass('20 publishes, none limited')
})
