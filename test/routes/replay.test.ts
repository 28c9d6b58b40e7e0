import net from 'node:net'
import t from 'tap'
import { mint, openStream, PUBLISHER, post, serve, sleep } from '../helper.js'

async function publish(url: string, body: Record<string, unknown>): Promise<string> {
  const res = await post(url, '/api/sse', body, PUBLISHER())
  if (res.status !== 202) throw new Error(`publish failed: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.id as string
}

t.test(
  'a reconnect with Last-Event-ID gets exactly what it missed, in order, and only what it is entitled to',
  async (t) => {
    const { url } = await serve(t)
    const alice = mint('alice')
    const first = await openStream(url, { token: alice })
    const connected = await first.waitFor((e) => e.event === 'connected')
    const seen = await publish(url, { event: 'tick', data: { n: 0 }, broadcast: true })
    await first.waitFor((e) => e.event === 'tick')
    first.close()

    // Missed while away: a mix of targets.
    const b1 = await publish(url, { event: 'tick', data: { n: 1 }, broadcast: true })
    const a1 = await publish(url, { event: 'mine', data: { n: 2 }, userIds: ['alice'] })
    await publish(url, { event: 'theirs', data: { n: 3 }, userIds: ['bob'] })
    await publish(url, {
      event: 'old-conn',
      data: { n: 4 },
      clientIds: [(connected.json as { clientId: string }).clientId],
    })
    const b2 = await publish(url, { event: 'tick', data: { n: 5 }, broadcast: true })

    const again = await openStream(url, { token: alice, headers: { 'last-event-id': seen } })
    const hello = await again.waitFor((e) => e.event === 'connected')
    t.match(hello.json, { recovered: true, replayed: 3, lastEventId: b2 })
    await sleep(100)
    const replayed = again.events.filter((e) => e.event !== 'connected' && e.event !== 'heartbeat')
    t.same(
      replayed.map((e) => e.id),
      [b1, a1, b2],
      'broadcasts and own-user events, in order, once; never another user or another connection id',
    )
    t.same(
      replayed.map((e) => (e.json as { n: number }).n),
      [1, 2, 5],
    )

    // Live delivery continues after the replay, with no duplicate.
    const live = await publish(url, { event: 'tick', data: { n: 6 }, broadcast: true })
    await again.waitFor((e) => e.id === live)
    t.equal(again.events.filter((e) => e.id === live).length, 1)
    again.close()
  },
)

t.test(
  '?lastEventId= works for the first page load, and the connected event carries the latest id',
  async (t) => {
    const { url } = await serve(t)
    const id1 = await publish(url, { event: 'a', data: 1, broadcast: true })
    const id2 = await publish(url, { event: 'a', data: 2, broadcast: true })

    const fresh = await openStream(url)
    const c = await fresh.waitFor((e) => e.event === 'connected')
    t.match(c.json, { lastEventId: id2, recovered: false, replayed: 0 })
    t.equal(c.id, id2, 'the connected event sets the id a reconnect resumes from')
    t.match(fresh.text, /^retry: \d+\nevent: connected\nid: /, 'first bytes: retry, then event: connected')
    fresh.close()

    const resumed = await openStream(url, { query: { lastEventId: id1 } })
    const r = await resumed.waitFor((e) => e.event === 'connected')
    t.match(r.json, { recovered: true, replayed: 1 })
    const got = await resumed.waitFor((e) => e.event === 'a')
    t.equal(got.id, id2)
    resumed.close()
  },
)

t.test('a stale, unknown or malformed id gives recovered: false and no replay', async (t) => {
  const { url } = await serve(t, { historySize: 3 })
  const ids: string[] = []
  for (let i = 0; i < 6; i++) ids.push(await publish(url, { event: 'e', data: i, broadcast: true }))
  const cases: [string, string][] = [
    ['evicted', ids[0] as string],
    ['unknown but well formed', '1-0'],
    ['malformed', 'not-an-id'],
    ['huge', 'x'.repeat(8192)],
    ['injection', '1-1\r\nevent: admin'],
  ]
  for (const [name, id] of cases) {
    const s = await openStream(url, { headers: { 'last-event-id': id.replace(/[\r\n]/g, '') } })
    t.equal(s.status, 200, name)
    const c = await s.waitFor((e) => e.event === 'connected')
    t.match(c.json, { recovered: false, replayed: 0 }, name)
    await sleep(30)
    t.equal(s.named('e').length, 0, `${name}: nothing replayed`)
    s.close()
  }
  // The newest id in a short history still recovers.
  const s = await openStream(url, { headers: { 'last-event-id': ids[4] as string } })
  const c = await s.waitFor((e) => e.event === 'connected')
  t.match(c.json, { recovered: true, replayed: 1 })
  s.close()
})

t.test('events published while clients connect and replay arrive exactly once', async (t) => {
  const { url } = await serve(t)
  const start = await publish(url, { event: 'n', data: -1, broadcast: true })
  const publishing = (async () => {
    const ids: string[] = []
    for (let i = 0; i < 100; i++) ids.push(await publish(url, { event: 'n', data: i, broadcast: true }))
    return ids
  })()
  const streams = []
  for (let i = 0; i < 5; i++) {
    await sleep(5)
    streams.push(await openStream(url, { headers: { 'last-event-id': start } }))
  }
  const ids = await publishing
  for (const s of streams) {
    await s.waitFor((e) => e.id === ids[ids.length - 1])
    t.same(
      s.named('n').map((e) => e.id),
      ids,
      'every event after the resume point once, in order',
    )
    s.close()
  }
})

t.test('a burst of 1,000 events to one client arrives complete and in order', async (t) => {
  const { url, app } = await serve(t)
  const s = await openStream(url, { token: mint('burst') })
  await s.waitFor((e) => e.event === 'connected')
  for (let i = 0; i < 1000; i++) app.sse.sendToUsers('b', { i }, ['burst'])
  const got = await s.waitForCount('b', 1000)
  t.same(
    got.map((e) => (e.json as { i: number }).i),
    Array.from({ length: 1000 }, (_, i) => i),
  )
  s.close()
})

t.test('the connection lifetime closes streams with event: disconnected, reason lifetime', async (t) => {
  const { url } = await serve(t, { maxConnectionLifetimeMs: 1500 })
  const s = await openStream(url)
  await s.waitFor((e) => e.event === 'connected')
  await s.waitForEnd(5000)
  const d = s.named('disconnected')[0]
  t.match(d?.json, { reason: 'lifetime' })
})

t.test(
  'a stream opened with a token is closed when the token expires, and a reconnect loses nothing',
  async (t) => {
    const { url } = await serve(t)
    const s = await openStream(url, { token: mint('carol', { expiresInMs: 1500 }) })
    await s.waitFor((e) => e.event === 'connected')
    const before = await publish(url, { event: 'x', data: 1, userIds: ['carol'] })
    await s.waitFor((e) => e.id === before)
    await s.waitForEnd(5000)
    t.match(s.named('disconnected')[0]?.json, { reason: 'token_expired' })
    const missed = await publish(url, { event: 'x', data: 2, userIds: ['carol'] })
    const again = await openStream(url, { token: mint('carol'), headers: { 'last-event-id': before } })
    const got = await again.waitFor((e) => e.event === 'x')
    t.equal(got.id, missed)
    again.close()
  },
)

t.test('a paused client and a 10 MB burst: memory stays bounded, the others get everything', async (t) => {
  const maxBufferedBytes = 1024 * 1024
  const { url, app } = await serve(t, { maxBufferedBytes })
  const port = new URL(url).port
  // A client that sends its request and never reads.
  const paused = net.connect(Number(port), '127.0.0.1')
  paused.pause()
  paused.write('GET /api/sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n')
  const reader = await openStream(url)
  await reader.waitFor((e) => e.event === 'connected')
  await sleep(100)
  t.equal(app.sse.size, 2)

  const chunk = 'x'.repeat(10_000)
  const count = 1000 // 10 MB in all
  for (let i = 0; i < count; i++) {
    app.sse.broadcast('big', { i, chunk })
    // Paced so that a reading client never holds a megabyte unread; the paused one soon does.
    if (i % 10 === 9) await sleep(2)
  }
  await reader.waitForCount('big', count, 20_000)
  t.equal(reader.named('big').length, count)
  t.equal(app.sse.size, 1, 'the paused client was dropped')
  t.equal(app.sse.stats().slowClientsDisconnected, 1)
  paused.destroy()
  reader.close()
})
