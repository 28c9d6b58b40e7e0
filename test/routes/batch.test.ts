// POST /api/sse/batch: many events, each on its own, in order; exact results and deliveries.
import t from 'tap'
import { compareEventIds } from '../../src/sse/event-id.js'
import { skipWithoutRedis } from '../bus/redis.js'
import { instances } from '../cluster/helper.js'
import { expectError, mint, openStream, PUBLISHER, post, postRaw, type Stream, serve } from '../helper.js'

const events = (s: Stream) => s.events.filter((e) => e.event === 'e')

t.test('every event accepted: 202, ids in order, each delivered once, in order', async (t) => {
  const { url } = await serve(t, { heartbeatIntervalMs: 0, publicTopics: ['**'] })
  const alice = await openStream(url, { token: mint('alice') })
  const anon = await openStream(url, { query: { topic: 'news' } })
  await alice.waitFor((e) => e.event === 'connected')
  await anon.waitFor((e) => e.event === 'connected')
  const batch = Array.from({ length: 300 }, (_, i) =>
    i % 3 === 0
      ? { event: 'e', data: i, broadcast: true }
      : i % 3 === 1
        ? { event: 'e', data: i, userIds: ['alice'] }
        : { event: 'e', data: i, topics: ['news'] },
  )
  const res = await post(url, '/api/sse/batch', { events: batch }, PUBLISHER())
  t.equal(res.status, 202)
  const results = res.body.results as { id: string; delivered: number }[]
  t.equal(results.length, 300)
  t.same(
    results.map((r) => r.delivered),
    batch.map((b) => ('broadcast' in b ? 2 : 1)),
    'delivered is exact per event',
  )
  for (let i = 1; i < results.length; i++) {
    if (compareEventIds(results[i]?.id as string, results[i - 1]?.id as string) <= 0)
      t.fail(`id ${i} not after ${i - 1}`)
  }
  await alice.waitForCount('e', 200)
  await anon.waitForCount('e', 200)
  t.same(
    events(alice).map((e) => e.json),
    batch.filter((b) => !('topics' in b)).map((b) => b.data),
    'alice: broadcasts and hers, in order, once',
  )
  t.same(
    events(anon).map((e) => e.id),
    results.filter((_, i) => i % 3 !== 1).map((r) => r.id),
    'the subscriber: broadcasts and the topic, with the ids the batch answered',
  )
  alice.close()
  anon.close()
})

t.test('bad events are refused in place, the rest published in order: 207', async (t) => {
  const { url } = await serve(t, { heartbeatIntervalMs: 0, maxPayloadBytes: 1024, maxDataDepth: 3 })
  const s = await openStream(url)
  await s.waitFor((e) => e.event === 'connected')
  const batch = [
    { event: 'e', data: 'first', broadcast: true },
    { event: 'bad name!', data: 1, broadcast: true },
    { event: 'connected', data: 1, broadcast: true },
    { event: 'e', data: 1 },
    { event: 'e', data: 1, broadcast: true, userIds: ['x'] },
    { event: 'e', data: 1, topics: ['a//b'] },
    { event: 'e', data: [[[[1]]]], broadcast: true },
    { event: 'e', data: 'x'.repeat(2000), broadcast: true },
    'not an object',
    { event: 'e', data: 'last', broadcast: true },
  ]
  const res = await post(url, '/api/sse/batch', { events: batch }, PUBLISHER())
  t.equal(res.status, 207)
  const results = res.body.results as ({ id: string } | { error: { statusCode: number; code: string } })[]
  t.same(
    results.map((r) => ('error' in r ? [r.error.statusCode, r.error.code] : 'ok')),
    [
      'ok',
      [400, 'SSE_ERR_INVALID_EVENT'],
      [400, 'SSE_ERR_RESERVED_EVENT'],
      [400, 'SSE_ERR_INVALID_TARGET'],
      [400, 'SSE_ERR_INVALID_TARGET'],
      [400, 'SSE_ERR_INVALID_TOPIC'],
      [400, 'SSE_ERR_DATA_TOO_DEEP'],
      [413, 'SSE_ERR_EVENT_TOO_LARGE'],
      [400, 'SSE_ERR_INVALID_EVENT'],
      'ok',
    ],
  )
  await s.waitForCount('e', 2)
  t.same(
    events(s).map((e) => e.json),
    ['first', 'last'],
    'only the accepted events, in order',
  )
  s.close()
})

t.test('an event nested far past MAX_DATA_DEPTH is refused as too deep, not failed', async (t) => {
  const { url } = await serve(t, { maxDataDepth: 32 })
  // 200,000 levels: deeper than JSON.stringify's stack, so the depth must be checked before encoding.
  const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`
  const res = await postRaw(
    url,
    '/api/sse/batch',
    `{"events":[{"event":"e","data":${deep},"broadcast":true},{"event":"e","data":1,"broadcast":true}]}`,
    { 'content-type': 'application/json', authorization: `Bearer ${PUBLISHER()}` },
  )
  t.equal(res.status, 207)
  const [first, second] = (res.body as { results: Record<string, unknown>[] }).results
  t.same(first, {
    error: { statusCode: 400, code: 'SSE_ERR_DATA_TOO_DEEP', message: 'data nests deeper than 32 levels' },
  })
  t.type(second?.id, 'string')
  // With an Idempotency-Key the whole body is fingerprinted: that too must read it without recursing.
  const keyed = async () =>
    postRaw(
      url,
      '/api/sse/batch',
      `{"events":[{"event":"e","data":${deep},"broadcast":true},{"event":"e","data":1,"broadcast":true}]}`,
      {
        'content-type': 'application/json',
        authorization: `Bearer ${PUBLISHER()}`,
        'idempotency-key': 'deep-batch-1',
      },
    )
  const firstKeyed = await keyed()
  t.equal(firstKeyed.status, 207, 'with a key: the same 207')
  t.match(firstKeyed.body, { results: [{ error: { code: 'SSE_ERR_DATA_TOO_DEEP' } }, { id: String }] })
  const repeat = await keyed()
  t.equal(repeat.status, 207)
  t.same(repeat.body, firstKeyed.body, 'a repeat answers the first')
  t.equal(repeat.headers['idempotent-replayed'], 'true')
})

t.test('an event is held to MAX_PAYLOAD_BYTES as JSON, to the byte', async (t) => {
  const limit = 512
  const { url } = await serve(t, { maxPayloadBytes: limit })
  // The event as the service encodes it: 1e2 becomes 100 and \u00e9 becomes 2 bytes of UTF-8.
  const sized = (pad: number) => ({ event: 'e', data: { n: 100, s: `é${'a'.repeat(pad)}` }, broadcast: true })
  const pad = limit - Buffer.byteLength(JSON.stringify(sized(0)))
  const source = (p: number) =>
    `{"event":"e","data":{"n":1e2,"s":"\\u00e9${'a'.repeat(p)}"},"broadcast":true}`
  t.equal(Buffer.byteLength(JSON.stringify(sized(pad))), limit)
  const res = await postRaw(url, '/api/sse/batch', `{"events":[${source(pad)},${source(pad + 1)}]}`, {
    'content-type': 'application/json',
    authorization: `Bearer ${PUBLISHER()}`,
  })
  t.equal(res.status, 207)
  const results = (res.body as { results: Record<string, unknown>[] }).results
  t.type(results[0]?.id, 'string', 'exactly MAX_PAYLOAD_BYTES: accepted')
  t.match(results[1], { error: { statusCode: 413, code: 'SSE_ERR_EVENT_TOO_LARGE' } }, 'one byte more: 413')
})

t.test('the request itself: size, count, auth', async (t) => {
  const { url } = await serve(t, { maxBatchBytes: 4096 })
  expectError(t, await post(url, '/api/sse/batch', { events: [] }, PUBLISHER()), 400, 'FST_ERR_VALIDATION')
  const many = Array.from({ length: 1001 }, () => ({ event: 'e', data: 1, broadcast: true }))
  const big = await postRaw(url, '/api/sse/batch', JSON.stringify({ events: many }), {
    'content-type': 'application/json',
    authorization: `Bearer ${PUBLISHER()}`,
  })
  t.equal(big.status, 413, 'over MAX_BATCH_BYTES: 413')
  const { url: roomy } = await serve(t, { maxBatchBytes: 1_048_576 })
  expectError(
    t,
    await post(roomy, '/api/sse/batch', { events: many }, PUBLISHER()),
    400,
    'FST_ERR_VALIDATION',
  )
  expectError(
    t,
    await post(url, '/api/sse/batch', { events: [{ event: 'e', data: 1, broadcast: true }] }),
    401,
    'SSE_ERR_TOKEN_REQUIRED',
  )
  expectError(
    t,
    await post(
      url,
      '/api/sse/batch',
      { events: [{ event: 'e', data: 1, broadcast: true }] },
      mint('someone'),
    ),
    403,
    'SSE_ERR_MISSING_SCOPE',
  )
})

t.test(
  'over Redis: one batch, two instances, ids in order, each connection once',
  { skip: await skipWithoutRedis() },
  async (t) => {
    const [one, two] = await instances(t, 2)
    if (one === undefined || two === undefined) throw new Error('two instances')
    const a = await openStream(one.url, { token: mint('alice') })
    const b = await openStream(two.url, { token: mint('bob') })
    await a.waitFor((e) => e.event === 'connected')
    await b.waitFor((e) => e.event === 'connected')
    const batch = Array.from({ length: 200 }, (_, i) => ({
      event: 'e',
      data: i,
      userIds: [i % 2 ? 'alice' : 'bob'],
    }))
    const res = await post(two.url, '/api/sse/batch', { events: batch }, PUBLISHER())
    t.equal(res.status, 202)
    const results = res.body.results as { id: string; delivered: number }[]
    t.same(
      results.map((r) => r.delivered),
      batch.map((_, i) => (i % 2 ? 0 : 1)),
      "delivered counts the answering instance's connections",
    )
    await a.waitForCount('e', 100)
    await b.waitForCount('e', 100)
    t.same(
      events(a).map((e) => e.id),
      results.filter((_, i) => i % 2).map((r) => r.id),
      'alice on the other instance: her 100, in order',
    )
    t.same(
      events(b).map((e) => e.json),
      batch.filter((_, i) => !(i % 2)).map((x) => x.data),
    )
    a.close()
    b.close()
  },
)
