// The security review's findings, each probed the way it was found: over real HTTP.
import net from 'node:net'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { errors } from '../../src/errors.js'
import { sameSecret } from '../../src/plugins/metrics.js'
import { freePort } from '../bus/redis.js'
import {
  ADMIN,
  badTokens,
  expectError,
  get,
  memoryLogger,
  mint,
  openStream,
  PUBLISHER,
  post,
  SECRET,
  serve,
  sleep,
  testConfig,
} from '../helper.js'

/** Sends raw bytes and collects the answer until the server closes the socket. */
function rawRequest(
  url: string,
  head: string,
  options: { drip?: string; everyMs?: number; maxMs?: number } = {},
): Promise<{ text: string; closedAfterMs: number }> {
  const { port } = new URL(url)
  return new Promise((resolve) => {
    const started = Date.now()
    const socket = net.connect(Number(port), '127.0.0.1')
    let text = ''
    let timer: NodeJS.Timeout | undefined
    socket.on('data', (chunk) => {
      text += String(chunk)
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearInterval(timer)
      clearTimeout(cap)
      resolve({ text, closedAfterMs: Date.now() - started })
    })
    // Never longer than this, whatever the server does.
    const cap = setTimeout(() => socket.destroy(), options.maxMs ?? 10_000)
    socket.write(head)
    if (options.drip !== undefined) {
      const drip = options.drip
      let i = 0
      timer = setInterval(() => {
        if (i < drip.length && !socket.destroyed) socket.write(drip[i++] as string)
      }, options.everyMs ?? 200)
    }
  })
}

t.test(
  '1. the dev login exists only with a throwaway secret or when asked for, never in production',
  async (t) => {
    t.test('configuration', async (t) => {
      t.equal(loadConfig({}).devLogin, true, 'no key: a generated secret, dev login on')
      t.same(loadConfig({}).corsOrigins, ['*'], 'no key: any origin (development)')
      const withSecret = loadConfig({ JWT_SECRET: SECRET })
      t.equal(withSecret.devLogin, false, 'NODE_ENV unset with a real secret: off')
      t.same(withSecret.corsOrigins, [], 'NODE_ENV unset with a real secret: no cross-origin caller')
      t.equal(loadConfig({ JWT_SECRET: SECRET, NODE_ENV: 'development' }).devLogin, false)
      t.equal(loadConfig({ JWT_SECRET: SECRET, DEV_LOGIN: 'true' }).devLogin, true, 'asked for explicitly')
      for (const env of ['production', 'Production', 'PRODUCTION', ' production ']) {
        const config = loadConfig({ NODE_ENV: env, JWT_SECRET: SECRET, CORS_ORIGINS: 'https://a.example' })
        t.equal(config.production, true, `NODE_ENV="${env}" is production`)
        t.equal(config.devLogin, false)
        t.throws(
          () =>
            loadConfig({
              NODE_ENV: env,
              JWT_SECRET: SECRET,
              CORS_ORIGINS: 'https://a.example',
              DEV_LOGIN: 'true',
            }),
          /DEV_LOGIN/,
          `DEV_LOGIN=true refused with NODE_ENV="${env}"`,
        )
        t.throws(() => loadConfig({ NODE_ENV: env, JWT_SECRET: SECRET }), /CORS_ORIGINS/)
        t.throws(() => loadConfig({ NODE_ENV: env, CORS_ORIGINS: 'https://a.example' }), /JWT_SECRET/)
      }
    })

    t.test('a configured key without CORS_ORIGINS answers no other origin', async (t) => {
      const { url } = await serve(t, loadConfig({ JWT_SECRET: SECRET, LOG_LEVEL: 'silent' }))
      const res = await fetch(`${url}/api/sse/stats`, {
        method: 'OPTIONS',
        headers: {
          origin: 'https://evil.example',
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'authorization',
        },
      })
      t.equal(res.headers.get('access-control-allow-origin'), null, 'no CORS grant for a foreign page')
    })

    t.test(
      'the built service, started with production-like environments: /api/dev/token is 404',
      async (t) => {
        const { startServer } = await import('../cluster/helper.js')
        const envs: Record<string, string>[] = [
          {},
          { NODE_ENV: 'Production', CORS_ORIGINS: 'https://app.example' },
          { NODE_ENV: 'production', CORS_ORIGINS: 'https://app.example' },
        ]
        // Each is a process of its own: started side by side.
        await Promise.all(
          envs.map(async (extra) => {
            const port = await freePort()
            const server = await startServer(t, {
              ...extra,
              JWT_SECRET: SECRET,
              HOST: '127.0.0.1',
              PORT: String(port),
              LOG_LEVEL: 'info',
            })
            const label = extra.NODE_ENV === undefined ? 'NODE_ENV unset' : `NODE_ENV=${extra.NODE_ENV}`
            const res = await post(server.url, '/api/dev/token', {
              sub: 'mallory',
              scopes: ['sse:admin', 'sse:publish'],
            })
            t.equal(res.status, 404, `${label}: no token for mallory`)
            const page = await get(server.url, '/sse-client/config.json')
            t.same(
              page.body,
              { devLogin: false, allowAnonymous: true },
              `${label}: the page offers no sign-in`,
            )
            t.notMatch(server.output(), /DEV_LOGIN is on/, `${label}: the log does not claim a dev login`)
            server.child.kill('SIGTERM')
            await new Promise((resolve) => server.child.once('exit', resolve))
          }),
        )
      },
    )
  },
)

t.test('2. a replay waiting on an async history holds back at most MAX_BUFFERED_BYTES', async (t) => {
  const { SseManager } = await import('../../src/sse/manager.js')
  const { MemoryHistory } = await import('../../src/sse/history.js')
  const { EventEmitter } = await import('node:events')
  const inner = new MemoryHistory({ maxEvents: 100, ttlMs: 0 })
  const history = {
    append: (e: Parameters<typeof inner.append>[0]) => inner.append(e),
    latestId: () => inner.latestId(),
    size: 0,
    // Never answers: every live event is held back.
    since: () => new Promise<never>(() => {}),
  }
  const manager = new SseManager({
    heartbeatIntervalMs: 0,
    cleanupIntervalMs: 0,
    retryMs: 1000,
    maxBufferedBytes: 64 * 1024,
    history,
  })
  t.teardown(() => manager.close())
  const first = manager.broadcast('e', 1).id
  const sink = Object.assign(new EventEmitter(), {
    writableLength: 0,
    writableEnded: false,
    destroyed: false,
    write: () => true,
    end() {},
    destroy() {
      sink.destroyed = true
    },
  })
  const client = manager.connect(sink, { userId: null, lastEventId: first })
  const payload = 'x'.repeat(8 * 1024)
  let sent = 0
  while (!client.closed && sent < 100) {
    manager.broadcast('e', payload)
    sent++
  }
  t.ok(client.closed, 'dropped as slow')
  t.ok(sink.destroyed, 'its socket is destroyed')
  t.ok(sent <= 10, `after ${sent} events of 8 KiB, not 100`)
  t.equal(manager.stats().slowClientsDisconnected, 1)
})

t.test('3. TRUST_PROXY: never true; a hop count or proxies decide whose address counts', async (t) => {
  t.throws(() => loadConfig({ TRUST_PROXY: 'true' }), /TRUST_PROXY: true would trust every hop/)
  t.throws(() => loadConfig({ TRUST_PROXY: 'yes' }), /TRUST_PROXY/)
  t.throws(() => loadConfig({ TRUST_PROXY: '10.0.0.0/99' }), /TRUST_PROXY/)
  t.throws(() => loadConfig({ TRUST_PROXY: 'proxy.example' }), /TRUST_PROXY/)
  t.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false)
  t.equal(loadConfig({ TRUST_PROXY: '0' }).trustProxy, false)
  t.equal(loadConfig({ TRUST_PROXY: '1' }).trustProxy, 1)
  t.same(loadConfig({ TRUST_PROXY: '10.0.0.0/8, ::1,loopback' }).trustProxy, [
    '10.0.0.0/8',
    '::1',
    'loopback',
  ])

  for (const trustProxy of [1, ['127.0.0.1']] as const) {
    t.test(`TRUST_PROXY=${trustProxy}: X-Forwarded-For cannot pick the address`, async (t) => {
      const { url } = await serve(t, { trustProxy, maxAnonymousPerIp: 2 })
      const statuses: number[] = []
      const streams = []
      for (let i = 0; i < 4; i++) {
        // The client writes whatever it likes first; the proxy appends the real address.
        const s = await openStream(url, { headers: { 'x-forwarded-for': `198.51.100.${i}, 203.0.113.7` } })
        statuses.push(s.status)
        streams.push(s)
      }
      t.same(statuses, [200, 200, 429, 429], 'counted as 203.0.113.7, the address the proxy saw')
      for (const s of streams) s.close()
    })
  }
})

t.test('4. REQUEST_TIMEOUT_MS ends slow bodies with 408 and never cuts a stream', async (t) => {
  const { app, url } = await serve(t, { requestTimeoutMs: 1000 })
  const head = (path: string, token?: string) =>
    `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n${
      token ? `authorization: Bearer ${token}\r\n` : ''
    }\r\n`
  const publish = await rawRequest(url, head('/api/sse', PUBLISHER()), {
    drip: '{"event":"e", ',
    everyMs: 300,
  })
  t.match(publish.text, /^HTTP\/1\.1 408 /, 'a publish body at a byte per 300 ms: 408')
  const body = JSON.parse(publish.text.slice(publish.text.indexOf('\r\n\r\n') + 4))
  t.same(body, {
    statusCode: 408,
    error: 'Request Timeout',
    message: new errors.SSE_ERR_REQUEST_TIMEOUT().message,
    code: 'SSE_ERR_REQUEST_TIMEOUT',
  })
  t.ok(publish.closedAfterMs < 5000, `closed after ${publish.closedAfterMs} ms`)

  const unknown = await rawRequest(url, head('/nowhere'), {
    drip: 'xxxxxxxxxxxxxxxxxxxxxxxxxx',
    everyMs: 300,
  })
  t.ok(unknown.closedAfterMs < 5000, `an unknown route's slow body is cut after ${unknown.closedAfterMs} ms`)
  const refused = await rawRequest(url, head('/api/sse'), {
    drip: 'xxxxxxxxxxxxxxxxxxxxxxxxxx',
    everyMs: 300,
  })
  t.match(refused.text, /^HTTP\/1\.1 401 /, 'a publish without a token is refused at once')
  t.ok(refused.closedAfterMs < 5000, `and its slow body cut after ${refused.closedAfterMs} ms`)

  const stream = await openStream(url)
  await stream.waitFor((e) => e.event === 'connected')
  await sleep(2500)
  t.equal(stream.ended, false, 'a stream is open 2.5 s after it started (timeout 1 s)')
  app.sse.broadcast('still-here', { ok: true })
  await stream.waitFor((e) => e.event === 'still-here')
  t.pass('and still receives events')
  stream.close()
})

t.test('5. refused tokens count toward the per-IP rate limits', async (t) => {
  const { url } = await serve(t, { rateLimitConnect: 3, rateLimitPublish: 3 })
  const bad = badTokens()['bad signature'] as string
  const connects: number[] = []
  for (let i = 0; i < 5; i++) connects.push((await openStream(url, { token: bad })).status)
  t.same(connects, [401, 401, 401, 429, 429], 'connects with a forged token are throttled')
  const publishes: number[] = []
  for (let i = 0; i < 5; i++)
    publishes.push((await post(url, '/api/sse', { event: 'e', data: 1, broadcast: true }, bad)).status)
  t.same(publishes, [401, 401, 401, 429, 429], 'publishes with a forged token are throttled')
})

t.test('6. no internal detail in answers; a warning for open metrics in production', async (t) => {
  t.test('Redis down: /ready and publish name a fixed reason', async (t) => {
    const port = await freePort()
    const { logger, lines } = memoryLogger('warn')
    const { url } = await serve(
      t,
      { redisUrl: `redis://127.0.0.1:${port}`, redisConnectTimeoutMs: 200 },
      logger,
    )
    const ready = await get(url, '/ready')
    t.equal(ready.status, 503)
    t.same(ready.body, { status: 'unavailable', bus: 'redis', reason: 'redis unavailable' })
    const res = await post(url, '/api/sse', { event: 'e', data: 1, broadcast: true }, PUBLISHER())
    expectError(t, res, 503, 'SSE_ERR_BUS_UNAVAILABLE', /redis unavailable/)
    const stats = await get(url, '/api/sse/stats', ADMIN())
    t.equal(stats.status, 503)
    for (const answer of [ready.body, res.body, stats.body]) {
      t.notMatch(JSON.stringify(answer), /ECONNREFUSED|127\.0\.0\.1|connect /, 'no socket detail')
    }
    t.match(lines.join(''), /ECONNREFUSED/, 'the detail is in the log')
  })

  t.test("a 5xx FST_ error's message is not passed through", async (t) => {
    const app = await buildApp(testConfig())
    t.teardown(() => app.close())
    app.get('/boom', async () => {
      throw Object.assign(new Error('secret internal detail at /srv/app'), {
        code: 'FST_ERR_SOMETHING',
        statusCode: 500,
      })
    })
    const res = await app.inject({ method: 'GET', url: '/boom' })
    t.equal(res.statusCode, 500)
    t.notMatch(res.body, /secret internal detail/)
    t.equal(res.json().code, 'SSE_ERR_INTERNAL')
  })

  t.test('production without METRICS_TOKEN warns at startup', async (t) => {
    const { logger, lines } = memoryLogger('warn')
    const config = loadConfig({
      NODE_ENV: 'production',
      JWT_SECRET: SECRET,
      CORS_ORIGINS: 'https://a.example',
    })
    const app = await buildApp(config, { loggerInstance: logger })
    t.teardown(() => app.close())
    await app.ready()
    t.match(lines.join(''), /METRICS_TOKEN is unset/)
    const quiet = memoryLogger('warn')
    const withToken = await buildApp(
      loadConfig({
        NODE_ENV: 'production',
        JWT_SECRET: SECRET,
        CORS_ORIGINS: 'https://a.example',
        METRICS_TOKEN: 'a-long-metrics-token-123',
      }),
      { loggerInstance: quiet.logger },
    )
    t.teardown(() => withToken.close())
    await withToken.ready()
    t.notMatch(quiet.lines.join(''), /METRICS_TOKEN/)
  })
})

t.test('7. a client-sent x-request-id is the log request id only when short and plain', async (t) => {
  const { logger, lines } = memoryLogger('info')
  const { url } = await serve(t, {}, logger)
  const cases: [string, boolean][] = [
    ['trace-abc.123_X', true],
    ['a'.repeat(64), true],
    ['a'.repeat(65), false],
    ['has space', false],
    ['new\\nline', false],
    ['{"json":1}', false],
  ]
  for (const [id] of cases) {
    await fetch(`${url}/nowhere`, { headers: { 'x-request-id': id } })
  }
  const reqIds = lines
    .map((l) => JSON.parse(l) as { reqId?: string; msg?: string })
    .filter((l) => l.msg === 'request completed')
    .map((l) => l.reqId)
  t.equal(reqIds.length, cases.length)
  cases.forEach(([id, kept], i) => {
    if (kept) t.equal(reqIds[i], id, `kept: ${id.slice(0, 20)}`)
    else t.match(reqIds[i], /^[0-9a-f-]{36}$/, `replaced: ${id.slice(0, 20)}`)
  })
})

t.test('8. the metrics token comparison', async (t) => {
  const token = 'the-metrics-token-0123456789'
  t.equal(sameSecret(token, token), true)
  for (const wrong of ['', 'x', token.slice(0, -1), `${token}x`, token.toUpperCase()]) {
    t.equal(sameSecret(wrong, token), false, `"${wrong}" is refused`)
  }
  const { url } = await serve(t, { metricsToken: token })
  t.equal((await get(url, '/metrics', token.slice(0, 5))).status, 401, 'a short token: 401')
  t.equal((await get(url, '/metrics', `${token}${token}`)).status, 401, 'a long token: 401')
  t.equal((await get(url, '/metrics', token)).status, 200)
  t.equal((await get(url, '/metrics', mint('x'))).status, 401, 'a JWT is not the metrics token')
})

t.test('2. over Redis, a reconnect reads and holds only what it may be replayed', async (t) => {
  const { skipWithoutRedis, uniquePrefix, TEST_REDIS_URL } = await import('../bus/redis.js')
  const { RedisHistory } = await import('../../src/bus/redis-history.js')
  const reason = await skipWithoutRedis()
  if (reason) {
    t.comment(`skipped: ${reason}`)
    return
  }
  const { app, url } = await serve(t, {
    redisUrl: TEST_REDIS_URL,
    redisPrefix: uniquePrefix(t),
    heartbeatIntervalMs: 0,
    historySize: 1000,
  })
  const history = app.cluster.history as InstanceType<typeof RedisHistory>
  const big = 'x'.repeat(60_000)
  let first = ''
  for (let i = 0; i < 120; i++) {
    const res = await post(url, '/api/sse', { event: 'big', data: { i, big }, broadcast: true }, PUBLISHER())
    if (i === 0) first = res.body.id
  }

  // An id that is not in the stream: one empty XRANGE, whatever the history holds.
  let before = history.bytesRead
  const unknown = await openStream(url, { headers: { 'last-event-id': '0-1' } })
  const connected = await unknown.waitFor((e) => e.event === 'connected')
  t.match(connected.json, { recovered: false, replayed: 0 })
  t.ok(
    history.bytesRead - before < 1024,
    `0-1: ${history.bytesRead - before} bytes read from Redis (7 MB stored)`,
  )
  unknown.close()

  // A real id 119 events of 60 KB back (7 MB): over REPLAY_MAX_BYTES (4 MiB), so nothing is
  // replayed, and reading stops soon past the limit instead of pulling the whole history.
  before = history.bytesRead
  const far = await openStream(url, { headers: { 'last-event-id': first } })
  const farConnected = await far.waitFor((e) => e.event === 'connected')
  t.match(farConnected.json, { recovered: false, replayed: 0 }, 'all or nothing: nothing')
  const read = history.bytesRead - before
  t.ok(read < 5 * 1024 * 1024 + 8 * 61_000, `${read} bytes read for a replay over the limit`)
  far.close()

  // Eight clients that never read, each resuming 40 events (2.4 MB) back: the frames are
  // decoded once and shared, so memory grows by about one copy, not eight.
  const resumeFrom = (await post(url, '/api/sse', { event: 'mark', data: 0, broadcast: true }, PUBLISHER()))
    .body.id
  for (let i = 0; i < 40; i++) {
    await post(url, '/api/sse', { event: 'big', data: { i, big }, broadcast: true }, PUBLISHER())
  }
  global.gc?.()
  const memBefore = process.memoryUsage()
  const { port } = new URL(url)
  const sockets: net.Socket[] = []
  for (let i = 0; i < 8; i++) {
    const socket = net.connect(Number(port), '127.0.0.1')
    socket.on('error', () => {})
    socket.write(`GET /api/sse HTTP/1.1\r\nhost: x\r\nlast-event-id: ${resumeFrom}\r\n\r\n`)
    socket.pause()
    sockets.push(socket)
  }
  t.teardown(() => {
    for (const s of sockets) s.destroy()
  })
  const { eventually } = await import('../helper.js')
  t.ok(await eventually(() => app.sse.size === 8, 5000), 'eight streams open')
  // What stays after garbage is collected, sampled a few times: transient read buffers go.
  let grown = Number.POSITIVE_INFINITY
  for (let i = 0; i < 4; i++) {
    await sleep(400)
    global.gc?.()
    grown = Math.min(grown, process.memoryUsage().arrayBuffers - memBefore.arrayBuffers)
  }
  // Eight private copies would be 19 MB.
  t.ok(grown < 12 * 1024 * 1024, `arrayBuffers grew ${(grown / 1e6).toFixed(1)} MB for 8 x 2.4 MB replays`)
})

t.test('2. REPLAY_MAX_BYTES in memory: all or nothing', async (t) => {
  const { url } = await serve(t, { replayMaxBytes: 2000, heartbeatIntervalMs: 0 })
  const ids: string[] = []
  for (let i = 0; i < 10; i++) {
    ids.push(
      (await post(url, '/api/sse', { event: 'e', data: 'y'.repeat(500), broadcast: true }, PUBLISHER())).body
        .id,
    )
  }
  const far = await openStream(url, { headers: { 'last-event-id': ids[0] as string } })
  t.match((await far.waitFor((e) => e.event === 'connected')).json, { recovered: false, replayed: 0 })
  await sleep(100)
  t.equal(far.named('e').length, 0, '9 events of 500 bytes are over 2000: none replayed')
  far.close()
  const near = await openStream(url, { headers: { 'last-event-id': ids[6] as string } })
  t.match((await near.waitFor((e) => e.event === 'connected')).json, { recovered: true, replayed: 3 })
  await near.waitForCount('e', 3)
  t.same(
    near.named('e').map((e) => e.id),
    ids.slice(7),
  )
  near.close()
})
