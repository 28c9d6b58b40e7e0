// Streams over HTTP/2 (TLS_CERT/TLS_KEY) keep every guarantee of HTTP/1.1: the same frames,
// slow clients judged by their own stream, heartbeats, shutdown, replay, limits, CORS, metrics.
import { once } from 'node:events'
import { constants } from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'
import t from 'tap'
import { Agent, setGlobalDispatcher } from 'undici'
import { ADMIN, eventually, expectError, get, mint, openStream, PUBLISHER, post, sleep } from '../helper.js'
import { type H2Stream, h2Session, openH2Stream, serveTls, testCertificate } from '../http2-helper.js'

// undici (HTTP/1.1 over TLS in this file) trusts the test certificate.
setGlobalDispatcher(new Agent({ connect: { ca: (await testCertificate()).cert } }))

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g
const TIMESTAMP = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g
const normalise = (text: string) => text.replace(UUID, '<uuid>').replace(TIMESTAMP, '<timestamp>')

async function totalConnections(url: string): Promise<number> {
  return ((await get(url, '/api/sse/stats', ADMIN())).body as { totalConnections: number }).totalConnections
}

/** A GET over an HTTP/2 session, for plain routes (/metrics, /health). */
async function h2Get(session: import('node:http2').ClientHttp2Session, path: string, headers = {}) {
  const req = session.request({ ':path': path, ...headers })
  const [response] = (await once(req, 'response')) as [Record<string, string | number>]
  req.setEncoding('utf8')
  let body = ''
  for await (const chunk of req) body += chunk
  return { status: Number(response[':status']), headers: response, body }
}

t.test('ALPN offers HTTP/2 and HTTP/1.1 on the same port', async (t) => {
  const { url, cert } = await serveTls(t)
  const port = Number(new URL(url).port)
  for (const [offered, chosen] of [
    [['h2', 'http/1.1'], 'h2'],
    [['http/1.1'], 'http/1.1'],
  ] as const) {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: cert, ALPNProtocols: [...offered] })
    await once(socket, 'secureConnect')
    t.equal(socket.alpnProtocol, chosen, `offered ${offered.join(', ')}: ${chosen}`)
    t.ok(socket.authorized, 'the certificate verifies against its own CA')
    socket.destroy()
  }
  const session = await h2Session(t, url, cert)
  t.equal((await h2Get(session, '/health')).status, 200, '/health over HTTP/2')
  t.equal((await get(url, '/health')).status, 200, '/health over HTTP/1.1 with TLS')
})

t.test('the same frames, byte for byte, over HTTP/2 and over HTTP/1.1', async (t) => {
  const { app, url, cert } = await serveTls(t, { clientRetryMs: 1500 })
  const session = await h2Session(t, url, cert)
  const token = mint('alice')
  const h1 = await openStream(url, { token })
  const h2 = await openH2Stream(session, { headers: { authorization: `Bearer ${token}` } })
  t.teardown(() => {
    h1.close()
    h2.close()
  })
  t.equal(h2.status, 200)
  t.equal(h2.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(h2.headers['cache-control'], 'no-cache, no-transform')
  t.equal(h2.headers['x-accel-buffering'], 'no')
  t.equal(h2.headers.connection, undefined, 'no connection-specific header over HTTP/2')
  t.equal(h2.headers['content-length'], undefined)
  await Promise.all([h1, h2].map((s) => s.waitFor((e) => e.event === 'connected')))
  t.equal(await totalConnections(url), 2)

  const payloads = [
    { event: 'plain', data: { text: 'hello' } },
    { event: 'lines', data: 'one\r\ntwo\rthree\nfour\n\n' },
    { event: 'unicode', data: { text: 'héllo 🎉 \u2028 done' } },
    { event: 'big', data: { blob: 'x'.repeat(40_000) } },
    { event: 'number', data: 42 },
  ]
  for (const p of payloads) {
    const res = await post(url, '/api/sse', { ...p, broadcast: true }, PUBLISHER())
    t.equal(res.body.delivered, 2, `${p.event} delivered to both`)
  }
  await post(url, '/api/sse', { event: 'to-alice', data: [1, 2], userIds: ['alice'] }, PUBLISHER())
  app.sse.heartbeat()
  await Promise.all([h1, h2].map((s) => s.waitFor((e) => e.event === 'heartbeat')))
  const ended = await post(url, '/api/sse/disconnect-all', undefined, ADMIN())
  t.equal(ended.body.disconnected, 2)
  await Promise.all([h1.waitForEnd(), h2.waitForEnd()])

  t.equal(h2.rstCode, constants.NGHTTP2_NO_ERROR, 'the HTTP/2 stream ended normally, not reset')
  t.equal(normalise(h2.text), normalise(h1.text), 'identical once client ids and timestamps are normalised')
  t.match(h2.text, /^retry: 1500\nevent: connected\n/, 'starts as every stream does')
  t.same(
    h2.events.map((e) => e.event),
    ['connected', ...payloads.map((p) => p.event), 'to-alice', 'heartbeat', 'disconnected'],
  )
  t.same(h2.named('lines')[0]?.json, payloads[1]?.data, 'CR, LF and CRLF survive')
})

t.test('heartbeats over HTTP/2', async (t) => {
  const { url, cert } = await serveTls(t, { heartbeatIntervalMs: 50 })
  const session = await h2Session(t, url, cert)
  const s = await openH2Stream(session)
  t.teardown(() => s.close())
  const beats = await s.waitForCount('heartbeat', 3)
  for (const beat of beats) {
    t.same(Object.keys(beat.json as object), ['timestamp'])
    t.equal(beat.id, undefined)
  }
})

t.test('a slow HTTP/2 reader is dropped by its own stream backlog; its session-mate is not', async (t) => {
  const maxBufferedBytes = 32 * 1024
  const { app, url, cert } = await serveTls(t, { maxBufferedBytes })
  const session = await h2Session(t, url, cert)
  const fast = await openH2Stream(session)
  const slow = await openH2Stream(session)
  t.teardown(() => {
    fast.close()
    slow.close()
  })
  await Promise.all([fast, slow].map((s) => s.waitFor((e) => e.event === 'connected')))
  // The slow one stops reading: its stream window (64 KiB) fills, then the server's stream holds the rest.
  slow.req.pause()
  const blob = 'y'.repeat(4000)
  const count = 100
  for (let i = 0; i < count; i++) {
    app.sse.broadcast('tick', { i, blob })
    await sleep(2)
  }
  t.ok(await eventually(() => slow.ended, 5000), 'the slow stream is closed')
  t.equal(
    slow.rstCode,
    constants.NGHTTP2_CANCEL,
    'reset with CANCEL: no goodbye for a client that does not read',
  )
  await fast.waitForCount('tick', count, 10_000)
  t.same(
    fast.named('tick').map((e) => (e.json as { i: number }).i),
    Array.from({ length: count }, (_, i) => i),
    'the other stream on the same session got every event, in order',
  )
  t.notOk(session.destroyed, 'the session is still up')
  const stats = (await get(url, '/api/sse/stats', ADMIN())).body as Record<string, number>
  t.equal(stats.slowClientsDisconnected, 1, 'counted as a slow client')
  t.equal(stats.totalConnections, 1)
  const after = app.sse.broadcast('after', {})
  t.equal(after.delivered, 1)
  await fast.waitFor((e) => e.event === 'after')
  const metrics = await h2Get(session, '/metrics')
  t.match(metrics.body, /^sse_disconnects_total\{reason="slow"\} 1$/m, 'the metric says slow')
})

t.test('a reset HTTP/2 stream is removed at once; the session stays', async (t) => {
  const { url, cert } = await serveTls(t)
  const session = await h2Session(t, url, cert)
  const a = await openH2Stream(session)
  const b = await openH2Stream(session)
  await Promise.all([a, b].map((s) => s.waitFor((e) => e.event === 'connected')))
  t.equal(await totalConnections(url), 2)
  a.req.close(constants.NGHTTP2_CANCEL)
  t.ok(await eventually(async () => (await totalConnections(url)) === 1), 'the reset stream is gone')
  const res = await post(url, '/api/sse', { event: 'still', data: 1, broadcast: true }, PUBLISHER())
  t.equal(res.body.delivered, 1)
  await b.waitFor((e) => e.event === 'still')
  b.close()
})

t.test(
  'graceful shutdown: every HTTP/2 stream gets disconnected server_shutdown, close() finishes',
  async (t) => {
    const { app, url, cert } = await serveTls(t, { clientRetryMs: 1000 })
    const one = await h2Session(t, url, cert)
    const two = await h2Session(t, url, cert)
    const streams: H2Stream[] = [
      await openH2Stream(one),
      await openH2Stream(one, { headers: { authorization: `Bearer ${mint('bob')}` } }),
      await openH2Stream(two),
    ]
    await Promise.all(streams.map((s) => s.waitFor((e) => e.event === 'connected')))
    const goaways = [once(one, 'goaway'), once(two, 'goaway')]
    const started = Date.now()
    await app.close()
    const took = Date.now() - started
    t.ok(took < 1500, `close() finished in ${took} ms, without waiting for the deadline`)
    for (const s of streams) {
      await s.waitForEnd()
      const last = s.events.at(-1)
      t.equal(last?.event, 'disconnected', 'disconnected is the last event')
      t.match(last?.json, { reason: 'server_shutdown', message: String, timestamp: String })
      t.equal(s.rstCode, constants.NGHTTP2_NO_ERROR, 'ended normally')
    }
    await Promise.all(goaways)
    t.pass('each session was told GOAWAY')
    t.ok(await eventually(() => one.destroyed && two.destroyed), 'and both sessions closed')
  },
)

t.test('shutdown does not wait for an HTTP/2 reader that stopped reading', async (t) => {
  // graceMs = min(2000, SHUTDOWN_TIMEOUT_MS / 2) = 500 ms.
  const { app, url, cert } = await serveTls(t, { shutdownTimeoutMs: 1000 })
  const session = await h2Session(t, url, cert)
  const stuck = await openH2Stream(session)
  const reading = await openH2Stream(session)
  await Promise.all([stuck, reading].map((s) => s.waitFor((e) => e.event === 'connected')))
  stuck.req.pause()
  for (let i = 0; i < 50; i++) {
    app.sse.broadcast('fill', { blob: 'z'.repeat(4000) })
    await sleep(2)
  }
  await reading.waitForCount('fill', 50)
  t.notOk(stuck.ended, 'under MAX_BUFFERED_BYTES: not dropped, just stuck')
  // A TCP connection that never began TLS must not hold the shutdown either.
  const idle = net.connect(Number(new URL(url).port), '127.0.0.1')
  idle.on('error', () => {})
  await once(idle, 'connect')
  t.teardown(() => idle.destroy())
  const started = Date.now()
  await app.close()
  const took = Date.now() - started
  t.ok(took >= 400 && took < 3000, `close() cut the stuck connection after the grace period (${took} ms)`)
  t.equal(reading.named('disconnected').length, 1, 'the reader on the same session got its goodbye')
  await eventually(() => idle.destroyed || idle.readableEnded)
  t.ok(idle.destroyed || idle.readableEnded, 'the idle TCP connection was closed')
})

t.test('Last-Event-ID replay over HTTP/2', async (t) => {
  const { url, cert } = await serveTls(t)
  const ids: string[] = []
  for (const n of [1, 2, 3]) {
    ids.push((await post(url, '/api/sse', { event: 'n', data: n, broadcast: true }, PUBLISHER())).body.id)
  }
  const session = await h2Session(t, url, cert)
  const s = await openH2Stream(session, { headers: { 'last-event-id': ids[0] as string } })
  t.teardown(() => s.close())
  const connected = await s.waitFor((e) => e.event === 'connected')
  t.match(connected.json, { recovered: true, replayed: 2, lastEventId: ids[2] })
  const replayed = await s.waitForCount('n', 2)
  t.same(
    replayed.map((e) => [e.id, e.json]),
    [
      [ids[1], 2],
      [ids[2], 3],
    ],
    'exactly the missed events, in order',
  )
})

t.test('limits over HTTP/2 are JSON errors before any stream byte', async (t) => {
  const { url, cert } = await serveTls(t, { maxAnonymousPerIp: 1, maxConnectionsPerUser: 1 })
  const session = await h2Session(t, url, cert)
  const first = await openH2Stream(session)
  await first.waitFor((e) => e.event === 'connected')
  const second = await openH2Stream(session)
  t.match(second.headers['content-type'], /^application\/json/)
  expectError(t, { status: second.status, body: second.body }, 429, 'SSE_ERR_IP_CONNECTION_LIMIT')
  t.equal(second.text, '', 'no stream byte')

  const token = mint('carol')
  const carol = await openH2Stream(session, { headers: { authorization: `Bearer ${token}` } })
  await carol.waitFor((e) => e.event === 'connected')
  const again = await openH2Stream(session, { headers: { authorization: `Bearer ${token}` } })
  expectError(t, { status: again.status, body: again.body }, 429, 'SSE_ERR_USER_CONNECTION_LIMIT')
  t.equal(await totalConnections(url), 2, 'refused streams were never registered')
  first.close()
  carol.close()
})

t.test('CORS headers over HTTP/2', async (t) => {
  const { url, cert } = await serveTls(t, { corsOrigins: ['https://app.example.com'] })
  const session = await h2Session(t, url, cert)
  const allowed = await openH2Stream(session, { headers: { origin: 'https://app.example.com' } })
  t.teardown(() => allowed.close())
  t.equal(allowed.status, 200)
  t.equal(allowed.headers['access-control-allow-origin'], 'https://app.example.com')
  t.equal(allowed.headers['access-control-allow-credentials'], 'true')
  t.match(String(allowed.headers.vary), /origin/i)
  const other = await openH2Stream(session, { headers: { origin: 'https://evil.example' } })
  t.teardown(() => other.close())
  t.equal(other.headers['access-control-allow-origin'], undefined, 'an unlisted origin gets none')
  const preflight = await h2Get(session, '/api/sse', {
    ':method': 'OPTIONS',
    origin: 'https://app.example.com',
    'access-control-request-method': 'GET',
    'access-control-request-headers': 'last-event-id',
  })
  t.equal(preflight.status, 204)
  t.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com')
})

t.test('metrics count HTTP/2 streams', async (t) => {
  const { url, cert } = await serveTls(t)
  const session = await h2Session(t, url, cert)
  const streams = [
    await openH2Stream(session),
    await openH2Stream(session, { headers: { authorization: `Bearer ${mint('dave')}` } }),
  ]
  await Promise.all(streams.map((s) => s.waitFor((e) => e.event === 'connected')))
  const metrics = (await h2Get(session, '/metrics')).body
  t.match(metrics, /^sse_connections_open\{auth="anonymous"\} 1$/m)
  t.match(metrics, /^sse_connections_open\{auth="authenticated"\} 1$/m)
  t.match(metrics, /^sse_connects_total\{auth="anonymous"\} 1$/m)
  streams[0]?.close()
  t.ok(
    await eventually(async () =>
      /^sse_disconnects_total\{reason="client"\} 1$/m.test((await h2Get(session, '/metrics')).body),
    ),
    'a reset stream counts as a client disconnect',
  )
  streams[1]?.close()
})

t.test('REQUEST_TIMEOUT_MS applies to HTTP/1.1 requests on the TLS server', async (t) => {
  const { url, cert } = await serveTls(t, { requestTimeoutMs: 300 })
  const socket = tls.connect({
    host: '127.0.0.1',
    port: Number(new URL(url).port),
    ca: cert,
    ALPNProtocols: ['http/1.1'],
  })
  await once(socket, 'secureConnect')
  // Headers that never end.
  socket.write('GET /health HTTP/1.1\r\nhost: x\r\n')
  let answer = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    answer += chunk
  })
  await once(socket, 'close')
  t.match(answer, /^HTTP\/1\.1 408 /, '408 for a request that did not arrive in time')
  t.match(answer, /SSE_ERR_REQUEST_TIMEOUT/)
})
