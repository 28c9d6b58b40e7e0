import t from 'tap'
import { ADMIN, expectError, get, mint, openStream, PUBLISHER, post, serve } from '../helper.js'

t.test('disconnect-all needs sse:admin', async (t) => {
  const { url, app } = await serve(t)
  const s = await openStream(url)
  t.teardown(() => s.close())
  await s.waitFor((e) => e.event === 'connected')
  expectError(t, await post(url, '/api/sse/disconnect-all', undefined), 401, 'SSE_ERR_TOKEN_REQUIRED')
  expectError(t, await post(url, '/api/sse/disconnect-all', undefined, 'a.b.c'), 401, 'SSE_ERR_INVALID_TOKEN')
  expectError(
    t,
    await post(url, '/api/sse/disconnect-all', undefined, PUBLISHER()),
    403,
    'SSE_ERR_MISSING_SCOPE',
    /sse:admin/,
  )
  t.equal(app.sse.size, 1, 'nobody was disconnected')
  t.notOk(s.ended)
})

t.test('every client gets disconnected and its response ends', async (t) => {
  const { url } = await serve(t)
  const streams = [
    await openStream(url),
    await openStream(url, { token: mint('alice') }),
    await openStream(url, { token: mint('alice') }),
    await openStream(url, { query: { token: mint('bob') } }),
  ]
  await Promise.all(streams.map((s) => s.waitFor((e) => e.event === 'connected')))
  const res = await post(url, '/api/sse/disconnect-all', undefined, ADMIN())
  t.equal(res.status, 200)
  t.same(res.body, { disconnected: 4 })
  for (const s of streams) {
    await s.waitForEnd()
    const last = s.events.at(-1)
    t.equal(last?.event, 'disconnected', 'disconnected is the last event')
    const data = last?.json as Record<string, string>
    t.same(Object.keys(data).sort(), ['message', 'reason', 'timestamp'])
    t.equal(data.reason, 'server_disconnect')
    t.equal(data.message, 'All clients have been disconnected by the server')
    t.equal(new Date(data.timestamp as string).toISOString(), data.timestamp)
    t.ok(s.ended, 'the response ended')
  }
  const stats = (await get(url, '/api/sse/stats', ADMIN())).body as { totalConnections: number }
  t.equal(stats.totalConnections, 0)
  t.same(
    (await post(url, '/api/sse/disconnect-all', undefined, ADMIN())).body,
    { disconnected: 0 },
    'again: nobody left',
  )

  const again = await openStream(url)
  t.equal(again.status, 200, 'new streams are welcome afterwards')
  again.close()
})

t.test('scope as an array; a JSON body is accepted too', async (t) => {
  const { url } = await serve(t)
  const res = await post(url, '/api/sse/disconnect-all', {}, mint('op', { claims: { scope: ['sse:admin'] } }))
  t.same(res.body, { disconnected: 0 })
})
