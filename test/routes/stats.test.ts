import t from 'tap'
import {
  ADMIN,
  eventually,
  expectError,
  get,
  mint,
  openStream,
  PUBLISHER,
  post,
  type Stream,
  serve,
} from '../helper.js'

interface Stats {
  totalConnections: number
  authenticatedConnections: number
  anonymousConnections: number
  uniqueUsers: number
  users: { userId: string; connections: number }[]
  eventsPublished: number
  eventsDelivered: number
  slowClientsDisconnected: number
  uptimeSeconds: number
  instanceId: string
  startedAt: string
}

t.test('stats need sse:admin', async (t) => {
  const { url } = await serve(t)
  expectError(t, await get(url, '/api/sse/stats'), 401, 'SSE_ERR_TOKEN_REQUIRED')
  expectError(t, await get(url, '/api/sse/stats', 'a.b.c'), 401, 'SSE_ERR_INVALID_TOKEN')
  expectError(t, await get(url, '/api/sse/stats', PUBLISHER()), 403, 'SSE_ERR_MISSING_SCOPE', /sse:admin/)
  expectError(t, await get(url, '/api/sse/stats', mint('op')), 403, 'SSE_ERR_MISSING_SCOPE')
  t.equal(
    (await get(url, '/api/sse/stats', mint('op', { claims: { scope: ['sse:admin'] } }))).status,
    200,
    'scope as an array',
  )
})

t.test('an idle server', async (t) => {
  const { url, app } = await serve(t)
  const res = await get(url, '/api/sse/stats', ADMIN())
  t.equal(res.status, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const stats = res.body as Stats
  // The fields issue 2 defines; later issues may add more (cluster-wide counts).
  for (const key of [
    'anonymousConnections',
    'authenticatedConnections',
    'eventsDelivered',
    'eventsPublished',
    'instanceId',
    'slowClientsDisconnected',
    'startedAt',
    'totalConnections',
    'uniqueUsers',
    'uptimeSeconds',
    'users',
  ]) {
    t.ok(Object.hasOwn(stats, key), key)
  }
  t.match(stats, {
    totalConnections: 0,
    authenticatedConnections: 0,
    anonymousConnections: 0,
    uniqueUsers: 0,
    users: [],
    eventsPublished: 0,
    eventsDelivered: 0,
    slowClientsDisconnected: 0,
  })
  t.ok(Number.isInteger(stats.uptimeSeconds) && stats.uptimeSeconds >= 0)
  t.equal(stats.instanceId, app.sse.instanceId)
  t.match(stats.instanceId, /\S/)
  t.equal(new Date(stats.startedAt).toISOString(), stats.startedAt)
})

t.test('counts connections, users and deliveries', async (t) => {
  const { url } = await serve(t)
  const streams: Stream[] = [
    await openStream(url, { token: mint('alice') }),
    await openStream(url, { token: mint('alice') }),
    await openStream(url, { query: { token: mint('bob') } }),
    await openStream(url),
  ]
  t.teardown(() => {
    for (const s of streams) s.close()
  })
  await Promise.all(streams.map((s) => s.waitFor((e) => e.event === 'connected')))
  await post(url, '/api/sse', { event: 'a', data: 1, broadcast: true }, PUBLISHER())
  await post(url, '/api/sse', { event: 'b', data: 1, userIds: ['alice'] }, PUBLISHER())
  await post(url, '/api/sse', { event: 'c', data: 1, userIds: ['nobody'] }, PUBLISHER())
  const stats = (await get(url, '/api/sse/stats', ADMIN())).body as Stats
  t.match(stats, {
    totalConnections: 4,
    authenticatedConnections: 3,
    anonymousConnections: 1,
    uniqueUsers: 2,
    eventsPublished: 3,
    eventsDelivered: 4 + 2,
    slowClientsDisconnected: 0,
  })
  t.same(stats.users, [
    { userId: 'alice', connections: 2 },
    { userId: 'bob', connections: 1 },
  ])

  streams[0]?.close()
  streams[3]?.close()
  t.ok(
    await eventually(
      async () => ((await get(url, '/api/sse/stats', ADMIN())).body as Stats).totalConnections === 2,
    ),
  )
  const after = (await get(url, '/api/sse/stats', ADMIN())).body as Stats
  t.match(after, { authenticatedConnections: 2, anonymousConnections: 0, uniqueUsers: 2 })
  t.same(after.users, [
    { userId: 'alice', connections: 1 },
    { userId: 'bob', connections: 1 },
  ])
})
