import t, { type Test } from 'tap'
import type { Bus, BusEvent, BusMessage } from '../../src/bus/bus.js'
import { type IdempotencyStore, MemoryIdempotency } from '../../src/bus/idempotency.js'
import { MemoryBus } from '../../src/bus/memory-bus.js'
import { RedisBus } from '../../src/bus/redis-bus.js'
import { eventsKey } from '../../src/bus/redis-entries.js'
import { RedisIdempotency } from '../../src/bus/redis-idempotency.js'
import { eventually, sleep } from '../helper.js'
import { connections, redisClient, skipWithoutRedis, uniquePrefix } from './redis.js'

const skip = await skipWithoutRedis()

type Factory = (t: Test) => Promise<{ store: IdempotencyStore; bus: Bus; count(): Promise<number> }>

const msg = (n: number): BusMessage => ({
  event: 'e',
  data: { n },
  target: { broadcast: true },
  origin: 'o:1',
})

/** One behaviour for both stores. */
function contract(name: string, factory: Factory, skipReason: string | false = false): void {
  t.test(`${name}: the idempotency contract`, { skip: skipReason }, async (t) => {
    t.test(
      'a key publishes once; a repeat with the same body is seen, with the ids and the answer',
      async (t) => {
        const { store, count } = await factory(t)
        const first = await store.publish('k1', 'fp', [msg(1), msg(2)], 60_000)
        t.equal(first.kind, 'published')
        const ids = first.kind === 'published' ? first.ids : []
        t.ok(ids.every((id) => typeof id === 'string'))
        const again = await store.publish('k1', 'fp', [msg(1), msg(2)], 60_000)
        t.match(again, { kind: 'seen', record: { ids, answer: null, failed: false } }, 'seen, in flight')
        await store.complete('k1', '{"statusCode":202}')
        t.match(await store.read('k1', 'fp'), { kind: 'seen', record: { ids, answer: '{"statusCode":202}' } })
        t.equal(await count(), 2, 'two events, published once')
      },
    )

    t.test('the same key with another body is a mismatch and publishes nothing', async (t) => {
      const { store, count } = await factory(t)
      await store.publish('k2', 'fp-a', [msg(1)], 60_000)
      t.same(await store.publish('k2', 'fp-b', [msg(9)], 60_000), { kind: 'mismatch' })
      t.same(await store.read('k2', 'fp-b'), { kind: 'mismatch' })
      t.equal(await count(), 1)
    })

    t.test('keys are independent, and a key is forgotten after its TTL', async (t) => {
      const { store, count } = await factory(t)
      await store.publish('k3', 'fp', [msg(1)], 300)
      t.equal((await store.publish('k4', 'fp', [msg(2)], 60_000)).kind, 'published', 'another key publishes')
      t.equal(await store.read('missing', 'fp'), null, 'an unknown key has no record')
      await sleep(400)
      t.equal(await store.read('k3', 'fp'), null, 'gone after the TTL')
      t.equal((await store.publish('k3', 'fp', [msg(3)], 60_000)).kind, 'published', 'so it publishes again')
      t.equal(await count(), 3)
    })

    t.test('a publish the bus refuses keeps nothing: the retry publishes', async (t) => {
      const { store, bus, count } = await factory(t)
      const before = await count()
      await bus.close()
      const refused = await store.publish('k5', 'fp', [msg(1)], 60_000)
      t.match(refused, { kind: 'published' })
      t.ok(refused.kind === 'published' && refused.ids.every((id) => id instanceof Error), 'refused')
      t.equal(await store.read('k5', 'fp'), null, 'no record')
      t.equal(await count(), before)
    })
  })
}

contract('MemoryIdempotency', async (t) => {
  const bus = new MemoryBus()
  const got: BusEvent[] = []
  await bus.subscribe((e) => got.push(e))
  t.teardown(() => bus.close())
  return { store: new MemoryIdempotency(bus), bus, count: async () => got.length }
})

contract(
  'RedisIdempotency',
  async (t) => {
    const prefix = uniquePrefix(t)
    const conns = await connections(t)
    const bus = new RedisBus({ commands: conns.commands, reader: conns.reader, prefix, maxLength: 100 })
    t.teardown(() => bus.close())
    const redis = await redisClient(t)
    return {
      store: new RedisIdempotency({ bus, commands: conns.commands, prefix }),
      bus,
      count: () => redis.xLen(eventsKey(prefix)),
    }
  },
  skip,
)

t.test('MemoryIdempotency holds at most maxKeys keys, oldest forgotten first', async (t) => {
  const bus = new MemoryBus()
  const store = new MemoryIdempotency(bus, { maxKeys: 3 })
  for (let i = 0; i < 5; i++) await store.publish(`k${i}`, 'fp', [msg(i)], 60_000)
  t.equal(store.size, 3)
  t.equal(store.forgotten, 2)
  t.equal(await store.read('k0', 'fp'), null, 'the oldest went')
  t.match(await store.read('k4', 'fp'), { kind: 'seen' })
})

t.test('MemoryIdempotency holds at most maxBytes of records (a batch answer can be large)', async (t) => {
  const bus = new MemoryBus()
  const store = new MemoryIdempotency(bus, { maxBytes: 100_000 })
  for (let i = 0; i < 20; i++) {
    await store.publish(`k${i}`, 'fp', [msg(i)], 60_000)
    await store.complete(`k${i}`, 'a'.repeat(20_000))
    t.ok(store.bytes <= 100_000, 'within the bound')
  }
  t.ok(store.size <= 5, `${store.size} records kept`)
  t.match(await store.read('k19', 'fp'), { kind: 'seen' }, 'the newest is kept')
  t.equal(await store.read('k0', 'fp'), null, 'the oldest went')
})

t.test('RedisIdempotency: two instances, one key, concurrent: one publish', { skip }, async (t) => {
  const prefix = uniquePrefix(t)
  const make = async () => {
    const conns = await connections(t)
    const bus = new RedisBus({ commands: conns.commands, reader: conns.reader, prefix, maxLength: 100 })
    t.teardown(() => bus.close())
    return new RedisIdempotency({ bus, commands: conns.commands, prefix })
  }
  const a = await make()
  const b = await make()
  const outcomes = await Promise.all(
    Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).publish('shared', 'fp', [msg(i)], 60_000)),
  )
  t.equal(outcomes.filter((o) => o.kind === 'published').length, 1, 'exactly one published')
  t.equal(outcomes.filter((o) => o.kind === 'seen').length, 19, 'the others saw it')
  const redis = await redisClient(t)
  t.ok(await eventually(async () => (await redis.xLen(eventsKey(prefix))) === 1), 'one entry in the stream')
})
