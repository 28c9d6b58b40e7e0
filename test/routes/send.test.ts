import { gzipSync } from 'node:zlib'
import t from 'tap'
import {
  ADMIN,
  expectError,
  mint,
  openStream,
  PUBLISHER,
  post,
  postRaw,
  type Stream,
  serve,
  sleep,
} from '../helper.js'

const EVENT_ID = /^\d+-\d+$/

async function connected(s: Stream): Promise<string> {
  const e = await s.waitFor((e) => e.event === 'connected')
  return (e.json as { clientId: string }).clientId
}

/** Publishes a broadcast marker and waits for it on every stream: whatever was sent earlier has arrived by then. */
async function settle(url: string, streams: Stream[]): Promise<void> {
  const res = await post(url, '/api/sse', { event: 'marker', data: null, broadcast: true }, PUBLISHER())
  await Promise.all(streams.map((s) => s.waitFor((e) => e.id === res.body.id)))
}

t.test('401 without a token, 403 without sse:publish', async (t) => {
  const { url } = await serve(t)
  const body = { event: 'x', data: 1, broadcast: true }
  const none = await post(url, '/api/sse', body)
  expectError(t, none, 401, 'SSE_ERR_TOKEN_REQUIRED', /sse:publish/)
  expectError(t, await post(url, '/api/sse', body, mint('svc')), 403, 'SSE_ERR_MISSING_SCOPE', /sse:publish/)
  expectError(t, await post(url, '/api/sse', body, ADMIN()), 403, 'SSE_ERR_MISSING_SCOPE', /sse:publish/)
  expectError(t, await post(url, '/api/sse', body, 'a.b.c'), 401, 'SSE_ERR_INVALID_TOKEN')
  expectError(
    t,
    await post(url, '/api/sse', body, mint('svc', { scopes: ['sse:publish'], expiresInMs: -1000 })),
    401,
    'SSE_ERR_INVALID_TOKEN',
  )
})

t.test('the publish scope as a string or as an array', async (t) => {
  const { url } = await serve(t)
  const body = { event: 'x', data: 1, broadcast: true }
  for (const scope of ['sse:publish', 'other sse:publish', ['sse:publish'], ['a', 'sse:publish']]) {
    const res = await post(url, '/api/sse', body, mint('svc', { claims: { scope } }))
    t.equal(res.status, 202, JSON.stringify(scope))
  }
})

t.test('authentication comes before the body is looked at', async (t) => {
  const { url } = await serve(t, { maxPayloadBytes: 1024 })
  const big = await postRaw(url, '/api/sse', 'x'.repeat(4096), { 'content-type': 'application/json' })
  expectError(t, big, 401, 'SSE_ERR_TOKEN_REQUIRED')
  const text = await postRaw(url, '/api/sse', 'hello', { 'content-type': 'text/plain' })
  expectError(t, text, 401, 'SSE_ERR_TOKEN_REQUIRED')
})

t.test('202 {id, delivered}', async (t) => {
  const { url } = await serve(t)
  const res = await post(url, '/api/sse', { event: 'x', data: { a: 1 }, broadcast: true }, PUBLISHER())
  t.equal(res.status, 202)
  t.same(Object.keys(res.body).sort(), ['delivered', 'id'])
  t.match(res.body.id, EVENT_ID)
  t.equal(res.body.delivered, 0, 'nobody connected')
  const next = await post(url, '/api/sse', { event: 'x', data: null, broadcast: true }, PUBLISHER())
  t.not(next.body.id, res.body.id, 'a new id for each event')
})

t.test('413 over MAX_PAYLOAD_BYTES', async (t) => {
  const { url } = await serve(t, { maxPayloadBytes: 1024 })
  const token = PUBLISHER()
  const small = await post(url, '/api/sse', { event: 'x', data: 'y'.repeat(900), broadcast: true }, token)
  t.equal(small.status, 202, 'under the limit')
  const big = await post(url, '/api/sse', { event: 'x', data: 'y'.repeat(2000), broadcast: true }, token)
  expectError(t, big, 413, 'FST_ERR_CTP_BODY_TOO_LARGE')
})

t.test('the default limit is 64 KiB', async (t) => {
  const { url } = await serve(t)
  const token = PUBLISHER()
  const under = await post(url, '/api/sse', { event: 'x', data: 'y'.repeat(60_000), broadcast: true }, token)
  t.equal(under.status, 202)
  const over = await post(url, '/api/sse', { event: 'x', data: 'y'.repeat(70_000), broadcast: true }, token)
  expectError(t, over, 413, 'FST_ERR_CTP_BODY_TOO_LARGE')
})

t.test('415 for a body that is not JSON', async (t) => {
  const { url } = await serve(t)
  const auth = { authorization: `Bearer ${PUBLISHER()}` }
  for (const type of [
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/xml',
  ]) {
    const res = await postRaw(url, '/api/sse', '{"event":"x","data":1,"broadcast":true}', {
      ...auth,
      'content-type': type,
    })
    t.test(type, async (t) => expectError(t, res, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'))
  }
  const charset = await postRaw(url, '/api/sse', '{"event":"x","data":1,"broadcast":true}', {
    ...auth,
    'content-type': 'application/json; charset=utf-8',
  })
  t.equal(charset.status, 202, 'a charset parameter is fine')
})

t.test('415 for a compressed body, named by its Content-Encoding', async (t) => {
  const { url } = await serve(t)
  const headers = { authorization: `Bearer ${PUBLISHER()}`, 'content-type': 'application/json' }
  const body = '{"event":"x","data":1,"broadcast":true}'
  for (const encoding of ['gzip', 'br', 'deflate, gzip']) {
    const res = await postRaw(url, '/api/sse', gzipSync(body), { ...headers, 'content-encoding': encoding })
    expectError(t, res, 415, 'SSE_ERR_UNSUPPORTED_ENCODING')
    t.match((res.body as { message: string }).message, encoding)
  }
  const batch = await postRaw(url, '/api/sse/batch', gzipSync(`{"events":[${body}]}`), {
    ...headers,
    'content-encoding': 'gzip',
  })
  expectError(t, batch, 415, 'SSE_ERR_UNSUPPORTED_ENCODING')
  const identity = await postRaw(url, '/api/sse', body, { ...headers, 'content-encoding': 'identity' })
  t.equal(identity.status, 202, 'identity is no encoding')
})

t.test('400 for invalid JSON', async (t) => {
  const { url } = await serve(t)
  const headers = { authorization: `Bearer ${PUBLISHER()}`, 'content-type': 'application/json' }
  for (const body of ['{bad', '{"event":"x",}', '[', "{'event':'x'}", 'undefined']) {
    const res = await postRaw(url, '/api/sse', body, headers)
    t.test(body, async (t) => expectError(t, res, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'))
  }
  const empty = await postRaw(url, '/api/sse', '', headers)
  expectError(t, empty, 400, 'FST_ERR_VALIDATION', undefined)
})

t.test('400 schema errors', async (t) => {
  const { url } = await serve(t)
  const token = PUBLISHER()
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `u${i}`)
  const cases: [string, unknown, string, RegExp?][] = [
    ['bad event name (space)', { event: 'a b', data: 1, broadcast: true }, 'FST_ERR_VALIDATION', /event/],
    [
      'bad event name (newline)',
      { event: 'a\nevent: admin', data: 1, broadcast: true },
      'FST_ERR_VALIDATION',
    ],
    ['bad event name (empty)', { event: '', data: 1, broadcast: true }, 'FST_ERR_VALIDATION'],
    ['bad event name (65 chars)', { event: 'x'.repeat(65), data: 1, broadcast: true }, 'FST_ERR_VALIDATION'],
    ['bad event name (unicode)', { event: 'café', data: 1, broadcast: true }, 'FST_ERR_VALIDATION'],
    ['event not a string', { event: 42, data: 1, broadcast: true }, 'FST_ERR_VALIDATION'],
    ['no event', { data: 1, broadcast: true }, 'FST_ERR_VALIDATION', /event/],
    ['no data', { event: 'x', broadcast: true }, 'FST_ERR_VALIDATION', /data/],
    ['not an object', [1, 2], 'FST_ERR_VALIDATION'],
    ['unknown property', { event: 'x', data: 1, broadcast: true, extra: 1 }, 'FST_ERR_VALIDATION'],
    ['1001 userIds', { event: 'x', data: 1, userIds: ids(1001) }, 'FST_ERR_VALIDATION', /1000/],
    ['1001 clientIds', { event: 'x', data: 1, clientIds: ids(1001) }, 'FST_ERR_VALIDATION', /1000/],
    ['empty user id', { event: 'x', data: 1, userIds: [''] }, 'FST_ERR_VALIDATION'],
    ['user id not a string', { event: 'x', data: 1, userIds: [1] }, 'FST_ERR_VALIDATION'],
    ['userIds not an array', { event: 'x', data: 1, userIds: 'alice' }, 'FST_ERR_VALIDATION'],
    ['broadcast not a boolean', { event: 'x', data: 1, broadcast: 'true' }, 'FST_ERR_VALIDATION'],
    [
      'broadcast with userIds',
      { event: 'x', data: 1, broadcast: true, userIds: ['a'] },
      'SSE_ERR_INVALID_TARGET',
      /exactly one target/,
    ],
    [
      'broadcast with clientIds',
      { event: 'x', data: 1, broadcast: true, clientIds: ['c'] },
      'SSE_ERR_INVALID_TARGET',
    ],
    ['no target', { event: 'x', data: 1 }, 'SSE_ERR_INVALID_TARGET'],
    ['broadcast false and no ids', { event: 'x', data: 1, broadcast: false }, 'SSE_ERR_INVALID_TARGET'],
    ['empty userIds', { event: 'x', data: 1, userIds: [] }, 'SSE_ERR_INVALID_TARGET'],
    [
      'empty userIds and clientIds',
      { event: 'x', data: 1, userIds: [], clientIds: [] },
      'SSE_ERR_INVALID_TARGET',
    ],
    [
      'reserved: connected',
      { event: 'connected', data: 1, broadcast: true },
      'SSE_ERR_RESERVED_EVENT',
      /connected/,
    ],
    [
      'reserved: heartbeat',
      { event: 'heartbeat', data: 1, broadcast: true },
      'SSE_ERR_RESERVED_EVENT',
      /heartbeat/,
    ],
    [
      'reserved: disconnected',
      { event: 'disconnected', data: 1, userIds: ['a'] },
      'SSE_ERR_RESERVED_EVENT',
      /disconnected/,
    ],
  ]
  for (const [what, body, code, message] of cases) {
    const res = await post(url, '/api/sse', body, token)
    t.test(what, async (t) => expectError(t, res, 400, code, message))
  }
  const exactly1000 = await post(url, '/api/sse', { event: 'x', data: 1, userIds: ids(1000) }, token)
  t.equal(exactly1000.status, 202, '1000 ids are fine')
  const valid = ['a', 'user.updated', 'ns:event/sub.v1-x_y', 'x'.repeat(64), 'Connected', 'heartbeats']
  for (const event of valid) {
    t.equal((await post(url, '/api/sse', { event, data: 1, broadcast: true }, token)).status, 202, event)
  }
})

t.test('a broadcast reaches N clients, once each, with the same id', async (t) => {
  const { url } = await serve(t)
  const streams = await Promise.all([
    openStream(url),
    openStream(url),
    openStream(url, { token: mint('alice') }),
    openStream(url, { token: mint('alice') }),
    openStream(url, { token: mint('bob') }),
  ])
  t.teardown(() => {
    for (const s of streams) s.close()
  })
  await Promise.all(streams.map(connected))
  const res = await post(
    url,
    '/api/sse',
    { event: 'news', data: { headline: 'hi' }, broadcast: true },
    PUBLISHER(),
  )
  t.same(res.body, { id: res.body.id, delivered: 5 })
  for (const s of streams) {
    const e = await s.waitFor((e) => e.event === 'news')
    t.equal(e.id, res.body.id)
    t.same(e.json, { headline: 'hi' })
  }
  await settle(url, streams)
  for (const s of streams) t.equal(s.named('news').length, 1, 'exactly once')
})

t.test('userIds reach every tab of those users and nobody else', async (t) => {
  const { url } = await serve(t)
  const alice = await Promise.all([1, 2, 3].map(() => openStream(url, { token: mint('alice') })))
  const bob = await openStream(url, { token: mint('bob') })
  const carol = await openStream(url, { token: mint('carol') })
  const anon = await openStream(url)
  const everyone = [...alice, bob, carol, anon]
  t.teardown(() => {
    for (const s of everyone) s.close()
  })
  await Promise.all(everyone.map(connected))

  const res = await post(
    url,
    '/api/sse',
    { event: 'private', data: { to: 'alice' }, userIds: ['alice', 'alice'] },
    PUBLISHER(),
  )
  t.same(res.body, { id: res.body.id, delivered: 3 }, 'a repeated id counts once')
  const two = await post(
    url,
    '/api/sse',
    { event: 'pair', data: 2, userIds: ['bob', 'carol', 'nobody'] },
    PUBLISHER(),
  )
  t.equal(two.body.delivered, 2)
  await settle(url, everyone)
  for (const s of alice) {
    t.same(
      s.named('private').map((e) => e.json),
      [{ to: 'alice' }],
      'each tab of alice, once',
    )
    t.equal(s.named('pair').length, 0)
  }
  for (const s of [bob, carol]) {
    t.equal(s.named('private').length, 0, 'not another user')
    t.equal(s.named('pair').length, 1)
  }
  t.equal(anon.named('private').length + anon.named('pair').length, 0, 'not an anonymous stream')
})

t.test('clientIds reach exactly those connections', async (t) => {
  const { url } = await serve(t)
  const a1 = await openStream(url, { token: mint('alice') })
  const a2 = await openStream(url, { token: mint('alice') })
  const anon = await openStream(url)
  const all = [a1, a2, anon]
  t.teardown(() => {
    for (const s of all) s.close()
  })
  const [id1, , idAnon] = await Promise.all(all.map(connected))

  const res = await post(
    url,
    '/api/sse',
    { event: 'direct', data: 'one', clientIds: [id1, idAnon, 'no-such-client'] },
    PUBLISHER(),
  )
  t.equal(res.body.delivered, 2)
  const both = await post(
    url,
    '/api/sse',
    { event: 'both', data: 'b', userIds: ['alice'], clientIds: [id1] },
    PUBLISHER(),
  )
  t.equal(both.body.delivered, 2, 'a connection named twice (by user and by id) counts once')
  await settle(url, all)
  t.equal(a1.named('direct').length, 1)
  t.equal(a2.named('direct').length, 0, 'another tab of the same user is not a target')
  t.equal(anon.named('direct').length, 1, 'anonymous streams can be targeted by id')
  t.equal(a1.named('both').length, 1, 'received once')
  t.equal(a2.named('both').length, 1)
  t.equal(anon.named('both').length, 0)
})

t.test('payloads arrive intact and cannot inject events', async (t) => {
  const { url } = await serve(t)
  const s = await openStream(url)
  t.teardown(() => s.close())
  await connected(s)
  const values = [
    '\n\nevent: admin\ndata: x\n\n',
    '\r\revent: admin\rdata: x\r\r',
    { nested: ['line\r\nbreak', 'NUL\u0000', '🎉 ünïcödé'] },
    null,
    0,
    false,
    [],
  ]
  const ids: string[] = []
  for (const data of values) {
    const res = await post(url, '/api/sse', { event: 'payload', data, broadcast: true }, PUBLISHER())
    t.equal(res.status, 202)
    ids.push(res.body.id)
  }
  await s.waitForCount('payload', values.length)
  await sleep(20)
  t.same(
    s.named('payload').map((e) => e.json),
    values,
  )
  t.same(
    s.named('payload').map((e) => e.id),
    ids,
  )
  t.equal(s.named('admin').length, 0, 'no injected event')
  t.same([...new Set(s.events.map((e) => e.event))].sort(), ['connected', 'payload'])
})
