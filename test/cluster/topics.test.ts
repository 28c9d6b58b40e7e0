// Topics across instances on one Redis: replay after moving instance, admin changes on every
// instance, presence summed, and join/leave across tabs and instances, a killed one included.
import t from 'tap'
import { skipWithoutRedis, TEST_REDIS_URL, uniquePrefix } from '../bus/redis.js'
import { ADMIN, get, mint, openStream, PUBLISHER, post, SECRET, type Stream, sleep } from '../helper.js'
import { clientIdOf, instances, publish, published, startServer } from './helper.js'

const skip = await skipWithoutRedis()
const token = (sub: string) => mint(sub, { claims: { topics: ['room/*', 'orders/*'] } })

async function connected(s: Stream) {
  return (await s.waitFor((e) => e.event === 'connected')).json as { recovered: boolean; replayed: number }
}

t.test('topics across two instances', { skip }, async (t) => {
  const [one, two] = await instances(t, 2, { presenceTopics: ['room/*'] })
  if (one === undefined || two === undefined) throw new Error('two instances')

  t.test(
    'publishing on one reaches topic subscribers on the other; replay by topic after moving',
    async (t) => {
      const s = await openStream(one.url, { token: token('alice'), query: { topic: 'orders/1' } })
      await connected(s)
      const a = await publish(two.url, { event: 'order', data: 1, topics: ['orders/1'] })
      await s.waitFor((e) => e.id === a.id)
      s.close()
      const missedA = await publish(two.url, { event: 'order', data: 2, topics: ['orders/1'] })
      await publish(two.url, { event: 'other', data: 3, topics: ['orders/2'] })
      const missedB = await publish(one.url, { event: 'order', data: 4, topics: ['orders/1', 'orders/2'] })
      const back = await openStream(two.url, {
        token: token('alice'),
        query: { topic: 'orders/1' },
        headers: { 'last-event-id': a.id },
      })
      t.match(await connected(back), { recovered: true, replayed: 2 })
      await back.waitFor((e) => e.id === missedB.id)
      t.same(
        published(back)
          .filter((e) => e.event !== 'presence')
          .map((e) => e.id),
        [missedA.id, missedB.id],
        "on the other instance: orders/1's events, never orders/2's",
      )
      back.close()
    },
  )

  t.test('an admin changes subscriptions on every instance; matched sums them', async (t) => {
    const s1 = await openStream(one.url, { token: token('bob') })
    const s2 = await openStream(two.url, { token: token('bob') })
    await connected(s1)
    await connected(s2)
    const res = await post(
      one.url,
      '/api/sse/subscriptions',
      { userIds: ['bob'], add: ['orders/9'] },
      ADMIN(),
    )
    t.same([res.status, res.body], [200, { matched: 2 }])
    await s1.waitFor((e) => e.event === 'subscriptions')
    await s2.waitFor((e) => e.event === 'subscriptions')
    const own = await post(
      two.url,
      '/api/sse/subscriptions',
      { clientIds: [clientIdOf(s1)], remove: ['orders/9'] },
      token('bob'),
    )
    t.same(own.body, { matched: 1 }, "bob's own connection on the other instance")
    const sent = await publish(two.url, { event: 'x', data: 1, topics: ['orders/9'] })
    await s2.waitFor((e) => e.id === sent.id)
    await sleep(100)
    t.notOk(
      published(s1).some((e) => e.id === sent.id),
      'removed on instance one',
    )
    s1.close()
    s2.close()
  })

  t.test('presence is summed over instances; join and leave once across tabs and instances', async (t) => {
    const watcher = await openStream(one.url, { token: token('watcher'), query: { topic: 'room/7' } })
    await connected(watcher)
    const tab1 = await openStream(one.url, { token: token('carol'), query: { topic: 'room/7' } })
    await connected(tab1)
    const tab2 = await openStream(two.url, { token: token('carol'), query: { topic: 'room/7' } })
    await connected(tab2)
    const anon = await openStream(two.url, { query: { topic: 'room/7' } })
    await anon.waitFor((e) => e.event === 'connected').catch(() => undefined)
    const presence = await get(two.url, `/api/sse/topics/room%2F7/presence`, ADMIN())
    t.match(presence.body, {
      topic: 'room/7',
      connections: anon.status === 200 ? 4 : 3,
      uniqueUsers: 2,
      users: [
        { userId: 'carol', connections: 2 },
        { userId: 'watcher', connections: 1 },
      ],
    })
    tab1.close()
    await sleep(300)
    tab2.close()
    await watcher.waitFor(
      (e) =>
        e.event === 'presence' &&
        (e.json as { userId: string; action: string }).action === 'leave' &&
        (e.json as { userId: string }).userId === 'carol',
    )
    const carol = watcher
      .named('presence')
      .map((e) => e.json as { userId: string; action: string; connections: number })
      .filter((p) => p.userId === 'carol')
    t.same(
      carol,
      [
        { topic: 'room/7', userId: 'carol', action: 'join', connections: 1 },
        { topic: 'room/7', userId: 'carol', action: 'leave', connections: 0 },
      ],
      'two tabs on two instances: one join, one leave',
    )
    anon.close()
    watcher.close()
  })
})

t.test('presence: a killed instance drops out, and its users leave', { skip, timeout: 60_000 }, async (t) => {
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
    PRESENCE_TOPICS: 'room/*',
  }
  const [one, two] = await Promise.all([startServer(t, env), startServer(t, env)])
  const watcher = await openStream(one.url, { token: token('watcher'), query: { topic: 'room/1' } })
  await connected(watcher)
  const dave = await openStream(two.url, { token: token('dave'), query: { topic: 'room/1' } })
  await connected(dave)
  await watcher.waitFor((e) => e.event === 'presence' && (e.json as { userId: string }).userId === 'dave')
  two.child.kill('SIGKILL')
  await dave.waitForEnd()
  const leave = await watcher.waitFor(
    (e) => e.event === 'presence' && (e.json as { action: string; userId: string }).action === 'leave',
    10_000,
  )
  t.same(
    leave.json,
    { topic: 'room/1', userId: 'dave', action: 'leave', connections: 0 },
    'dave left with his instance',
  )
  const presence = await get(one.url, '/api/sse/topics/room%2F1/presence', ADMIN())
  t.match(presence.body, { connections: 1, uniqueUsers: 1, users: [{ userId: 'watcher', connections: 1 }] })
  t.equal(
    watcher.named('presence').filter((e) => (e.json as { userId: string }).userId === 'dave').length,
    2,
    'one join, one leave',
  )
  watcher.close()
  await post(one.url, '/api/sse', { event: 'bye', data: 1, broadcast: true }, PUBLISHER())
})
