import { spawnSync } from 'node:child_process'
import net from 'node:net'
import t from 'tap'
import { eventually, openStream, serve, sleep } from '../helper.js'

t.test('10,000 connect/abort cycles leave nothing behind', async (t) => {
  const run = spawnSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', 'test/hardening/fixtures/churn.ts', '10000'],
    {
      encoding: 'utf8',
      timeout: 240_000,
    },
  )
  t.equal(run.status, 0, run.stderr)
  const result = JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}')
  t.equal(result.size, 0, 'registry empty')
  t.equal(result.uniqueUsers, 0, 'user index empty')
  t.equal(result.anonymousFromLoopback, 0, 'per-IP counts back to zero')
  t.equal(result.after.handles, result.before.handles, 'no timer or socket left over')
  t.equal(result.after.listeners, result.before.listeners, 'no listener left over')
  const growth = (result.after.rss - result.before.rss) / result.before.rss
  t.ok(growth < 0.1, `RSS after GC within 10% of where it started (${(growth * 100).toFixed(1)}%)`)
  const heapGrowth = (result.after.heap - result.before.heap) / result.before.heap
  t.ok(heapGrowth < 0.1, `heap after GC within 10% (${(heapGrowth * 100).toFixed(1)}%)`)
})

t.test('a client that disconnects while its writes are blocked releases everything', async (t) => {
  const { url, app } = await serve(t, { maxBufferedBytes: 8 << 20 })
  const port = Number(new URL(url).port)
  const socket = net.connect(port, '127.0.0.1')
  socket.pause()
  socket.write('GET /api/sse HTTP/1.1\r\nHost: x\r\n\r\n')
  t.ok(await eventually(() => app.sse.size === 1))
  const chunk = 'y'.repeat(64 * 1024)
  for (let i = 0; i < 40; i++) {
    app.sse.broadcast('fill', chunk)
    await sleep(1)
  }
  const client = [...app.sse.stats().users] // anonymous: no user entry
  t.same(client, [])
  socket.destroy()
  t.ok(await eventually(() => app.sse.size === 0), 'gone from the registry')
  t.equal(app.sse.stats().slowClientsDisconnected, 0, 'counted as a client close, not as slow')
})

t.test('a connection flood past MAX_CONNECTIONS gets fast 503s without streams', async (t) => {
  const { url, app } = await serve(t, { maxConnections: 20, maxAnonymousPerIp: 1000 })
  const open = await Promise.all(Array.from({ length: 20 }, () => openStream(url)))
  t.ok(open.every((s) => s.status === 200))
  const flood = await Promise.all(Array.from({ length: 200 }, () => openStream(url)))
  t.ok(
    flood.every((s) => s.status === 503),
    'every extra attempt is 503',
  )
  t.match(flood[0]?.body, { code: 'SSE_ERR_TOO_MANY_CONNECTIONS' })
  t.equal(app.sse.size, 20, 'no stream was allocated for them')
  for (const s of open) s.close()
  t.ok(await eventually(() => app.sse.size === 0))
})

t.test('a client that vanishes is found and removed', async (t) => {
  const { url, app } = await serve(t, { heartbeatIntervalMs: 100, cleanupIntervalMs: 100 })
  const port = Number(new URL(url).port)
  const sockets = Array.from({ length: 5 }, () => {
    const s = net.connect(port, '127.0.0.1')
    s.write('GET /api/sse HTTP/1.1\r\nHost: x\r\n\r\n')
    return s
  })
  const reader = await openStream(url)
  t.ok(await eventually(() => app.sse.size === 6))
  for (const s of sockets) {
    s.pause()
    s.resetAndDestroy()
  }
  t.ok(await eventually(() => app.sse.size === 1), 'the vanished clients are gone')
  await reader.waitForCount('heartbeat', 2)
  t.equal(reader.ended, false, 'the remaining client is untouched')
  reader.close()
})
