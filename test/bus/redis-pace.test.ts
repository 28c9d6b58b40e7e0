import t, { type Test } from 'tap'
import type { BusEvent } from '../../src/bus/bus.js'
import { RedisBus } from '../../src/bus/redis-bus.js'
import { eventsKey } from '../../src/bus/redis-entries.js'
import { eventually, sleep } from '../helper.js'
import { RedisProxy } from './proxy.js'
import { connections, skipWithoutRedis, TEST_REDIS_URL, uniquePrefix } from './redis.js'

const skip = await skipWithoutRedis()

const message = (n: number, pad = '') => ({
  event: 'tick',
  data: { n, pad },
  target: { broadcast: true as const },
  origin: 'test:1',
})

/**
 * A bus whose publishes go straight to Redis and whose reader goes through a proxy that can
 * freeze it: a reader slower than its publishers, as in a busy process.
 */
async function setup(t: Test, lagWaitMs: number, maxBytes?: number) {
  const proxy = await RedisProxy.start(t, Number(new URL(TEST_REDIS_URL).port || 6379))
  const direct = await connections(t)
  const proxied = await connections(t, proxy.url)
  const prefix = uniquePrefix(t)
  // The smallest stream there is: 1,000 entries.
  const bus = new RedisBus({
    commands: direct.commands,
    reader: proxied.reader,
    prefix,
    maxLength: 0,
    ...(maxBytes === undefined ? {} : { maxBytes }),
    lagWaitMs,
    blockMs: 200,
  })
  t.teardown(() => bus.close())
  const key = eventsKey(prefix)
  const got: BusEvent[] = []
  await bus.subscribe((event) => got.push(event))
  const first = await bus.publish(message(0))
  t.ok(await eventually(() => got.some((e) => e.id === first)), 'the reader reads')
  return { proxy, bus, got, key, direct }
}

/** Resolves with whether `promise` settled within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false
  void promise.then(
    () => {
      settled = true
    },
    () => {
      settled = true
    },
  )
  await sleep(ms)
  return settled
}

t.test(
  'a reader slower than its publishers makes them wait instead of losing events',
  { skip },
  async (t) => {
    const { proxy, bus, got } = await setup(t, 20_000)
    proxy.stall()
    // Half the stream (500 entries) may be ahead of the reader: five batches of 100 answer at once.
    const ids: string[] = []
    for (let b = 0; b < 5; b++) {
      const batch = await bus.publishMany(Array.from({ length: 100 }, (_, i) => message(b * 100 + i + 1)))
      ids.push(...(batch as string[]))
    }
    t.equal(bus.paced, 0, 'no publish waited within half the stream')
    const sixth = bus.publishMany(Array.from({ length: 100 }, (_, i) => message(501 + i)))
    t.notOk(await settlesWithin(sixth, 500), 'the batch that puts the reader past half the stream waits')
    t.equal(bus.paced, 1, 'and is counted')
    proxy.resume()
    ids.push(...((await sixth) as string[]))
    t.pass('it answers once the reader has caught up')

    // Three times what the stream holds, published as fast as the answers come: nothing is lost.
    for (let b = 6; b < 30; b++) {
      const batch = await bus.publishMany(Array.from({ length: 100 }, (_, i) => message(b * 100 + i + 1)))
      ids.push(...(batch as string[]))
    }
    const last = ids[ids.length - 1]
    t.ok(await eventually(() => got.some((e) => e.id === last)), 'the reader got to the last event')
    t.same(
      got.slice(1).map((e) => e.id),
      ids,
      'every one of the 3,000 events was read once, in order',
    )
    t.equal(bus.gaps, 0, 'no gap')
  },
)

t.test('with REDIS_LAG_WAIT_MS=0 the same publishers outrun a stalled reader: a gap', { skip }, async (t) => {
  const { proxy, bus } = await setup(t, 0)
  proxy.stall()
  for (let b = 0; b < 30; b++) {
    await bus.publishMany(Array.from({ length: 100 }, (_, i) => message(b * 100 + i + 1)))
  }
  t.equal(bus.paced, 0, 'nothing waited')
  proxy.resume()
  t.ok(await eventually(() => bus.gaps === 1), 'the reader found events trimmed before it read them')
})

t.test('the byte bound counts too: paced at half of what HISTORY_MAX_BYTES keeps', { skip }, async (t) => {
  // About 1,100 bytes an entry: 100 KB keep about 90 of them, far fewer than the count bound.
  const { proxy, bus, got } = await setup(t, 20_000, 100_000)
  const pad = 'x'.repeat(1000)
  const batch = (from: number) => Array.from({ length: 10 }, (_, i) => message(from + i, pad))
  proxy.stall()
  const ids: string[] = []
  let waiting: Promise<(string | Error)[]> | null = null
  for (let b = 0; b < 20 && waiting === null; b++) {
    const next = bus.publishMany(batch(b * 10 + 1))
    if (await settlesWithin(next, 300)) ids.push(...((await next) as string[]))
    else waiting = next
  }
  t.ok(waiting !== null, `a publish waited, after ${ids.length} events`)
  t.ok(ids.length >= 30 && ids.length <= 60, 'at about half of the 90 entries the bytes keep')
  proxy.resume()
  ids.push(...((await waiting) as string[]))
  for (let b = 0; b < 30; b++) ids.push(...((await bus.publishMany(batch(1000 + b * 10))) as string[]))
  const last = ids[ids.length - 1]
  t.ok(await eventually(() => got.some((e) => e.id === last)), 'the reader got to the last event')
  t.same(
    got.slice(1).map((e) => e.id),
    ids,
    'every event was read once, in order (more than three times what the stream keeps)',
  )
  t.equal(bus.gaps, 0, 'no gap')
})

t.test(
  'a reader stalled past REDIS_LAG_WAIT_MS: the publish is refused, nothing stored',
  { skip },
  async (t) => {
    const { proxy, bus, key, direct } = await setup(t, 400)
    proxy.stall()
    for (let b = 0; b < 5; b++) await bus.publishMany(Array.from({ length: 100 }, (_, i) => message(i)))
    const before = await direct.commands.xLen(key)
    const started = Date.now()
    const outcome = await bus.publishMany(Array.from({ length: 100 }, (_, i) => message(i)))
    t.ok(Date.now() - started >= 350, 'it waited for the reader first')
    t.ok(
      outcome.every((r) => r instanceof Error && (r as { code?: string }).code === 'SSE_ERR_BUS_BACKLOG'),
      'then every event of it was refused with SSE_ERR_BUS_BACKLOG',
    )
    t.match(String(outcome[0]), /REDIS_LAG_WAIT_MS/, 'saying why')
    t.equal(await direct.commands.xLen(key), before, 'nothing was stored')
    t.equal(bus.refused.backlog, 100, 'counted as refused (backlog)')
    proxy.resume()
    t.ok(
      await eventually(async () => typeof (await bus.publish(message(1))) === 'string'),
      'once the reader is back, publishes are accepted again',
    )
  },
)

t.test(
  'a batch larger than half the stream still goes once the reader has read what came before',
  { skip },
  async (t) => {
    const { bus, got } = await setup(t, 2_000)
    const ids: string[] = []
    for (let b = 0; b < 3; b++) {
      const outcome = await bus.publishMany(Array.from({ length: 800 }, (_, i) => message(b * 800 + i)))
      t.ok(
        outcome.every((r) => typeof r === 'string'),
        `batch ${b + 1} of 800 (the stream keeps 1,000) accepted`,
      )
      ids.push(...(outcome as string[]))
    }
    const last = ids[ids.length - 1]
    t.ok(await eventually(() => got.some((e) => e.id === last)), 'the reader got to the last event')
    t.same(
      got.slice(1).map((e) => e.id),
      ids,
      'all 2,400 read once, in order',
    )
    t.equal(bus.refused.backlog, 0, 'none refused')
  },
)

t.test(
  'after a failover that lost the stream end, publishing is not held back by counts from before',
  { skip },
  async (t) => {
    const { bus, got, key, direct } = await setup(t, 2_000)
    const ids: string[] = []
    for (let b = 0; b < 6; b++) {
      ids.push(...((await bus.publishMany(Array.from({ length: 100 }, (_, i) => message(i)))) as string[]))
    }
    const last = ids[ids.length - 1]
    t.ok(await eventually(() => got.some((e) => e.id === last)), 'the reader read all 600')
    // A new primary that never got those entries: the stream starts again, ending before our last id.
    await direct.commands.del(key)
    await direct.commands.xAdd(key, '1-1', { e: 'x', d: 'null', t: '{"broadcast":true}', o: 'elsewhere' })
    await sleep(600)
    const started = Date.now()
    const outcome = await bus.publishMany(Array.from({ length: 100 }, (_, i) => message(i)))
    t.ok(
      outcome.every((r) => typeof r === 'string'),
      'a publish right after is accepted',
    )
    t.ok(Date.now() - started < 2_000, 'without waiting out REDIS_LAG_WAIT_MS')
    t.equal(bus.refused.backlog, 0, 'none refused')
  },
)
