import { EventEmitter } from 'node:events'
import net from 'node:net'
import { createClient } from 'redis'
import t, { type Test } from 'tap'
import type { BusEvent } from '../../src/bus/bus.js'
import { RedisBus } from '../../src/bus/redis-bus.js'
import { READ_MAX_BYTES } from '../../src/bus/redis-stream-read.js'
import { createSseMetrics } from '../../src/plugins/metrics.js'
import { SseManager } from '../../src/sse/manager.js'
import { RedisProxy } from '../bus/proxy.js'
import {
  connections,
  freePort,
  OwnRedis,
  redisServerAvailable,
  skipWithoutRedis,
  TEST_REDIS_URL,
  uniquePrefix,
} from '../bus/redis.js'
import { published } from '../cluster/helper.js'
import { eventually, get, openStream, PUBLISHER, post, serve, sleep } from '../helper.js'
import { SlowHistory } from '../sse/slow-history.js'

// Every queue the service keeps is bounded: each test drives one past its bound and shows what
// happens (a clear error, or a drop counted in a metric), never growth without end.

const noRedis = await skipWithoutRedis()
const noServer = (await redisServerAvailable()) ? false : 'redis-server is not installed'

/** One sample of /metrics: `name` with its labels as Prometheus prints them, e.g. `x_total{reason="slow"}`. */
const metric = async (url: string, name: string): Promise<number> => {
  const text = String((await get(url, '/metrics')).body)
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.split(' ').pop())
}

/** A stream client on a raw socket that reads nothing at all: its socket buffers fill, then the server's. */
function deafStream(url: string): Promise<net.Socket> {
  const { port } = new URL(url)
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      socket.write('GET /api/sse HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n')
      socket.pause()
      resolve(socket)
    })
    socket.on('error', () => {})
  })
}

t.test('the per-client queue: a client that reads nothing is dropped at MAX_BUFFERED_BYTES', async (t) => {
  const { url, app } = await serve(t, {
    maxBufferedBytes: 64 * 1024,
    rateLimitPublish: 0,
    heartbeatIntervalMs: 0,
  })
  const reader = await openStream(url)
  await reader.waitFor((e) => e.event === 'connected')
  const deaf = await deafStream(url)
  t.ok(await eventually(() => app.sse.size === 2), 'both connected')
  const payload = 'p'.repeat(50_000)
  let sent = 0
  while (app.sse.size === 2 && sent < 1000) {
    await post(url, '/api/sse', { event: 'big', data: payload, broadcast: true }, PUBLISHER())
    sent++
  }
  t.equal(app.sse.size, 1, 'the deaf client was dropped')
  t.comment(
    `dropped after ${sent} events of 50 KB (${((sent * 50_000) / 1048576).toFixed(1)} MiB, most in kernel buffers)`,
  )
  t.equal(
    await metric(url, 'sse_disconnects_total{reason="slow"}'),
    1,
    'sse_disconnects_total{reason="slow"} 1',
  )
  t.equal(app.sse.stats().slowClientsDisconnected, 1)
  await reader.waitForCount('big', sent, 10_000)
  t.equal(published(reader).length, sent, 'the reading client got every event')
  reader.close()
  deaf.destroy()
})

class FakeSink extends EventEmitter {
  writableLength = 0
  writableEnded = false
  destroyed = false
  bytes = 0
  write(chunk: Buffer) {
    this.bytes += chunk.length
    return true
  }
  end() {
    this.writableEnded = true
  }
  destroy() {
    this.destroyed = true
    this.emit('close')
  }
}

t.test(
  'events held during an asynchronous replay: past MAX_BUFFERED_BYTES the client is dropped as slow',
  async (t) => {
    const metrics = createSseMetrics()
    const history = new SlowHistory()
    const manager = new SseManager({
      heartbeatIntervalMs: 0,
      cleanupIntervalMs: 0,
      retryMs: 1000,
      maxBufferedBytes: 64 * 1024,
      history,
      hooks: metrics.hooks,
    })
    t.teardown(() => manager.close())
    const first = manager.broadcast('e', 0).id
    const waiting = new FakeSink()
    const client = manager.connect(waiting, { userId: 'u', lastEventId: first })
    t.ok(client.held !== null, 'its replay is being fetched: live events are held')
    let published = 0
    while (!client.closed && published < 1000) {
      manager.broadcast('e', 'h'.repeat(10_000))
      published++
      t.ok(client.closed || client.heldBytes <= 64 * 1024, 'held bytes never pass the bound')
    }
    t.ok(client.closed, `dropped after ${published} events of 10 KB held`)
    t.equal(waiting.destroyed, true, 'its socket destroyed')
    t.equal(waiting.bytes, 0, 'nothing was written to it')
    const text = await metrics.registry.metrics()
    t.match(text, /sse_disconnects_total\{reason="slow"\} 1/, 'sse_disconnects_total{reason="slow"} 1')
    history.release?.()
  },
)

/** Publishes `sizes.length` events of those payload sizes while a reader is stalled, then checks what each of its reads held. */
async function stalledReader(t: Test, sizes: number[]): Promise<void> {
  const proxy = await RedisProxy.start(t, Number(new URL(TEST_REDIS_URL).port || 6379))
  const prefix = uniquePrefix(t)
  const publisher = await connections(t)
  const writer = new RedisBus({
    commands: publisher.commands,
    reader: publisher.reader,
    prefix,
    maxLength: 100_000,
  })
  t.teardown(() => writer.close())
  const behind = await connections(t, proxy.url)
  const bus = new RedisBus({ commands: behind.commands, reader: behind.reader, prefix, maxLength: 100_000 })
  t.teardown(() => bus.close())
  // Deliveries between two turns of the event loop come from one read.
  const reads: number[] = []
  let current = -1
  const got: BusEvent[] = []
  await bus.subscribe((event) => {
    got.push(event)
    if (current === -1) {
      reads.push(0)
      current = reads.length - 1
      setImmediate(() => {
        current = -1
      })
    }
    reads[current] = (reads[current] as number) + JSON.stringify(event.data).length
  })
  await sleep(100)
  proxy.stall()
  const n = sizes.length
  for (let i = 0; i < n; i += 20) {
    await writer.publishMany(
      sizes.slice(i, i + 20).map((size, j) => ({
        event: 'e',
        data: { i: i + j, payload: 'r'.repeat(size) },
        target: { broadcast: true as const },
        origin: 'o:1',
      })),
    )
  }
  const total = sizes.reduce((sum, size) => sum + size, 0)
  t.comment(`${(total / 1048576).toFixed(1)} MiB published while the reader was stalled`)
  proxy.resume()
  t.ok(await eventually(() => got.length === n, 20_000), `all ${n} delivered after it resumed`)
  t.same(
    got.map((e) => (e.data as { i: number }).i),
    Array.from({ length: n }, (_, i) => i),
    'in order, once each',
  )
  const largest = Math.max(...reads)
  t.comment(`${reads.length} reads, the largest ${largest} B`)
  t.ok(
    largest <= READ_MAX_BYTES + 60_000,
    `no read held more than READ_MAX_BYTES and one entry (${largest} B)`,
  )
  t.equal(bus.gaps, 0, 'no gap: everything was still in the stream')
}

t.test(
  "the Redis reader's backlog: one read holds at most READ_MAX_BYTES, however far behind",
  { skip: noRedis },
  (t) =>
    stalledReader(
      t,
      Array.from({ length: 200 }, () => 50_000),
    ),
)

t.test(
  "the Redis reader's backlog of small events with large ones among them: still READ_MAX_BYTES a read",
  { skip: noRedis },
  // 1,500 small events (plain reads of 512), then 40 of 50 kB, then small ones again.
  (t) => stalledReader(t, [...Array(1500).fill(100), ...Array(40).fill(50_000), ...Array(1500).fill(100)]),
)

t.test(
  'pending publishes while Redis is slow: past REDIS_MAX_PENDING_BYTES a publish is 503 SSE_ERR_BUS_BACKLOG at once',
  { skip: noServer, timeout: 60_000 },
  async (t) => {
    const redis = new OwnRedis(await freePort())
    await redis.start()
    t.teardown(() => redis.stop())
    const { url } = await serve(t, {
      redisUrl: redis.url,
      redisPrefix: uniquePrefix(t, redis.url),
      redisMaxPendingBytes: 65_536,
      rateLimitPublish: 0,
      heartbeatIntervalMs: 0,
    })
    const stream = await openStream(url)
    await stream.waitFor((e) => e.event === 'connected')
    const admin = createClient({ url: redis.url })
    admin.on('error', () => {})
    await admin.connect()
    t.teardown(() => admin.close().catch(() => undefined))
    await admin.sendCommand(['CLIENT', 'PAUSE', '2000', 'WRITE'])
    const pausedAt = Date.now()
    const payload = 'q'.repeat(10_000)
    const answers = await Promise.all(
      Array.from({ length: 40 }, async (_, n) => {
        const res = await post(
          url,
          '/api/sse',
          { event: 'q', data: { n, payload }, broadcast: true },
          PUBLISHER(),
        )
        return {
          n,
          status: res.status,
          code: res.body?.code as string | undefined,
          id: res.body?.id as string,
          ms: Date.now() - pausedAt,
        }
      }),
    )
    const accepted = answers.filter((a) => a.status === 202)
    const refused = answers.filter((a) => a.status === 503)
    t.comment(
      `40 publishes of 10 KB during CLIENT PAUSE 2000: ${accepted.length} waited and were accepted (after ${Math.min(...accepted.map((a) => a.ms))} ms), ${refused.length} refused at once (within ${Math.max(...refused.map((a) => a.ms))} ms)`,
    )
    t.ok(accepted.length >= 1 && accepted.length <= 7, 'about 64 KiB of publishes waited')
    t.equal(accepted.length + refused.length, 40, 'every other one was refused')
    t.ok(
      refused.every((a) => a.code === 'SSE_ERR_BUS_BACKLOG' && a.ms < 1500),
      'with 503 SSE_ERR_BUS_BACKLOG, before the pause ended',
    )
    t.equal(
      await metric(url, 'sse_publishes_refused_total{reason="backlog"}'),
      refused.length,
      'counted in sse_publishes_refused_total{reason="backlog"}',
    )
    t.equal(await metric(url, 'sse_redis_pending_publish_bytes'), 0, 'nothing left pending')
    const last = accepted
      .map((a) => a.id)
      .sort()
      .pop() as string
    await stream.waitFor((e) => e.id === last, 5000)
    await sleep(200)
    t.same(
      published(stream)
        .map((e) => (e.json as { n: number }).n)
        .sort((x, y) => x - y),
      accepted.map((a) => a.n).sort((x, y) => x - y),
      'the accepted ones delivered once, the refused ones never',
    )
    stream.close()
  },
)
