import { createClient } from 'redis'
import t from 'tap'
import { RedisConnections } from '../../src/bus/redis-connections.js'
import { SentinelResolver } from '../../src/bus/redis-sentinel.js'
import { loadConfig } from '../../src/config.js'
import { startNode, startSentinel } from '../cluster/sentinel.js'
import { eventually, get, SECRET, serve } from '../helper.js'
import { freePort, redisServerAvailable } from './redis.js'

const noServer = (await redisServerAvailable()) ? false : 'redis-server is not installed'
const quiet = { info() {}, warn() {}, error() {} }
const env = (extra: Record<string, string>) => ({ JWT_SECRET: SECRET, ...extra })

t.test(
  'config: REDIS_SENTINELS, REDIS_SENTINEL_NAME, REDIS_WAIT_*, REDIS_MAX_PENDING_BYTES, IDEMPOTENCY_TTL_MS',
  async (t) => {
    const defaults = loadConfig(env({}))
    t.match(defaults, {
      redisSentinels: null,
      redisSentinelName: 'mymaster',
      redisWaitReplicas: 0,
      redisWaitTimeoutMs: 1000,
      redisMaxPendingBytes: 16 * 1024 * 1024,
      idempotencyTtlMs: 300_000,
    })
    const set = loadConfig(
      env({
        REDIS_SENTINELS: '10.0.0.5:26379, sentinel-b:26380,[::1]:26381',
        REDIS_SENTINEL_NAME: 'events',
        REDIS_WAIT_REPLICAS: '1',
        REDIS_URL: 'redis://:secret@ignored:6379/2',
      }),
    )
    t.same(set.redisSentinels, [
      { host: '10.0.0.5', port: 26379 },
      { host: 'sentinel-b', port: 26380 },
      { host: '::1', port: 26381 },
    ])
    t.equal(set.redisSentinelName, 'events')
    t.equal(set.redisWaitReplicas, 1)
    for (const [name, value] of [
      ['REDIS_SENTINELS', '10.0.0.5'],
      ['REDIS_SENTINELS', '10.0.0.5:0'],
      ['REDIS_SENTINELS', 'a b:1'],
      ['REDIS_SENTINELS', ','],
      ['REDIS_WAIT_REPLICAS', '-1'],
      ['REDIS_WAIT_REPLICAS', '17'],
      ['REDIS_WAIT_TIMEOUT_MS', '0'],
      ['REDIS_MAX_PENDING_BYTES', '1000'],
      ['IDEMPOTENCY_TTL_MS', '10'],
    ] as const) {
      t.throws(
        () => loadConfig(env({ [name]: value })),
        { name: 'ConfigError', variable: name },
        `${name}=${value}`,
      )
    }
  },
)

t.test(
  'without an answering sentinel the service starts not ready, and publishing is 503 at once',
  async (t) => {
    const dead = [await freePort(), await freePort()]
    const conns = new RedisConnections(
      { sentinels: dead.map((port) => ({ host: '127.0.0.1', port })), name: 'x' },
      quiet,
    )
    t.teardown(() => conns.close())
    t.equal(await conns.connect(600), false)
    t.ok(await eventually(() => /sentinels/.test(conns.status().reason ?? '')), 'not ready, saying why')
    t.equal(conns.status().ready, false)
    t.equal(conns.commands.isReady, false)
    await t.rejects(conns.commands.ping(), 'commands fail at once, not queued')

    const { url } = await serve(t, {
      redisSentinels: dead.map((port) => ({ host: '127.0.0.1', port })),
      redisConnectTimeoutMs: 300,
    })
    const ready = await get(url, '/ready')
    t.equal(ready.status, 503)
    t.match(ready.body, { bus: 'redis', status: 'unavailable' }, 'REDIS_SENTINELS alone means Redis')
  },
)

t.test('the sentinels are asked in turn: a dead one is skipped', { skip: noServer }, async (t) => {
  const primary = await startNode(t)
  const sentinel = await startSentinel(t, primary, 'mymaster')
  const resolver = new SentinelResolver({
    sentinels: [
      { host: '127.0.0.1', port: await freePort() },
      { host: '127.0.0.1', port: sentinel.port },
    ],
    name: 'mymaster',
  })
  t.teardown(() => resolver.close())
  t.same(await resolver.primary(), { host: '127.0.0.1', port: primary.port }, 'the second answers')
  t.same(await resolver.primary(), { host: '127.0.0.1', port: primary.port }, 'and is kept')
  const unknown = new SentinelResolver({
    sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
    name: 'other',
  })
  t.teardown(() => unknown.close())
  t.equal(await unknown.primary(), null, 'a name no sentinel monitors')

  const conns = new RedisConnections(
    { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: 'mymaster' },
    quiet,
  )
  t.teardown(() => conns.close())
  t.equal(await conns.connect(5000), true, 'connected to the primary the sentinel names')
  t.same(conns.primary, { host: '127.0.0.1', port: primary.port })
  t.equal(await conns.commands.ping(), 'PONG')
})

t.test(
  'with sentinels, REDIS_URL gives the password and database of the primary',
  { skip: noServer },
  async (t) => {
    const primary = await startNode(t, undefined, 'pw-0123456789')
    const sentinel = await startSentinel(t, primary, 'mymaster', 'pw-0123456789')
    const conns = new RedisConnections(
      {
        sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
        name: 'mymaster',
        url: 'redis://:pw-0123456789@ignored.invalid:1/3',
      },
      quiet,
    )
    t.teardown(() => conns.close())
    t.equal(await conns.connect(5000), true, 'authenticated to the primary the sentinel names')
    await conns.commands.set('which-db', 'three')
    const direct = createClient({ url: `redis://:pw-0123456789@127.0.0.1:${primary.port}/3` })
    await direct.connect()
    t.equal(await direct.get('which-db'), 'three', 'in database 3')
    await direct.close()
  },
)
