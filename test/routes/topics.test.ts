// Topics over real HTTP: subscribing, authorization, publishing, live changes, replay and presence.
import t from 'tap'
import {
  ADMIN,
  expectError,
  get,
  mint,
  openStream,
  PUBLISHER,
  post,
  type Stream,
  serve,
  sleep,
} from '../helper.js'

const withTopics = (sub: string, topics: string[], scopes?: string[]) =>
  mint(sub, { claims: { topics }, ...(scopes ? { scopes } : {}) })

async function connected(stream: Stream) {
  const e = await stream.waitFor((x) => x.event === 'connected')
  return e.json as { clientId: string; topics: string[]; recovered: boolean; replayed: number }
}

const publishedNames = (s: Stream) =>
  s.events.filter(
    (e) => !['connected', 'heartbeat', 'disconnected', 'subscriptions', 'presence'].includes(e.event),
  )

t.test('subscribing: validation, limits and authorization come before any stream byte', async (t) => {
  const { url } = await serve(t, { publicTopics: ['public/**'], maxTopicsPerConnection: 3 })
  for (const bad of ['a//b', '/a', 'a b', 'x'.repeat(257), 'a*']) {
    const s = await openStream(url, { query: { topic: bad } })
    expectError(t, { status: s.status, body: s.body, headers: s.headers }, 400, 'SSE_ERR_INVALID_TOPIC')
  }
  const four = await fetch(`${url}/api/sse?topic=public/a&topic=public/b&topic=public/c&topic=public/d`)
  t.equal(four.status, 400, 'four topics with MAX_TOPICS_PER_CONNECTION=3: 400')
  t.equal(((await four.json()) as { code: string }).code, 'SSE_ERR_INVALID_TOPIC')

  const forbidden = await fetch(`${url}/api/sse?topic=public/a&topic=private/x`)
  t.equal(forbidden.status, 403)
  t.match(forbidden.headers.get('content-type'), /application\/json/, 'a JSON answer, not a stream')
  const body = (await forbidden.json()) as { code: string; message: string }
  t.equal(body.code, 'SSE_ERR_TOPIC_FORBIDDEN')
  t.match(body.message, /private\/x/, 'names the topic')

  const anon = await openStream(url, { query: { topic: 'public/news' } })
  t.same((await connected(anon)).topics, ['public/news'], 'anonymous may subscribe to PUBLIC_TOPICS')
  anon.close()

  const token = withTopics('alice', ['orders/*', 'users/{sub}/**'])
  const ok = await fetch(`${url}/api/sse?topic=orders/42&topic=users/alice/inbox`, {
    headers: { authorization: `Bearer ${token}` },
  })
  t.equal(ok.status, 200, "the token's topics claim allows its patterns, {sub} filled in")
  await ok.body?.cancel()
  const other = await fetch(`${url}/api/sse?topic=users/bob/inbox`, {
    headers: { authorization: `Bearer ${token}` },
  })
  t.equal(other.status, 403, "another user's topic is forbidden")
  await other.body?.cancel()
  const none = await fetch(`${url}/api/sse?topic=orders/42`)
  t.equal(none.status, 403, 'anonymous: only public topics')
  await none.body?.cancel()
})

t.test(
  'publishing to topics: alone, and as a union with users and connections, each connection once',
  async (t) => {
    const { url } = await serve(t, { publicTopics: ['**'], heartbeatIntervalMs: 0 })
    const a = await openStream(url, { token: mint('alice'), query: { topic: 'orders/1' } })
    const b = await openStream(url, { query: { topic: 'orders/2' } })
    const c = await openStream(url, { token: mint('carol') })
    const d = await openStream(url)
    const [ca, cb, cc] = [await connected(a), await connected(b), await connected(c)]
    await connected(d)
    t.same(ca.topics, ['orders/1'])
    t.same(cc.topics, [], 'no topics')

    const one = await post(url, '/api/sse', { event: 'order', data: 1, topics: ['orders/1'] }, PUBLISHER())
    t.same([one.status, one.body.delivered], [202, 1])
    const union = await post(
      url,
      '/api/sse',
      {
        event: 'order',
        data: 2,
        topics: ['orders/1', 'orders/2', 'orders/1'],
        userIds: ['alice', 'carol'],
        clientIds: [ca.clientId, cb.clientId, cc.clientId],
      },
      PUBLISHER(),
    )
    t.same(
      [union.status, union.body.delivered],
      [202, 3],
      'alice, the anonymous subscriber and carol, once each',
    )
    await a.waitForCount('order', 2)
    await b.waitForCount('order', 1)
    await c.waitForCount('order', 1)
    await sleep(100)
    t.same(
      publishedNames(a).map((e) => e.json),
      [1, 2],
      'alice: once each',
    )
    t.same(
      publishedNames(b).map((e) => e.json),
      [2],
    )
    t.same(
      publishedNames(c).map((e) => e.json),
      [2],
    )
    t.equal(publishedNames(d).length, 0, 'a stream with no topic gets nothing')

    const nobody = await post(
      url,
      '/api/sse',
      { event: 'order', data: 3, topics: ['orders/none'] },
      PUBLISHER(),
    )
    t.same([nobody.status, nobody.body.delivered], [202, 0])
    expectError(
      t,
      await post(url, '/api/sse', { event: 'e', data: 1, topics: ['a//b'] }, PUBLISHER()),
      400,
      'SSE_ERR_INVALID_TOPIC',
    )
    expectError(
      t,
      await post(url, '/api/sse', { event: 'e', data: 1, broadcast: true, topics: ['a'] }, PUBLISHER()),
      400,
      'SSE_ERR_INVALID_TARGET',
    )
    expectError(
      t,
      await post(url, '/api/sse', { event: 'e', data: 1, topics: [] }, PUBLISHER()),
      400,
      'SSE_ERR_INVALID_TARGET',
    )
    const tooMany = Array.from({ length: 1001 }, (_, i) => `t/${i}`)
    t.equal((await post(url, '/api/sse', { event: 'e', data: 1, topics: tooMany }, PUBLISHER())).status, 400)
    for (const reserved of ['subscriptions', 'presence']) {
      expectError(
        t,
        await post(url, '/api/sse', { event: reserved, data: 1, topics: ['orders/1'] }, PUBLISHER()),
        400,
        'SSE_ERR_RESERVED_EVENT',
      )
    }
    for (const s of [a, b, c, d]) s.close()
  },
)

t.test('live subscription changes: own connections, allowed topics, the limit, admin', async (t) => {
  const { url } = await serve(t, { maxTopicsPerConnection: 3, heartbeatIntervalMs: 0 })
  const aliceToken = withTopics('alice', ['room/*'])
  const a1 = await openStream(url, { token: aliceToken, query: { topic: 'room/1' } })
  const a2 = await openStream(url, { token: aliceToken })
  const bob = await openStream(url, { token: withTopics('bob', ['room/*']) })
  const [c1, c2, cb] = [await connected(a1), await connected(a2), await connected(bob)]

  const add = await post(url, '/api/sse/subscriptions', { userIds: ['alice'], add: ['room/2'] }, aliceToken)
  t.same([add.status, add.body], [200, { matched: 2 }], 'alice changes both of her connections')
  const e1 = await a1.waitFor((e) => e.event === 'subscriptions')
  t.same(e1.json, { topics: ['room/1', 'room/2'], added: ['room/2'], removed: [] })
  const e2 = await a2.waitFor((e) => e.event === 'subscriptions')
  t.same(e2.json, { topics: ['room/2'], added: ['room/2'], removed: [] })
  const sent = await post(url, '/api/sse', { event: 'msg', data: 'hi', topics: ['room/2'] }, PUBLISHER())
  t.equal(sent.body.delivered, 2, 'the new topic reaches both, without a reconnect')

  const rm = await post(
    url,
    '/api/sse/subscriptions',
    { clientIds: [c1.clientId], remove: ['room/1'] },
    aliceToken,
  )
  t.same(rm.body, { matched: 1 })
  t.equal(
    (await post(url, '/api/sse', { event: 'msg', data: 1, topics: ['room/1'] }, PUBLISHER())).body.delivered,
    0,
  )

  expectError(
    t,
    await post(url, '/api/sse/subscriptions', { userIds: ['bob'], add: ['room/3'] }, aliceToken),
    403,
    'SSE_ERR_NOT_OWN_CONNECTION',
  )
  expectError(
    t,
    await post(url, '/api/sse/subscriptions', { clientIds: [cb.clientId], add: ['room/3'] }, aliceToken),
    403,
    'SSE_ERR_NOT_OWN_CONNECTION',
  )
  expectError(
    t,
    await post(url, '/api/sse/subscriptions', { userIds: ['alice'], add: ['secret/1'] }, aliceToken),
    403,
    'SSE_ERR_TOPIC_FORBIDDEN',
  )
  expectError(
    t,
    await post(url, '/api/sse/subscriptions', { userIds: ['alice'] }, aliceToken),
    400,
    'SSE_ERR_INVALID_SUBSCRIPTIONS',
  )
  expectError(
    t,
    await post(url, '/api/sse/subscriptions', { add: ['room/1'] }, aliceToken),
    400,
    'SSE_ERR_INVALID_SUBSCRIPTIONS',
  )
  expectError(
    t,
    await post(url, '/api/sse/subscriptions', { userIds: ['alice'], add: ['bad topic'] }, aliceToken),
    400,
    'SSE_ERR_INVALID_TOPIC',
  )
  expectError(
    t,
    await post(url, '/api/sse/subscriptions', { userIds: ['alice'], add: ['room/1'] }),
    401,
    'SSE_ERR_TOKEN_REQUIRED',
  )

  // a2 has room/2; three more would make four.
  const over = await post(
    url,
    '/api/sse/subscriptions',
    { clientIds: [c2.clientId], add: ['room/3', 'room/4', 'room/5'] },
    aliceToken,
  )
  expectError(t, over, 409, 'SSE_ERR_TOO_MANY_TOPICS')
  t.equal(
    (await post(url, '/api/sse', { event: 'msg', data: 1, topics: ['room/3'] }, PUBLISHER())).body.delivered,
    0,
    'nothing changed',
  )

  const admin = await post(
    url,
    '/api/sse/subscriptions',
    { userIds: ['bob', 'nobody'], add: ['anything/at/all'] },
    ADMIN(),
  )
  t.same(admin.body, { matched: 1 }, 'an admin changes any connection, to any topic')
  await bob.waitFor((e) => e.event === 'subscriptions')
  const unknown = await post(
    url,
    '/api/sse/subscriptions',
    { clientIds: ['no-such-id'], add: ['room/1'] },
    aliceToken,
  )
  t.same(unknown.body, { matched: 0 }, 'an id that is not there matches nothing')
  for (const s of [a1, a2, bob]) s.close()
})

t.test('replay by topic: the topics of this connect, never another topic', async (t) => {
  const { url } = await serve(t, { publicTopics: ['**'], heartbeatIntervalMs: 0 })
  const first = await post(url, '/api/sse', { event: 'start', data: 0, broadcast: true }, PUBLISHER())
  const ids: Record<string, string> = {}
  for (const [name, target] of [
    ['a', { topics: ['a'] }],
    ['b', { topics: ['b'] }],
    ['all', { broadcast: true }],
    ['ab', { topics: ['a', 'b'] }],
  ] as const) {
    ids[name] = (await post(url, '/api/sse', { event: name, data: name, ...target }, PUBLISHER())).body.id
  }
  const s = await openStream(url, { query: { topic: 'a' }, headers: { 'last-event-id': first.body.id } })
  const c = await connected(s)
  t.match(c, { recovered: true, replayed: 3 })
  await s.waitForCount('ab', 1)
  t.same(
    publishedNames(s).map((e) => e.event),
    ['a', 'all', 'ab'],
    "topic a's events and the broadcast, in order; never b's",
  )
  s.close()
})

t.test('presence: counts and join/leave across tabs', async (t) => {
  const { url } = await serve(t, {
    presenceTopics: ['room/*'],
    heartbeatIntervalMs: 0,
    publicTopics: ['room/*'],
  })
  const watcher = await openStream(url, { query: { topic: 'room/1' } })
  await connected(watcher)
  const token = withTopics('alice', ['room/*'])
  const tab1 = await openStream(url, { token, query: { topic: 'room/1' } })
  await connected(tab1)
  const join = await watcher.waitFor((e) => e.event === 'presence')
  t.same(join.json, { topic: 'room/1', userId: 'alice', action: 'join', connections: 1 })
  t.ok(join.id, 'a presence event has an id, like any event')
  const tab2 = await openStream(url, { token, query: { topic: 'room/1' } })
  await connected(tab2)

  const presence = await get(url, `/api/sse/topics/${encodeURIComponent('room/1')}/presence`, ADMIN())
  t.same(presence.body, {
    topic: 'room/1',
    connections: 3,
    anonymous: 1,
    uniqueUsers: 1,
    users: [{ userId: 'alice', connections: 2 }],
  })
  const own = await get(url, `/api/sse/topics/room%2F1/presence`, token)
  t.equal(own.status, 200, 'a token whose patterns allow the topic')
  expectError(t, await get(url, `/api/sse/topics/other%2F1/presence`, token), 403, 'SSE_ERR_TOPIC_FORBIDDEN')
  expectError(t, await get(url, `/api/sse/topics/a%2F%2Fb/presence`, ADMIN()), 400, 'SSE_ERR_INVALID_TOPIC')
  expectError(t, await get(url, `/api/sse/topics/room%2F1/presence`), 401, 'SSE_ERR_TOKEN_REQUIRED')

  const stats = (await get(url, '/api/sse/stats', ADMIN())).body as { topics: number; topTopics: unknown[] }
  t.equal(stats.topics, 1)
  t.same(stats.topTopics, [{ topic: 'room/1', connections: 3 }])

  tab2.close()
  await sleep(200)
  t.equal(watcher.named('presence').length, 1, 'a second tab closing: no leave')
  tab1.close()
  const leave = await watcher.waitFor(
    (e) => e.event === 'presence' && (e.json as { action: string }).action === 'leave',
  )
  t.same(leave.json, { topic: 'room/1', userId: 'alice', action: 'leave', connections: 0 })
  t.same(
    watcher.named('presence').map((e) => (e.json as { action: string }).action),
    ['join', 'leave'],
    'one join, one leave',
  )

  const metrics = (await get(url, '/metrics')).body as string
  t.match(metrics, /sse_topics 1/)
  t.match(metrics, /sse_subscription_changes_total\{action="add"\} 3/)
  t.notMatch(metrics, /room\/1/, 'no per-topic label')
  watcher.close()
})
