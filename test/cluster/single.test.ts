import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'
import { ADMIN, get, mint, openStream, serve } from '../helper.js'
import { publish, published } from './helper.js'

t.test('without REDIS_URL: one process, in memory, as before', async (t) => {
  const { app, url } = await serve(t)
  t.equal(app.cluster.bus.kind, 'memory')
  t.same((await get(url, '/ready')).body, { status: 'ready', bus: 'memory' })
  const alice1 = await openStream(url, { token: mint('alice') })
  const alice2 = await openStream(url, { token: mint('alice') })
  const anon = await openStream(url)
  for (const s of [alice1, alice2, anon]) await s.waitFor((e) => e.event === 'connected')

  const all = await publish(url, { event: 'x', data: 1, broadcast: true })
  t.equal(all.delivered, 3, 'delivered is the real local count')
  const mine = await publish(url, { event: 'y', data: 2, userIds: ['alice'] })
  t.equal(mine.delivered, 2)
  const note = await app.cluster.sendNotification('alice', 'T', 'M')
  t.equal(note.delivered, 2)
  await alice2.waitFor((e) => e.id === note.id)
  await anon.waitFor((e) => e.id === all.id)
  t.same(
    published(alice2).map((e) => e.event),
    ['x', 'y', 'notification'],
  )
  t.same(
    published(anon).map((e) => e.event),
    ['x'],
  )

  const stats = (await get(url, '/api/sse/stats', ADMIN())).body as Record<string, unknown>
  t.match(stats, {
    totalConnections: 3,
    uniqueUsers: 1,
    eventsPublished: 3,
    instanceId: app.cluster.instanceId,
    instances: [{ instanceId: app.cluster.instanceId, connections: 3, reportedAt: String }],
  })
  t.equal(app.sse.instanceId, app.cluster.instanceId, 'one instance id for the manager and the cluster')

  const reconnect = await openStream(url, { token: mint('alice'), headers: { 'last-event-id': all.id } })
  t.match((await reconnect.waitFor((e) => e.event === 'connected')).json, { recovered: true, replayed: 2 })
  for (const s of [alice1, alice2, anon, reconnect]) s.close()
})

function refusedVariable(env: Record<string, string>): string | undefined {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.variable
    throw err
  }
  return undefined
}

t.test('REDIS_URL and REDIS_PREFIX are validated', async (t) => {
  const base = { NODE_ENV: 'test', JWT_SECRET: 'x'.repeat(32) }
  const config = loadConfig(base)
  t.equal(config.redisUrl, null, 'no Redis by default')
  t.equal(config.redisPrefix, 'sse:')
  t.equal(config.statsReportIntervalMs, 2000)
  t.equal(loadConfig({ ...base, REDIS_URL: 'redis://127.0.0.1:6379' }).redisUrl, 'redis://127.0.0.1:6379')
  t.equal(loadConfig({ ...base, REDIS_URL: 'rediss://user:pw@redis.example.com:6380/2' }).redisPrefix, 'sse:')
  t.equal(loadConfig({ ...base, REDIS_PREFIX: 'app1:sse:' }).redisPrefix, 'app1:sse:')
  t.equal(refusedVariable({ ...base, REDIS_URL: 'http://127.0.0.1:6379' }), 'REDIS_URL')
  t.equal(refusedVariable({ ...base, REDIS_URL: 'not a url' }), 'REDIS_URL')
  t.equal(refusedVariable({ ...base, REDIS_PREFIX: 'has space' }), 'REDIS_PREFIX')
  t.equal(refusedVariable({ ...base, REDIS_PREFIX: 'glob*' }), 'REDIS_PREFIX')
  t.equal(refusedVariable({ ...base, STATS_REPORT_INTERVAL_MS: '10' }), 'STATS_REPORT_INTERVAL_MS')
})
