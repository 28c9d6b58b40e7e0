import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { createSseMetrics } from '../../src/plugins/metrics.js'
import type { SseClient } from '../../src/sse/client.js'
import { eventually, expectError, get, mint, openStream, PUBLISHER, post, serve } from '../helper.js'

/** The value of one sample in Prometheus text, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const have = (match[2] ?? '').split(',').filter(Boolean).sort()
    if (wanted.every((w) => have.includes(w)) && have.length === wanted.length) return Number(match[3])
  }
  return undefined
}

async function scrape(url: string, token?: string): Promise<string> {
  const res = await get(url, '/metrics', token)
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`)
  return res.body as string
}

const SSE_METRICS = [
  'sse_connections_open',
  'sse_connects_total',
  'sse_disconnects_total',
  'sse_events_published_total',
  'sse_events_delivered_total',
  'sse_bytes_written_total',
  'sse_replayed_events_total',
  'sse_recovery_failures_total',
  'sse_heartbeat_duration_seconds',
]

t.test('GET /metrics speaks Prometheus and lists every metric', async (t) => {
  const { url } = await serve(t)
  const res = await get(url, '/metrics')
  t.equal(res.status, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const text = res.body as string
  for (const name of SSE_METRICS) t.match(text, `# TYPE ${name} `, name)
  t.match(text, '# TYPE process_cpu_user_seconds_total counter', 'default process metrics')
  t.match(text, '# TYPE nodejs_eventloop_lag_seconds gauge', 'default Node.js metrics')
  t.equal(sample(text, 'sse_connections_open', { auth: 'anonymous' }), 0)
  t.equal(sample(text, 'sse_connections_open', { auth: 'authenticated' }), 0)
  for (const reason of ['client', 'slow', 'expired', 'server']) {
    t.equal(sample(text, 'sse_disconnects_total', { reason }), 0, `${reason} starts at 0`)
  }
})

t.test('connections, events and bytes are counted', async (t) => {
  const { url } = await serve(t)
  const anon = await openStream(url)
  const alice = await openStream(url, { token: mint('alice') })
  t.teardown(() => {
    anon.close()
    alice.close()
  })
  await Promise.all([anon, alice].map((s) => s.waitFor((e) => e.event === 'connected')))
  let text = await scrape(url)
  t.equal(sample(text, 'sse_connections_open', { auth: 'anonymous' }), 1)
  t.equal(sample(text, 'sse_connections_open', { auth: 'authenticated' }), 1)
  t.equal(sample(text, 'sse_connects_total', { auth: 'anonymous' }), 1)
  t.equal(sample(text, 'sse_connects_total', { auth: 'authenticated' }), 1)
  const bytesBefore = sample(text, 'sse_bytes_written_total') ?? 0
  t.ok(bytesBefore > 0, 'the connected events were written')

  await post(
    url,
    '/api/sse',
    { event: 'hello', data: { text: 'x'.repeat(100) }, broadcast: true },
    PUBLISHER(),
  )
  await post(url, '/api/sse', { event: 'hello', data: 1, userIds: ['alice'] }, PUBLISHER())
  await post(url, '/api/sse', { event: 'hello', data: 1, userIds: ['nobody'] }, PUBLISHER())
  await alice.waitForCount('hello', 2)
  await anon.waitForCount('hello', 1)
  text = await scrape(url)
  t.equal(sample(text, 'sse_events_published_total'), 3)
  t.equal(sample(text, 'sse_events_delivered_total'), 3, '2 + 1 + 0')
  t.ok((sample(text, 'sse_bytes_written_total') ?? 0) >= bytesBefore + 2 * 100, 'the events were written')

  anon.close()
  t.ok(
    await eventually(
      async () => sample(await scrape(url), 'sse_disconnects_total', { reason: 'client' }) === 1,
    ),
    'a client that leaves counts as reason client',
  )
  text = await scrape(url)
  t.equal(sample(text, 'sse_connections_open', { auth: 'anonymous' }), 0)

  await post(url, '/api/sse/disconnect-all', undefined, mint('op', { scopes: ['sse:admin'] }))
  await alice.waitForEnd()
  text = await scrape(url)
  t.equal(sample(text, 'sse_disconnects_total', { reason: 'server' }), 1)
  t.equal(sample(text, 'sse_connections_open', { auth: 'authenticated' }), 0)
})

t.test('replays and failed recoveries are counted', async (t) => {
  const { url } = await serve(t)
  const first = await post(url, '/api/sse', { event: 'a', data: 1, broadcast: true }, PUBLISHER())
  await post(url, '/api/sse', { event: 'b', data: 2, broadcast: true }, PUBLISHER())
  await post(url, '/api/sse', { event: 'c', data: 3, broadcast: true }, PUBLISHER())

  const fresh = await openStream(url)
  const resumed = await openStream(url, { headers: { 'last-event-id': first.body.id } })
  const lost = await openStream(url, { query: { lastEventId: 'not-an-event-id' } })
  t.teardown(() => {
    for (const s of [fresh, resumed, lost]) s.close()
  })
  const info = await resumed.waitFor((e) => e.event === 'connected')
  t.match(info.json, { recovered: true, replayed: 2 })
  t.match((await lost.waitFor((e) => e.event === 'connected')).json, { recovered: false })
  await fresh.waitFor((e) => e.event === 'connected')
  const text = await scrape(url)
  t.equal(sample(text, 'sse_replayed_events_total'), 2)
  t.equal(
    sample(text, 'sse_recovery_failures_total'),
    1,
    'only the stream that asked to resume and could not',
  )
})

t.test('expired connections and heartbeats', async (t) => {
  const { url } = await serve(t, { maxConnectionLifetimeMs: 300, heartbeatIntervalMs: 50 })
  const s = await openStream(url)
  t.teardown(() => s.close())
  await s.waitForEnd(5000)
  t.match(s.named('disconnected')[0]?.json, { reason: 'lifetime' })
  const text = await scrape(url)
  t.equal(sample(text, 'sse_disconnects_total', { reason: 'expired' }), 1)
  t.ok((sample(text, 'sse_heartbeat_duration_seconds_count') ?? 0) >= 1, 'heartbeats were timed')
  t.ok(sample(text, 'sse_heartbeat_duration_seconds_bucket', { le: '+Inf' }) !== undefined, 'a histogram')
})

t.test('every disconnect reason maps to one of four labels', async (t) => {
  const { registry, hooks } = createSseMetrics()
  const client = { anonymous: true } as SseClient
  const reasons = [
    'client',
    'error',
    'slow',
    'lifetime',
    'token_expired',
    'server_disconnect',
    'server_shutdown',
  ] as const
  for (const reason of reasons) hooks.onDisconnect?.(client, reason)
  const text = await registry.metrics()
  t.equal(sample(text, 'sse_disconnects_total', { reason: 'client' }), 2)
  t.equal(sample(text, 'sse_disconnects_total', { reason: 'slow' }), 1)
  t.equal(sample(text, 'sse_disconnects_total', { reason: 'expired' }), 2)
  t.equal(sample(text, 'sse_disconnects_total', { reason: 'server' }), 2)
  t.notMatch(text, /reason="(error|lifetime|token_expired|server_disconnect|server_shutdown)"/)
})

t.test('each app has its own registry', async (t) => {
  const a = await serve(t)
  const b = await serve(t)
  await post(a.url, '/api/sse', { event: 'x', data: 1, broadcast: true }, PUBLISHER())
  t.equal(sample(await scrape(a.url), 'sse_events_published_total'), 1)
  t.equal(sample(await scrape(b.url), 'sse_events_published_total'), 0)
})

t.test('METRICS_TOKEN protects the endpoint', async (t) => {
  const secret = 'metrics-token-0123456789'
  const { url } = await serve(t, { metricsToken: secret })
  expectError(t, await get(url, '/metrics'), 401, 'SSE_ERR_TOKEN_REQUIRED')
  expectError(t, await get(url, '/metrics', 'metrics-token-9876543210'), 401, 'SSE_ERR_INVALID_TOKEN')
  expectError(t, await get(url, '/metrics', 'short'), 401, 'SSE_ERR_INVALID_TOKEN')
  // A valid JWT is not the metrics token.
  expectError(t, await get(url, '/metrics', PUBLISHER()), 401, 'SSE_ERR_INVALID_TOKEN')
  const ok = await get(url, '/metrics', secret)
  t.equal(ok.status, 200)
  t.match(ok.body, '# TYPE sse_connects_total counter')
})

t.test('METRICS_TOKEN is validated', async (t) => {
  const base = { NODE_ENV: 'test', JWT_SECRET: 'test-secret-0123456789-abcdefghijklmnop' }
  t.equal(loadConfig(base).metricsToken, null, 'off by default')
  t.equal(loadConfig({ ...base, METRICS_TOKEN: 'a-long-enough-token' }).metricsToken, 'a-long-enough-token')
  t.throws(() => loadConfig({ ...base, METRICS_TOKEN: 'short' }), {
    name: 'ConfigError',
    variable: 'METRICS_TOKEN',
  })
  t.throws(() => loadConfig({ ...base, METRICS_TOKEN: ' a-long-enough-token ' }), {
    name: 'ConfigError',
    variable: 'METRICS_TOKEN',
  })
})
