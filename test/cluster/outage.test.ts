import { createClient } from 'redis'
import t from 'tap'
import {
  freePort,
  OwnRedis,
  redisServerAvailable,
  skipWithoutRedis,
  TEST_REDIS_URL,
  uniquePrefix,
} from '../bus/redis.js'
import {
  ADMIN,
  eventually,
  expectError,
  get,
  memoryLogger,
  mint,
  openStream,
  PUBLISHER,
  post,
  serve,
} from '../helper.js'
import { instances, publish, published } from './helper.js'

const noServer = (await redisServerAvailable())
  ? false
  : 'redis-server is not installed (apt-get install -y redis-server)'
const noRedis = await skipWithoutRedis()

t.test('Redis stopped and restarted under two instances', { skip: noServer, timeout: 60_000 }, async (t) => {
  const redis = new OwnRedis(await freePort())
  await redis.start()
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix(t, redis.url)
  const logA = memoryLogger('info')
  const overrides = {
    redisUrl: redis.url,
    redisPrefix: prefix,
    statsReportIntervalMs: 200,
    heartbeatIntervalMs: 100,
    redisConnectTimeoutMs: 3000,
  }
  const a = await serve(t, overrides, logA.logger)
  const b = await serve(t, overrides)
  const anon = await openStream(a.url)
  const alice = await openStream(b.url, { token: mint('alice') })
  await anon.waitFor((e) => e.event === 'connected')
  await alice.waitFor((e) => e.event === 'connected')
  for (const s of [a, b]) t.same((await get(s.url, '/ready')).body, { status: 'ready', bus: 'redis' })

  const before = await publish(a.url, { event: 'before', data: 1, broadcast: true })
  await anon.waitFor((e) => e.id === before.id)
  await alice.waitFor((e) => e.id === before.id)

  await redis.stop('SIGKILL')

  for (const s of [a, b]) {
    let ready = await get(s.url, '/ready')
    t.ok(
      await eventually(async () => {
        ready = await get(s.url, '/ready')
        return ready.status === 503
      }, 5000),
      '/ready goes 503',
    )
    t.match(ready.body, { status: 'unavailable', bus: 'redis', reason: /redis/i }, 'and says why')
    t.same((await get(s.url, '/health')).body, { status: 'ok' }, '/health stays about the process')
    const refused = await post(s.url, '/api/sse', { event: 'during', data: 1, broadcast: true }, PUBLISHER())
    expectError(t, refused, 503, 'SSE_ERR_BUS_UNAVAILABLE', /redis unavailable/)
    const stats = await get(s.url, '/api/sse/stats', ADMIN())
    t.equal(stats.status, 503, 'stats cannot answer for the deployment')
    const disconnect = await post(s.url, '/api/sse/disconnect-all', undefined, ADMIN())
    t.equal(disconnect.status, 503, 'disconnect-all cannot reach the other instances')
  }
  // Open streams stay open and keep getting heartbeats.
  const beats = anon.named('heartbeat').length
  await anon.waitForCount('heartbeat', beats + 3)
  await alice.waitForCount('heartbeat', alice.named('heartbeat').length + 3)
  t.notOk(anon.ended || alice.ended, 'streams stayed open through the outage')

  await redis.start()
  for (const s of [a, b]) {
    t.ok(
      await eventually(async () => (await get(s.url, '/ready')).status === 200, 10_000),
      '/ready comes back',
    )
  }
  const after = await publish(b.url, { event: 'after', data: 2, broadcast: true })
  const mine = await publish(a.url, { event: 'mine', data: 3, userIds: ['alice'] })
  await anon.waitFor((e) => e.id === after.id)
  await alice.waitFor((e) => e.id === mine.id)
  t.same(
    published(anon).map((e) => e.event),
    ['before', 'after'],
    'before and after arrive once, nothing during',
  )
  t.same(
    published(alice).map((e) => e.event),
    ['before', 'after', 'mine'],
  )
  const lines = logA.lines.join('')
  t.equal(lines.split('redis is unavailable').length - 1, 1, 'the outage is logged once, not once per retry')
  t.equal(lines.split('redis is available again').length - 1, 1, 'the recovery is logged once')
  anon.close()
  alice.close()
})

t.test(
  'an instance whose reader loses its connection resumes from the last event it delivered',
  { skip: noRedis },
  async (t) => {
    const [a, b] = await instances(t, 2)
    if (!a || !b) throw new Error('two instances')
    const stream = await openStream(b.url)
    await stream.waitFor((e) => e.event === 'connected')
    const first = await publish(a.url, { event: 'tick', data: 0, broadcast: true })
    await stream.waitFor((e) => e.id === first.id)

    const admin = createClient({ url: TEST_REDIS_URL })
    admin.on('error', () => {})
    await admin.connect()
    t.teardown(() => admin.close())
    const name = `sse-manager:${b.app.cluster.instanceId}:reader`
    const list = await admin.clientList()
    const reader = list.find((c) => c.name === name)
    t.ok(reader, 'found the reader connection by its name')
    await admin.sendCommand(['CLIENT', 'KILL', 'ID', String(reader?.id)])

    // Published while B's reader reconnects: B must read them from where it stopped.
    const sent: string[] = [first.id]
    for (let i = 1; i <= 20; i++)
      sent.push((await publish(a.url, { event: 'tick', data: i, broadcast: true })).id)
    await stream.waitFor((e) => e.id === sent[sent.length - 1], 10_000)
    t.same(
      published(stream).map((e) => e.id),
      sent,
      'every event once, in order',
    )
    const again = (await admin.clientList()).find((c) => c.name === name)
    t.ok(again && again.id !== reader?.id, 'the reader reconnected')
    stream.close()
  },
)

t.test(
  'an instance starts without Redis, not ready, and becomes ready when Redis appears',
  { skip: noServer, timeout: 30_000 },
  async (t) => {
    const redis = new OwnRedis(await freePort())
    t.teardown(() => redis.stop())
    const { app, url } = await serve(t, {
      redisUrl: redis.url,
      redisPrefix: uniquePrefix(t, redis.url),
      redisConnectTimeoutMs: 200,
      statsReportIntervalMs: 200,
    })
    const ready = await get(url, '/ready')
    t.equal(ready.status, 503, 'not ready')
    t.same(ready.body, { status: 'unavailable', bus: 'redis', reason: 'redis unavailable' })
    t.equal((await get(url, '/health')).status, 200)
    const refused = await post(url, '/api/sse', { event: 'e', data: 1, broadcast: true }, PUBLISHER())
    expectError(t, refused, 503, 'SSE_ERR_BUS_UNAVAILABLE')
    const stream = await openStream(url, { token: mint('alice') })
    t.equal(stream.status, 200, 'streams are accepted (the local limits apply)')

    await redis.start()
    t.ok(
      await eventually(async () => (await get(url, '/ready')).status === 200, 10_000),
      'ready once Redis is up',
    )
    const sent = await publish(url, { event: 'e', data: 1, broadcast: true })
    await stream.waitFor((e) => e.id === sent.id)
    t.equal(sent.delivered, 1)
    t.ok(
      await eventually(async () => {
        const stats = (await get(url, '/api/sse/stats', ADMIN())).body as { users: { userId: string }[] }
        return stats.users.some((u) => u.userId === 'alice')
      }),
      'the connection made while Redis was down is counted once it is back',
    )
    t.equal(app.cluster.bus.kind, 'redis')
    stream.close()
  },
)
