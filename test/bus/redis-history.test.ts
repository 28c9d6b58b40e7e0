import t, { type Test } from 'tap'
import type { BusEvent } from '../../src/bus/bus.js'
import { RedisBus } from '../../src/bus/redis-bus.js'
import { RedisHistory } from '../../src/bus/redis-history.js'
import { encodeFrame } from '../../src/sse/frame.js'
import type { StoredEvent } from '../../src/sse/history.js'
import { connections, redisClient, skipWithoutRedis, uniquePrefix } from './redis.js'

const skip = await skipWithoutRedis()

const toStored = (e: BusEvent): StoredEvent => ({
  id: e.id,
  event: e.event,
  frame: encodeFrame({ id: e.id, event: e.event, data: e.data }),
  target: e.target,
  publishedAt: e.publishedAt,
})

async function setup(
  t: Test,
  options: { maxEvents: number; ttlMs: number; now?: () => number; replayMaxBytes?: number },
) {
  const prefix = uniquePrefix(t)
  const conns = await connections(t)
  const bus = new RedisBus({ commands: conns.commands, reader: conns.reader, prefix, maxLength: 10 })
  t.teardown(() => bus.close())
  let latest: string | null = null
  const history = new RedisHistory({
    client: conns.commands,
    prefix,
    toStored,
    latestId: () => latest,
    replayMaxBytes: 4 * 1024 * 1024,
    ...options,
  })
  const publish = async (n: number, target: BusEvent['target'] = { broadcast: true }) => {
    latest = await bus.publish({ event: 'e', data: { n }, target, origin: 'test:1' })
    return latest
  }
  return { prefix, history, publish }
}

t.test('RedisHistory', { skip }, async (t) => {
  t.test('replays what came after an id, with targets and frames, oldest first', async (t) => {
    const { history, publish } = await setup(t, { maxEvents: 100, ttlMs: 0 })
    const first = await publish(0)
    const two = await publish(1, { userIds: ['alice'] })
    const three = await publish(2, { clientIds: ['c1'] })
    const window = await history.since(first)
    t.equal(window.recovered, true)
    t.same(
      window.events.map((e) => [e.id, e.target]),
      [
        [two, { userIds: ['alice'] }],
        [three, { clientIds: ['c1'] }],
      ],
    )
    t.match(window.events[0]?.frame.toString(), `event: e\nid: ${two}\ndata: {"n":1}\n\n`)
    t.same(await history.since(three), { recovered: true, events: [] }, 'the newest id: nothing missed')
    t.equal(history.latestId(), three)
    history.append()
  })

  t.test('an id further back than HISTORY_SIZE, unknown, or malformed is not recovered', async (t) => {
    const { history, publish } = await setup(t, { maxEvents: 3, ttlMs: 0 })
    const first = await publish(0)
    const ids = [first]
    for (let i = 1; i <= 5; i++) ids.push(await publish(i))
    t.same(await history.since(first), { recovered: false, events: [] }, '5 events behind, 3 kept')
    const window = await history.since(ids[2] as string)
    t.equal(window.recovered, true, 'exactly 3 behind is still recovered')
    t.equal(window.events.length, 3)
    t.same(await history.since('1-0'), { recovered: false, events: [] }, 'never issued')
    t.same(await history.since('nope'), { recovered: false, events: [] }, 'malformed')
  })

  t.test('HISTORY_SIZE 0 keeps nothing to replay', async (t) => {
    const { history, publish } = await setup(t, { maxEvents: 0, ttlMs: 0 })
    const id = await publish(0)
    await publish(1)
    t.same(await history.since(id), { recovered: false, events: [] })
  })

  t.test('HISTORY_TTL_MS: an expired id is not recovered, and maintain() trims by age', async (t) => {
    let now = Date.now()
    const { history, publish, prefix } = await setup(t, { maxEvents: 100, ttlMs: 60_000, now: () => now })
    const old = await publish(0)
    const recent = await publish(1)
    t.equal((await history.since(old)).recovered, true, 'fresh')
    now += 120_000
    t.same(await history.since(old), { recovered: false, events: [] }, 'two minutes later: too old')
    await history.maintain()
    const client = await redisClient(t)
    t.equal(await client.xLen(`${prefix}events`), 0, 'trimmed by MINID')
    t.equal(history.size, 0)
    t.same(
      await history.since(recent),
      { recovered: true, events: [] },
      'the latest id, trimmed by age with nothing after it: nothing was missed',
    )
  })

  t.test('an id that is not in the stream reads nothing after it', async (t) => {
    const { history, publish } = await setup(t, { maxEvents: 1000, ttlMs: 0 })
    for (let i = 0; i < 50; i++) await publish(i)
    const before = history.bytesRead
    t.same(await history.since('0-1'), { recovered: false, events: [] })
    t.same(await history.since('1-0'), { recovered: false, events: [] })
    t.equal(history.bytesRead - before, 0, 'no entry read from Redis')
  })

  t.test('REPLAY_MAX_BYTES: over it, nothing; only entitled events count; frames are shared', async (t) => {
    const { history, publish } = await setup(t, { maxEvents: 1000, ttlMs: 0, replayMaxBytes: 4096 })
    const start = await publish(0)
    for (let i = 1; i <= 20; i++) await publish(i, { userIds: ['bob'] })
    await publish(21)
    const alice = { maxBytes: 4096, entitled: (target: BusEvent['target']) => target.broadcast === true }
    const bob = { maxBytes: 4096, entitled: () => true }
    const forAlice = await history.since(start, alice)
    t.equal(forAlice.recovered, true, "bob's events do not count against alice's limit")
    t.equal(forAlice.events.length, 1, 'only what alice may see is returned')
    const [a, b] = await Promise.all([history.since(start, bob), history.since(start, bob)])
    t.equal(a.events.length, 21, 'bob: 21 small events fit')
    t.equal(a.events[0]?.frame, b.events[0]?.frame, 'two replays share one frame buffer')
    const tight = { maxBytes: 500, entitled: () => true }
    t.same(await history.since(start, tight), { recovered: false, events: [] }, 'past the limit: nothing')
  })

  t.test(
    "the decoded events kept for sharing count their targets' ids within REPLAY_MAX_BYTES",
    async (t) => {
      const replayMaxBytes = 512 * 1024
      const { history, publish } = await setup(t, { maxEvents: 1000, ttlMs: 0, replayMaxBytes })
      const userIds = Array.from(
        { length: 1000 },
        (_, i) => `user-${String(i).padStart(4, '0')}-${'x'.repeat(50)}`,
      )
      const start = await publish(0)
      // Small frames, large targets: about 88 KB of ids each (counted as 152 KB, from above).
      for (let i = 1; i <= 9; i++) await publish(i, { userIds })
      const all = { maxBytes: replayMaxBytes, entitled: () => true }
      const window = await history.since(start, all)
      t.equal(window.recovered, true)
      t.equal(window.events.length, 9, 'every event is replayed')
      t.ok(history.decoded.bytes <= replayMaxBytes, `${history.decoded.bytes} bytes kept decoded`)
      t.ok(history.decoded.events < 9, `${history.decoded.events} of 9 events kept decoded`)
    },
  )
})
