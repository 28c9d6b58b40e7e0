import t from 'tap'
import { request } from 'undici'
import { eventsKey } from '../../src/bus/redis-entries.js'
import { RedisProxy } from '../bus/proxy.js'
import { redisClient, skipWithoutRedis, TEST_REDIS_URL, uniquePrefix } from '../bus/redis.js'
import { eventually, expectError, mint, openStream, PUBLISHER, type Stream, serve, sleep } from '../helper.js'
import { instances, published } from './helper.js'

const noRedis = await skipWithoutRedis()

interface Reply {
  status: number
  body: Record<string, unknown>
  replayed: boolean
}

async function publishKeyed(
  url: string,
  body: unknown,
  key: string | undefined,
  options: { path?: string; token?: string } = {},
): Promise<Reply> {
  const res = await request(`${url}${options.path ?? '/api/sse'}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${options.token ?? PUBLISHER()}`,
      ...(key === undefined ? {} : { 'idempotency-key': key }),
    },
    body: JSON.stringify(body),
  })
  const text = await res.body.text()
  return {
    status: res.statusCode,
    body: text ? JSON.parse(text) : {},
    replayed: res.headers['idempotent-replayed'] === 'true',
  }
}

const tick = (n: number) => ({ event: 'tick', data: { n }, broadcast: true })

async function connected(url: string): Promise<Stream> {
  const stream = await openStream(url)
  await stream.waitFor((e) => e.event === 'connected')
  return stream
}

t.test('Idempotency-Key on one instance (memory)', async (t) => {
  t.test('a malformed key is 400 SSE_ERR_INVALID_IDEMPOTENCY_KEY and publishes nothing', async (t) => {
    const { url } = await serve(t)
    const stream = await connected(url)
    for (const [what, key] of [
      ['empty', ''],
      ['129 characters', 'k'.repeat(129)],
      ['a space', 'a b'],
      ['a tab', 'a\tb'],
      ['not ASCII', 'kéy'],
    ] as const) {
      const res = await publishKeyed(url, tick(1), key)
      expectError(t, { status: res.status, body: res.body }, 400, 'SSE_ERR_INVALID_IDEMPOTENCY_KEY')
      t.comment(`${what}: ${res.status}`)
    }
    const ok = await publishKeyed(url, tick(2), `${'k'.repeat(127)}~`)
    t.equal(ok.status, 202, '128 visible characters are fine')
    await stream.waitFor((e) => e.id === ok.body.id)
    t.equal(published(stream).length, 1, 'only the valid one was published')
    stream.close()
  })

  t.test('a repeat answers the first result, marked replayed, and delivers nothing', async (t) => {
    const { url } = await serve(t)
    const stream = await connected(url)
    const first = await publishKeyed(url, tick(1), 'order-42-paid')
    t.equal(first.status, 202)
    t.equal(first.replayed, false, 'the first answer is not a replay')
    await stream.waitFor((e) => e.id === first.body.id)
    for (let i = 0; i < 3; i++) {
      const again = await publishKeyed(url, tick(1), 'order-42-paid')
      t.equal(again.status, 202)
      t.same(again.body, first.body, 'the first {id, delivered}')
      t.equal(again.replayed, true, 'idempotent-replayed: true')
    }
    const other = await publishKeyed(url, tick(2), 'another-key')
    await stream.waitFor((e) => e.id === other.body.id)
    t.same(
      published(stream).map((e) => e.id),
      [first.body.id, other.body.id],
      'each key delivered once',
    )
    stream.close()
  })

  t.test('the same key with another body is 422 SSE_ERR_IDEMPOTENCY_MISMATCH', async (t) => {
    const { url } = await serve(t)
    await publishKeyed(url, tick(1), 'reused')
    const res = await publishKeyed(url, tick(2), 'reused')
    expectError(t, { status: res.status, body: res.body }, 422, 'SSE_ERR_IDEMPOTENCY_MISMATCH')
  })

  t.test('keys are scoped per token subject and per route', async (t) => {
    const { url } = await serve(t)
    const stream = await connected(url)
    const other = mint('another-publisher', { scopes: ['sse:publish'] })
    const a = await publishKeyed(url, tick(1), 'same')
    const b = await publishKeyed(url, tick(1), 'same', { token: other })
    const c = await publishKeyed(url, { events: [tick(1)] }, 'same', { path: '/api/sse/batch' })
    t.equal(a.replayed || b.replayed || c.replayed, false, 'none is a replay of another')
    t.not(a.body.id, b.body.id, 'another subject is another key')
    await stream.waitForCount('tick', 3)
    t.equal(published(stream).length, 3)
    stream.close()
  })

  t.test('concurrent repeats of one key: one delivery, every answer the same', async (t) => {
    const { url } = await serve(t)
    const stream = await connected(url)
    const answers = await Promise.all(Array.from({ length: 12 }, () => publishKeyed(url, tick(7), 'burst')))
    t.ok(
      answers.every((a) => a.status === 202),
      `all 202 (${answers.map((a) => a.status)})`,
    )
    t.equal(new Set(answers.map((a) => a.body.id)).size, 1, 'one id')
    t.equal(answers.filter((a) => !a.replayed).length, 1, 'one first, the rest replayed')
    await sleep(200)
    t.equal(published(stream).length, 1, 'delivered once')
    stream.close()
  })

  t.test('a first attempt that failed stores nothing: the key is free', async (t) => {
    const { url } = await serve(t)
    const refused = await publishKeyed(url, { event: 'connected', data: 1, broadcast: true }, 'k')
    t.equal(refused.status, 400, 'a reserved event name')
    const ok = await publishKeyed(url, tick(1), 'k')
    t.equal(ok.status, 202)
    t.equal(ok.replayed, false, 'not a replay of the failure')
  })

  t.test('a batch: one key for the whole batch; a repeat answers its results, 207 included', async (t) => {
    const { url } = await serve(t)
    const stream = await connected(url)
    const body = { events: [tick(1), { event: 'heartbeat', data: 1, broadcast: true }, tick(2)] }
    const first = await publishKeyed(url, body, 'batch-1', { path: '/api/sse/batch' })
    t.equal(first.status, 207, 'one of three refused')
    const again = await publishKeyed(url, body, 'batch-1', { path: '/api/sse/batch' })
    t.equal(again.status, 207)
    t.same(again.body, first.body, 'the same results')
    t.equal(again.replayed, true)
    await sleep(200)
    t.equal(published(stream).length, 2, 'two events, delivered once')
    stream.close()
  })

  t.test('after IDEMPOTENCY_TTL_MS the key is new again', async (t) => {
    const { url } = await serve(t, { idempotencyTtlMs: 1000 })
    const first = await publishKeyed(url, tick(1), 'short')
    await sleep(1200)
    const later = await publishKeyed(url, tick(1), 'short')
    t.equal(later.replayed, false)
    t.not(later.body.id, first.body.id)
  })
})

t.test('Idempotency-Key across instances (Redis)', { skip: noRedis }, async (t) => {
  t.test('a key used on one instance is known on the other; concurrent repeats deliver once', async (t) => {
    const [a, b] = await instances(t, 2, { rateLimitPublish: 0 })
    if (!a || !b) throw new Error('two instances')
    const sa = await connected(a.url)
    const sb = await connected(b.url)
    const first = await publishKeyed(a.url, tick(1), 'across')
    const again = await publishKeyed(b.url, tick(1), 'across')
    t.same(again.body, first.body, 'the other instance answers the first result')
    t.equal(again.replayed, true)
    const mismatch = await publishKeyed(b.url, tick(2), 'across')
    t.equal(mismatch.status, 422, 'and knows its body')

    const answers = await Promise.all(
      Array.from({ length: 16 }, (_, i) => publishKeyed(i % 2 ? a.url : b.url, tick(3), 'race')),
    )
    t.ok(
      answers.every((x) => x.status === 202),
      `all 202 (${answers.map((x) => x.status)})`,
    )
    t.equal(new Set(answers.map((x) => x.body.id)).size, 1, 'one id for all 16')
    const last = answers[0]?.body.id as string
    for (const s of [sa, sb]) {
      await s.waitFor((e) => e.id === last, 5000)
      await sleep(200)
      t.same(
        published(s).map((e) => e.id),
        [first.body.id, last],
        'each delivered once on every instance',
      )
      s.close()
    }
  })

  t.test(
    'a lost XADD reply: 503, then the retry with the key answers the stored event, delivered once',
    async (t) => {
      const proxy = await RedisProxy.start(t, Number(new URL(TEST_REDIS_URL).port || 6379))
      const prefix = uniquePrefix(t)
      const overrides = { redisPrefix: prefix, heartbeatIntervalMs: 0 }
      const a = await serve(t, { ...overrides, redisUrl: proxy.url })
      const b = await serve(t, { ...overrides, redisUrl: TEST_REDIS_URL })
      const sb = await connected(b.url)
      const body = { event: 'tick', data: 'marker-of-the-lost-reply', broadcast: true }
      proxy.cutReplyTo('marker-of-the-lost-reply')
      const lost = await publishKeyed(a.url, body, 'lost-reply')
      t.equal(lost.status, 503, 'the publisher hears 503: the reply never came')
      t.ok(proxy.dropped >= 1, 'a reply was dropped')
      const event = await sb.waitFor((e) => e.event === 'tick', 5000)
      t.pass('although Redis stored it and it went out')
      t.ok(
        await eventually(async () => (await fetch(`${a.url}/ready`)).status === 200, 10_000),
        'a reconnects',
      )
      const retry = await publishKeyed(a.url, body, 'lost-reply')
      t.equal(retry.status, 202, 'the retry succeeds')
      t.equal(retry.replayed, true, 'as a replay')
      t.equal(retry.body.id, event.id, 'with the id of the stored event')
      const redis = await redisClient(t)
      t.equal(await redis.xLen(eventsKey(prefix)), 1, 'one entry in the stream')
      await sleep(300)
      t.equal(published(sb).length, 1, 'delivered once')
      sb.close()
    },
  )
})
