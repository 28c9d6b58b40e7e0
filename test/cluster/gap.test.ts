import t from 'tap'
import { RedisProxy } from '../bus/proxy.js'
import { skipWithoutRedis, TEST_REDIS_URL, uniquePrefix } from '../bus/redis.js'
import { eventually, get, openStream, PUBLISHER, post, serve, sleep } from '../helper.js'
import { published } from './helper.js'

const noRedis = await skipWithoutRedis()

t.test(
  'a reader away while more was trimmed than it could catch up on: its clients get recovered: false, never a silent gap',
  { skip: noRedis, timeout: 60_000 },
  async (t) => {
    const proxy = await RedisProxy.start(t, Number(new URL(TEST_REDIS_URL).port || 6379))
    const overrides = {
      redisPrefix: uniquePrefix(t),
      // A small stream: 200 events of 1 KB are four times what it holds.
      historyMaxBytes: 50_000,
      heartbeatIntervalMs: 0,
      statsReportIntervalMs: 200,
      rateLimitPublish: 0,
    }
    const a = await serve(t, { ...overrides, redisUrl: TEST_REDIS_URL })
    // b reaches Redis through a proxy that can freeze its connections: open, silent, as behind a
    // stalled process or a partition. No error is seen, so nothing but the read itself can tell.
    const b = await serve(t, { ...overrides, redisUrl: proxy.url })
    const onB = await openStream(b.url)
    const onA = await openStream(a.url)
    await onB.waitFor((e) => e.event === 'connected')
    await onA.waitFor((e) => e.event === 'connected')
    const first = await post(a.url, '/api/sse', { event: 'e', data: 0, broadcast: true }, PUBLISHER())
    await onB.waitFor((e) => e.id === first.body.id)

    proxy.stall()
    const ids: string[] = []
    for (let n = 1; n <= 200; n++) {
      const res = await post(
        a.url,
        '/api/sse',
        { event: 'e', data: { n, pad: 'x'.repeat(1000) }, broadcast: true },
        PUBLISHER(),
      )
      ids.push(res.body.id)
    }
    await onA.waitFor((e) => e.id === ids[ids.length - 1])
    t.equal(published(onA).length, 201, 'the instance that kept reading delivered all 201')
    t.equal(published(onB).length, 1, 'the frozen one delivered nothing more meanwhile')
    proxy.resume()

    // b finds the gap on its next read and ends its streams: they must learn they missed something.
    await onB.waitForEnd(10_000)
    const got = published(onB).map((e) => e.id)
    const last = onB.events[onB.events.length - 1]
    t.comment(`b's client got ${got.length} of 201 events, then ${last?.event} (${last?.data})`)
    t.equal(last?.event, 'disconnected', 'its stream was ended with event: disconnected')
    t.same(got, [first.body.id], 'and it got no event past the gap')

    for (const [name, url] of [
      ['b', b.url],
      ['a', a.url],
    ]) {
      const again = await openStream(url as string, { headers: { 'last-event-id': first.body.id } })
      const hello = await again.waitFor((e) => e.event === 'connected')
      t.match(
        hello.json,
        { recovered: false, replayed: 0 },
        `reconnected to ${name} with its Last-Event-ID: recovered false`,
      )
      again.close()
    }
    t.ok(
      await eventually(async () =>
        /sse_bus_gaps_total 1\b/.test(String((await get(b.url, '/metrics')).body)),
      ),
      'b counted the gap (sse_bus_gaps_total 1)',
    )
    t.match(String((await get(a.url, '/metrics')).body), /sse_bus_gaps_total 0\b/, 'a saw none')

    // b reads on: a stream opened now gets what is published now.
    const fresh = await openStream(b.url)
    await fresh.waitFor((e) => e.event === 'connected')
    const after = await post(a.url, '/api/sse', { event: 'e', data: 'after', broadcast: true }, PUBLISHER())
    await fresh.waitFor((e) => e.id === after.body.id)
    t.pass('b delivers again')
    await sleep(50)
    for (const s of [onA, fresh]) s.close()
  },
)
