import t from 'tap'
import { skipWithoutRedis, TEST_REDIS_URL, uniquePrefix } from '../bus/redis.js'
import { ADMIN, eventually, get, mint, openStream, SECRET } from '../helper.js'
import { publish, published, startServer as start } from './helper.js'

const skip = await skipWithoutRedis()

t.test('two real processes on one Redis, talking over HTTP', { skip, timeout: 60_000 }, async (t) => {
  const prefix = uniquePrefix(t)
  const env = {
    REDIS_URL: TEST_REDIS_URL,
    REDIS_PREFIX: prefix,
    JWT_SECRET: SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    STATS_REPORT_INTERVAL_MS: '300',
    HEARTBEAT_INTERVAL_MS: '0',
  }
  const [one, two] = await Promise.all([start(t, env), start(t, env)])

  for (const p of [one, two]) {
    const ready = await get(p.url, '/ready')
    t.same([ready.status, ready.body], [200, { status: 'ready', bus: 'redis' }], `${p.url} is ready`)
  }
  const alice = await openStream(one.url, { token: mint('alice') })
  const anon = await openStream(two.url)
  await alice.waitFor((e) => e.event === 'connected')
  await anon.waitFor((e) => e.event === 'connected')

  const everyone = await publish(two.url, { event: 'everyone', data: { n: 1 }, broadcast: true })
  const mine = await publish(two.url, { event: 'mine', data: { n: 2 }, userIds: ['alice'] })
  const back = await publish(one.url, { event: 'everyone', data: { n: 3 }, broadcast: true })
  await alice.waitFor((e) => e.id === back.id)
  await anon.waitFor((e) => e.id === back.id)
  t.same(
    published(alice).map((e) => e.id),
    [everyone.id, mine.id, back.id],
    'alice (process one) gets both broadcasts and her own event, once each',
  )
  t.same(
    published(anon).map((e) => e.id),
    [everyone.id, back.id],
    'the anonymous stream (process two) gets the broadcasts only',
  )

  const both = await eventually(async () => {
    const stats = (await get(one.url, '/api/sse/stats', ADMIN())).body as { instances: unknown[] }
    return stats.instances.length === 2
  }, 5000)
  t.ok(both, 'stats list both processes')

  // A crash: no goodbye, no cleanup. It must leave the stats within a few seconds.
  two.child.kill('SIGKILL')
  await anon.waitForEnd()
  let stats: { instances: unknown[]; totalConnections: number } = { instances: [], totalConnections: -1 }
  const dropped = await eventually(async () => {
    stats = (await get(one.url, '/api/sse/stats', ADMIN())).body as typeof stats
    return stats.instances.length === 1
  }, 5000)
  t.ok(dropped, 'the killed process dropped out of the stats')
  t.equal(stats.totalConnections, 1)

  const exited = new Promise<number | null>((resolve) => one.child.once('exit', (code) => resolve(code)))
  one.child.kill('SIGTERM')
  await alice.waitForEnd(10_000)
  t.match(alice.named('disconnected')[0]?.json, { reason: 'server_shutdown' })
  t.equal(await exited, 0, 'a graceful stop exits 0')
  t.notMatch(one.output(), /redis:\/\/|JWT_SECRET|test-secret/, 'no secret or Redis URL in the logs')
})
