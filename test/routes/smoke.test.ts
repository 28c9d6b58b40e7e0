import t from 'tap'
import { ADMIN, openStream, PUBLISHER, post, serve } from '../helper.js'

t.test('a broadcast reaches a stream', async (t) => {
  const { url } = await serve(t)
  const s = await openStream(url)
  t.equal(s.status, 200)
  t.match(s.headers['content-type'], 'text/event-stream; charset=utf-8')
  const connected = await s.waitFor((e) => e.event === 'connected')
  t.match(connected.json, { anonymous: true, userId: null })
  const res = await post(url, '/api/sse', { event: 'hello', data: { a: 1 }, broadcast: true }, PUBLISHER())
  t.equal(res.status, 202)
  const hello = await s.waitFor((e) => e.event === 'hello')
  t.same(hello.json, { a: 1 })
  t.equal(hello.id, res.body.id)
  const dis = await post(url, '/api/sse/disconnect-all', undefined, ADMIN())
  t.same(dis.body, { disconnected: 1 })
  await s.waitForEnd()
  t.match(s.named('disconnected')[0]?.json, { reason: 'server_disconnect' })
})
