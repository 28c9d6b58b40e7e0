import { once } from 'node:events'
import net from 'node:net'
import t, { type Test } from 'tap'
import { request } from 'undici'
import {
  ADMIN,
  badTokens,
  eventually,
  expectError,
  get,
  memoryLogger,
  mint,
  openStream,
  PUBLISHER,
  post,
  type Stream,
  serve,
} from '../helper.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The parts of a refused stream that show no stream was started. */
function refusedBeforeAnyByte(t: Tap, s: Stream): void {
  t.not(s.status, 200)
  t.match(s.headers['content-type'], /^application\/json/, 'a JSON answer, not an event stream')
  t.equal(s.text, '', 'no stream byte')
}
type Tap = Test

async function totalConnections(url: string): Promise<number> {
  const res = await get(url, '/api/sse/stats', ADMIN())
  return (res.body as { totalConnections: number }).totalConnections
}

t.test('stream headers', async (t) => {
  const { url } = await serve(t)
  const s = await openStream(url)
  t.teardown(() => s.close())
  t.equal(s.status, 200)
  t.equal(s.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(s.headers['cache-control'], 'no-cache, no-transform')
  t.equal(s.headers['x-accel-buffering'], 'no')
  t.equal(s.headers['content-length'], undefined, 'no length: the body is open-ended')
  t.equal(s.headers['content-encoding'], undefined, 'never compressed')
})

t.test('HEAD answers what a GET would, and opens no stream', async (t) => {
  const { url, app } = await serve(t, { maxConnectionsPerUser: 1 })
  const head = async (headers: Record<string, string> = {}) => {
    const res = await request(`${url}/api/sse`, { method: 'HEAD', headers, headersTimeout: 5000 })
    await res.body.text()
    return res
  }
  const ok = await head()
  t.equal(ok.statusCode, 200)
  t.equal(ok.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(ok.headers['cache-control'], 'no-cache, no-transform')
  t.equal(app.sse.size, 0, 'no connection is counted')
  t.equal(
    (await head({ authorization: 'Bearer not.a.token' })).statusCode,
    401,
    'a bad token: 401 as for GET',
  )
  const alice = await openStream(url, { token: mint('alice') })
  t.teardown(() => alice.close())
  await alice.waitFor((e) => e.event === 'connected')
  const full = await head({ authorization: `Bearer ${mint('alice')}` })
  t.equal(full.statusCode, 429, 'past MAX_CONNECTIONS_PER_USER: 429 as for GET')
  t.equal(app.sse.size, 1)
})

t.test('the first bytes are retry, then event: connected', async (t) => {
  const { url } = await serve(t, { clientRetryMs: 1234 })
  const s = await openStream(url)
  t.teardown(() => s.close())
  const connected = await s.waitFor((e) => e.event === 'connected')
  t.match(s.text, /^retry: 1234\nevent: connected\ndata: \{/, 'retry first, connected second')
  t.equal(s.events[0], connected, 'connected is the first event')
  const data = connected.json as Record<string, unknown>
  t.match(data, { clientId: UUID, userId: null, anonymous: true })
  t.equal(new Date(data.timestamp as string).toISOString(), data.timestamp, 'an ISO timestamp')
  t.ok(Math.abs(Date.parse(data.timestamp as string) - Date.now()) < 60_000, 'about now')
})

t.test('each stream gets its own client id', async (t) => {
  const { url } = await serve(t)
  const streams = await Promise.all([openStream(url), openStream(url), openStream(url)])
  t.teardown(() => {
    for (const s of streams) s.close()
  })
  const ids = await Promise.all(
    streams.map(
      async (s) => ((await s.waitFor((e) => e.event === 'connected')).json as { clientId: string }).clientId,
    ),
  )
  t.equal(new Set(ids).size, 3)
})

t.test('a token in the header or in ?token= tags the stream with its subject', async (t) => {
  const { url } = await serve(t)
  const token = mint('alice')
  for (const options of [{ token }, { query: { token } }]) {
    const s = await openStream(url, options)
    const connected = await s.waitFor((e) => e.event === 'connected')
    t.match(connected.json, { clientId: UUID, userId: 'alice', anonymous: false })
    s.close()
  }
})

t.test('?userId= is an assertion about the token', async (t) => {
  const { url } = await serve(t)
  const token = mint('alice')
  const same = await openStream(url, { token, query: { userId: 'alice' } })
  t.equal(same.status, 200, 'equal to the subject: fine')
  t.match((await same.waitFor((e) => e.event === 'connected')).json, { userId: 'alice' })
  same.close()

  const viaQuery = await openStream(url, { query: { token, userId: 'alice' } })
  t.equal(viaQuery.status, 200)
  viaQuery.close()

  const spoofed = await openStream(url, { token, query: { userId: 'bob' } })
  expectError(t, { status: spoofed.status, body: spoofed.body }, 403, 'SSE_ERR_USER_MISMATCH')
  refusedBeforeAnyByte(t, spoofed)

  const noToken = await openStream(url, { query: { userId: 'bob' } })
  expectError(t, { status: noToken.status, body: noToken.body }, 401, 'SSE_ERR_TOKEN_REQUIRED', /token/i)
  refusedBeforeAnyByte(t, noToken)
  t.equal(await totalConnections(url), 0, 'refused streams were never registered')
})

t.test('invalid tokens are 401 and never a silent downgrade to anonymous', async (t) => {
  const { url } = await serve(t)
  for (const [what, token] of Object.entries(badTokens('alice'))) {
    for (const [how, options] of [
      ['header', { token }],
      ['query', { query: { token } }],
    ] as const) {
      const s = await openStream(url, options)
      t.test(`${what} in the ${how}`, async (t) => {
        expectError(t, { status: s.status, body: s.body }, 401, 'SSE_ERR_INVALID_TOKEN')
        refusedBeforeAnyByte(t, s)
      })
    }
  }
  const malformedHeader = await openStream(url, { headers: { authorization: 'Basic YTpi' } })
  expectError(t, { status: malformedHeader.status, body: malformedHeader.body }, 401, 'SSE_ERR_INVALID_TOKEN')
  // A bad header is not rescued by a good query token.
  const mixed = await openStream(url, {
    headers: { authorization: 'Bearer a.b.c' },
    query: { token: mint('alice') },
  })
  expectError(t, { status: mixed.status, body: mixed.body }, 401, 'SSE_ERR_INVALID_TOKEN')
  t.equal(await totalConnections(url), 0)
})

t.test('ALLOW_ANONYMOUS=false: a token is required', async (t) => {
  const { url } = await serve(t, { allowAnonymous: false })
  const anon = await openStream(url)
  expectError(t, { status: anon.status, body: anon.body }, 401, 'SSE_ERR_TOKEN_REQUIRED', /anonymous/)
  refusedBeforeAnyByte(t, anon)
  const alice = await openStream(url, { token: mint('alice') })
  t.equal(alice.status, 200)
  alice.close()
})

t.test('heartbeats arrive at the configured interval', async (t) => {
  const { url } = await serve(t, { heartbeatIntervalMs: 50 })
  const s = await openStream(url)
  t.teardown(() => s.close())
  const beats = await s.waitForCount('heartbeat', 3)
  for (const beat of beats) {
    const data = beat.json as { timestamp: string }
    t.same(Object.keys(data), ['timestamp'])
    t.equal(new Date(data.timestamp).toISOString(), data.timestamp)
    t.equal(beat.id, undefined, 'no id on heartbeats')
  }
})

t.test('a client that aborts is gone from stats within one second', async (t) => {
  const { url, app } = await serve(t)
  const keep = await openStream(url, { token: mint('bob') })
  const s = await openStream(url, { token: mint('alice') })
  await s.waitFor((e) => e.event === 'connected')
  t.equal(await totalConnections(url), 2)
  s.close()
  t.ok(await eventually(async () => (await totalConnections(url)) === 1, 1000), 'removed')
  const stats = (await get(url, '/api/sse/stats', ADMIN())).body as { users: unknown[]; uniqueUsers: number }
  t.same(stats.users, [{ userId: 'bob', connections: 1 }])
  t.equal(app.sse.userConnectionCount('alice'), 0)
  keep.close()
})

/** Opens a stream on a raw socket that never reads what it is sent. */
async function pausedReader(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url)
  const socket = net.connect(Number(port), hostname)
  await once(socket, 'connect')
  // No 'data' listener: the socket stays paused and the kernel buffers fill up.
  socket.write(`GET /api/sse HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAccept: text/event-stream\r\n\r\n`)
  return socket
}

t.test(
  'a paused reader is disconnected at the buffer limit while another client keeps receiving',
  async (t) => {
    const { url, app } = await serve(t, { maxBufferedBytes: 64 * 1024 })
    const good = await openStream(url, { token: mint('good') })
    await good.waitFor((e) => e.event === 'connected')
    const raw = await pausedReader(url)
    t.teardown(() => raw.destroy())
    t.ok(await eventually(() => app.sse.size === 2), 'the paused reader is connected')

    const payload = 'x'.repeat(32 * 1024)
    const sent: string[] = []
    // Bounded: the loopback buffers hold a few MB at most; 2000 x 32 KiB is far beyond that.
    for (let i = 0; i < 2000 && app.sse.stats().slowClientsDisconnected === 0; i++) {
      const { id } = app.sse.broadcast('big', { i, payload })
      sent.push(id)
      // Paced by the good reader: it is never behind, so only the paused one can pass the limit.
      await good.waitFor((e) => e.id === id)
    }
    const stats = (await get(url, '/api/sse/stats', ADMIN())).body as Record<string, number>
    t.equal(stats.slowClientsDisconnected, 1, 'counted')
    t.equal(stats.totalConnections, 1, 'only the good reader is left')
    t.comment(`paused reader dropped after ${sent.length} events of 32 KiB`)

    const after = await post(
      url,
      '/api/sse',
      { event: 'after', data: { ok: true }, broadcast: true },
      PUBLISHER(),
    )
    t.same(after.body, { id: after.body.id, delivered: 1 })
    await good.waitFor((e) => e.id === after.body.id)
    t.same(
      good.named('big').map((e) => e.id),
      sent,
      'the good reader got every event, once, in order',
    )
    t.notOk(good.ended, 'the good reader is still connected')
    // Ended by the server rather than aborted: an aborted undici request can leave a fresh, never-used
    // connection behind, which Node's server.close() waits for (see the report).
    app.sse.disconnectAll()
    await good.waitForEnd()

    // The server closed the paused reader's connection: reading now drains it to its end.
    raw.resume()
    t.ok(
      await eventually(() => raw.readableEnded || raw.destroyed),
      'the paused reader’s connection was closed by the server',
    )
  },
)

t.test('MAX_CONNECTIONS: 503 before any stream byte', async (t) => {
  const { url } = await serve(t, { maxConnections: 3 })
  const open = [await openStream(url), await openStream(url, { token: mint('alice') }), await openStream(url)]
  t.teardown(() => {
    for (const s of open) s.close()
  })
  for (const options of [{}, { token: mint('bob') }]) {
    const s = await openStream(url, options)
    expectError(t, { status: s.status, body: s.body }, 503, 'SSE_ERR_TOO_MANY_CONNECTIONS', /3/)
    refusedBeforeAnyByte(t, s)
  }
  open[0]?.close()
  t.ok(
    await eventually(async () => {
      const s = await openStream(url)
      s.close()
      return s.status === 200
    }),
    'room again after a client leaves',
  )
})

t.test('MAX_CONNECTIONS_PER_USER: 429 for that user only', async (t) => {
  const { url } = await serve(t, { maxConnectionsPerUser: 2 })
  const tabs = [
    await openStream(url, { token: mint('alice') }),
    await openStream(url, { token: mint('alice') }),
  ]
  const third = await openStream(url, { token: mint('alice') })
  expectError(t, { status: third.status, body: third.body }, 429, 'SSE_ERR_USER_CONNECTION_LIMIT', /2/)
  refusedBeforeAnyByte(t, third)
  const bob = await openStream(url, { token: mint('bob') })
  t.equal(bob.status, 200, 'other users are not affected')
  const anon = await openStream(url)
  t.equal(anon.status, 200, 'anonymous streams are not affected')
  tabs[0]?.close()
  t.ok(await eventually(async () => (await totalConnections(url)) === 3))
  const again = await openStream(url, { token: mint('alice') })
  t.equal(again.status, 200, 'a freed slot can be used again')
  for (const s of [tabs[1], bob, anon, again]) s?.close()
})

t.test('MAX_ANONYMOUS_PER_IP: 429 for anonymous streams from that address', async (t) => {
  const { url } = await serve(t, { maxAnonymousPerIp: 2 })
  const open = [await openStream(url), await openStream(url)]
  const third = await openStream(url)
  expectError(t, { status: third.status, body: third.body }, 429, 'SSE_ERR_IP_CONNECTION_LIMIT', /2/)
  refusedBeforeAnyByte(t, third)
  const alice = await openStream(url, { token: mint('alice') })
  t.equal(alice.status, 200, 'a token is not limited by the anonymous limit')
  for (const s of [...open, alice]) s.close()
})

t.test('a server that is shutting down refuses new streams with 503', async (t) => {
  const { url, app } = await serve(t)
  const s = await openStream(url)
  await s.waitFor((e) => e.event === 'connected')
  app.sse.shutdown()
  const last = await s.waitFor((e) => e.event === 'disconnected')
  t.match(last.json, { reason: 'server_shutdown' })
  await s.waitForEnd()
  const refused = await openStream(url)
  expectError(t, { status: refused.status, body: refused.body }, 503, 'SSE_ERR_SHUTTING_DOWN')
  refusedBeforeAnyByte(t, refused)
})

t.test('CORS headers survive on the stream response', async (t) => {
  const { url } = await serve(t, { corsOrigins: ['http://app.test'] })
  const allowed = await openStream(url, { headers: { origin: 'http://app.test' } })
  t.equal(allowed.status, 200)
  t.equal(allowed.headers['access-control-allow-origin'], 'http://app.test')
  t.equal(allowed.headers['access-control-allow-credentials'], 'true')
  t.match(allowed.headers.vary, /origin/i, 'caches keep answers per origin')
  t.equal(allowed.headers['content-type'], 'text/event-stream; charset=utf-8')
  allowed.close()

  for (const origin of ['http://evil.test', 'null', 'http://app.test.evil.test', 'https://app.test']) {
    const s = await openStream(url, { headers: { origin } })
    t.equal(s.headers['access-control-allow-origin'], undefined, `no CORS for ${origin}`)
    s.close()
  }

  // The browser must be able to read a refusal too.
  const refused = await openStream(url, { headers: { origin: 'http://app.test' }, query: { token: 'a.b.c' } })
  t.equal(refused.status, 401)
  t.equal(refused.headers['access-control-allow-origin'], 'http://app.test')
})

t.test('CORS with *: any origin but null, no credentials', async (t) => {
  const { url } = await serve(t, { corsOrigins: ['*'] })
  const s = await openStream(url, { headers: { origin: 'http://anywhere.test' } })
  t.equal(s.headers['access-control-allow-origin'], '*')
  t.equal(s.headers['access-control-allow-credentials'], undefined)
  s.close()
  const nullOrigin = await openStream(url, { headers: { origin: 'null' } })
  t.equal(nullOrigin.headers['access-control-allow-origin'], undefined, 'Origin: null gets nothing')
  nullOrigin.close()
})

t.test('tokens never appear in the logs', async (t) => {
  const { logger, lines } = memoryLogger('trace')
  const { url, app } = await serve(t, {}, logger)
  const header = mint('alice')
  const query = mint('bob')
  const bad = `${mint('carol').slice(0, -4)}AAAA`
  const a = await openStream(url, { token: header })
  const b = await openStream(url, { query: { token: query } })
  await a.waitFor((e) => e.event === 'connected')
  await b.waitFor((e) => e.event === 'connected')
  const refused = await openStream(url, { query: { token: bad } })
  t.equal(refused.status, 401)
  await get(url, `/no/such/route?token=${query}`)
  await post(url, '/api/sse', { event: 'x', data: 1, broadcast: true }, PUBLISHER())
  // Ended by the server: aborting an undici request can leave a never-used connection that delays close().
  app.sse.disconnectAll()
  t.ok(await eventually(() => lines.filter((l) => l.includes('stream disconnected')).length === 2))
  const all = lines.join('')
  t.match(all, /stream connected/, 'the logs were captured')
  for (const [what, token] of Object.entries({ header, query, bad })) {
    t.notOk(all.includes(token), `the ${what} token is not logged`)
    t.notOk(all.includes(token.split('.')[2] ?? '-'), `not even the ${what} token's signature`)
  }
})

t.test('a percent-encoded token parameter is redacted too', async (t) => {
  const { logger, lines } = memoryLogger('info')
  const { url } = await serve(t, {}, logger)
  const token = mint('alice')
  for (const key of ['to%6Ben', '%74oken', 'TOKEN']) {
    const res = await get(url, `/nope?${key}=${token}`)
    t.equal(res.status, 404)
    t.notOk(JSON.stringify(res.body).includes(token), `${key}: not echoed in the 404`)
  }
  const raw = await openRaw(`${url}/api/sse?to%6Ben=${token}`)
  t.equal(raw, 200, 'the encoded parameter authenticates (Fastify decodes parameter names)')
  t.ok(await eventually(() => lines.some((l) => l.includes('stream connected'))))
  t.notOk(lines.join('').includes(token), 'so it must not be logged either')
})

/** Opens a stream at an exact URL (no re-encoding of the query) and returns its status; the stream is closed by the server at teardown. */
async function openRaw(full: string): Promise<number> {
  const { request } = await import('undici')
  const res = await request(full, { headers: { accept: 'text/event-stream' } })
  // Read the first bytes, then stop: the server ends the stream when the app closes.
  for await (const _ of res.body) break
  return res.statusCode
}
