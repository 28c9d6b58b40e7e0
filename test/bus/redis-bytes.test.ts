import t, { type Test } from 'tap'
import type { BusEvent } from '../../src/bus/bus.js'
import { RedisBus } from '../../src/bus/redis-bus.js'
import { eventsBytesKey, eventsKey } from '../../src/bus/redis-entries.js'
import { RedisHistory } from '../../src/bus/redis-history.js'
import { ENTRY_OVERHEAD_BYTES } from '../../src/bus/redis-scripts.js'
import { encodeFrame } from '../../src/sse/frame.js'
import { eventually } from '../helper.js'
import { connections, redisClient, skipWithoutRedis, uniquePrefix } from './redis.js'

const skip = await skipWithoutRedis()

const MiB = 1024 * 1024

async function setup(t: Test, options: { maxBytes: number; maxLength?: number }) {
  const prefix = uniquePrefix(t)
  const conns = await connections(t)
  const bus = new RedisBus({
    commands: conns.commands,
    reader: conns.reader,
    prefix,
    maxLength: options.maxLength ?? 100_000,
    maxBytes: options.maxBytes,
  })
  t.teardown(() => bus.close())
  const redis = await redisClient(t)
  return { prefix, bus, conns, redis }
}

const message = (n: number, payload: string) => ({
  event: 'tick',
  data: { n, payload },
  target: { broadcast: true as const },
  origin: 'test:1',
})

/** What the append script counts for every entry of the stream, recomputed from what is there. */
async function countedBytes(redis: Awaited<ReturnType<typeof redisClient>>, key: string): Promise<number> {
  let bytes = 0
  for (const entry of (await redis.xRange(key, '-', '+')) ?? []) {
    bytes += entry.id.length + ENTRY_OVERHEAD_BYTES
    for (const [field, value] of Object.entries(entry.message)) bytes += field.length + String(value).length
  }
  return bytes
}

async function memoryUsage(redis: Awaited<ReturnType<typeof redisClient>>, key: string): Promise<number> {
  return Number(await redis.sendCommand(['MEMORY', 'USAGE', key, 'SAMPLES', '0']))
}

t.test('the Redis stream is bounded by bytes (HISTORY_MAX_BYTES)', { skip }, async (t) => {
  t.test(
    '10x the bound published: MEMORY USAGE stays within 1.5x of it, for every size of event',
    async (t) => {
      const maxBytes = MiB / 2
      for (const size of [100, 1500, 4100, 33_000, 60_000]) {
        const { prefix, bus, redis } = await setup(t, { maxBytes })
        const payload = 'x'.repeat(size)
        let published = 0
        let refused = 0
        // Singles and batches of up to ~32 KB, as publishers send them.
        const batch = Math.max(2, Math.min(200, Math.floor(32_000 / size)))
        for (let n = 0; published < 10 * maxBytes; n++) {
          if (n % 2 === 0) {
            const ids = await bus.publishMany(
              Array.from({ length: batch }, (_, i) => message(n + i, payload)),
            )
            refused += ids.filter((id) => typeof id !== 'string').length
            published += batch * size
          } else {
            await bus.publish(message(n, payload))
            published += size
          }
        }
        t.equal(refused, 0, 'every publish accepted')
        const key = eventsKey(prefix)
        const memory = await memoryUsage(redis, key)
        const counted = Number(await redis.get(eventsBytesKey(prefix)))
        const ratio = memory / maxBytes
        t.comment(
          `${size} B events: ${published} B published, ${await redis.xLen(key)} kept, MEMORY USAGE ${memory} B = ${ratio.toFixed(3)}x HISTORY_MAX_BYTES`,
        )
        t.ok(ratio <= 1.5, `${size} B: MEMORY USAGE within 1.5x (${ratio.toFixed(3)}x)`)
        t.ok(counted <= maxBytes + batch * (size + 200), `${size} B: the running total is within the bound`)
        t.equal(counted, await countedBytes(redis, key), `${size} B: the running total is exact`)
      }
    },
  )

  t.test('the bound of the count still applies, and the total follows it', async (t) => {
    const { prefix, bus, redis } = await setup(t, { maxBytes: 64 * MiB, maxLength: 10 })
    for (let n = 0; n < 1500; n++) await bus.publish(message(n, 'y'))
    const key = eventsKey(prefix)
    const length = await redis.xLen(key)
    t.ok(length <= 1000 && length >= 990, `MIN_STREAM_LENGTH entries, trimmed to 1% under it (${length})`)
    t.equal(Number(await redis.get(eventsBytesKey(prefix))), await countedBytes(redis, key))
  })

  t.test('an event larger than the whole bound is kept until the next publish', async (t) => {
    const { prefix, bus, redis } = await setup(t, { maxBytes: 10_000 })
    const got: BusEvent[] = []
    await bus.subscribe((e) => got.push(e))
    await bus.publish(message(1, 'a'))
    const big = await bus.publish(message(2, 'b'.repeat(50_000)))
    t.equal(await redis.xLen(eventsKey(prefix)), 1, 'the older one went; the big one stays')
    t.ok(await eventually(() => got.some((e) => e.id === big), 5000), 'and the reader got it')
    const after = await bus.publish(message(3, 'c'))
    const left = ((await redis.xRange(eventsKey(prefix), '-', '+')) ?? []).map((e) => e.id)
    t.same(left, [after], 'the next publish trims it')
  })

  t.test('HISTORY_TTL_MS trimming goes through the same script: the total stays exact', async (t) => {
    const { prefix, bus, conns, redis } = await setup(t, { maxBytes: 64 * MiB })
    let now = 0
    const history = new RedisHistory({
      client: conns.commands,
      prefix,
      maxEvents: 100,
      ttlMs: 1000,
      replayMaxBytes: MiB,
      toStored: (e) => ({
        id: e.id,
        event: e.event,
        frame: encodeFrame({ id: e.id, event: e.event, data: e.data }),
        target: e.target,
        publishedAt: e.publishedAt,
      }),
      latestId: () => null,
      trimBefore: (minId) => bus.trim(minId),
      now: () => now,
    })
    for (let n = 0; n < 20; n++) await bus.publish(message(n, 'z'.repeat(100)))
    const key = eventsKey(prefix)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const last = await bus.publish(message(99, 'z'))
    // The cutoff falls between the 20 and the last one.
    now = Number(last.split('-')[0]) + 900
    await history.maintain()
    t.same(
      ((await redis.xRange(key, '-', '+')) ?? []).map((e) => e.id),
      [last],
      'only the one younger than the TTL is left',
    )
    t.equal(Number(await redis.get(eventsBytesKey(prefix))), await countedBytes(redis, key))
  })

  t.test('a lost running total is rebuilt from the stream', async (t) => {
    const { prefix, bus, redis } = await setup(t, { maxBytes: 20_000 })
    for (let n = 0; n < 50; n++) await bus.publish(message(n, 'w'.repeat(500)))
    await redis.del(eventsBytesKey(prefix))
    for (let n = 0; n < 50; n++) await bus.publish(message(n, 'w'.repeat(500)))
    const key = eventsKey(prefix)
    const counted = await countedBytes(redis, key)
    t.equal(Number(await redis.get(eventsBytesKey(prefix))), counted, 'exact again')
    t.ok(counted <= 20_000, 'and within the bound')
  })
})
