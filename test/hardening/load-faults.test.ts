import net from 'node:net'
import t from 'tap'
import { published } from '../cluster/helper.js'
import { eventually, get, openStream, PUBLISHER, post, type Stream, serve, sleep } from '../helper.js'

// Faults that must cost neither a connection nor an event of anyone else. Each prints its counts.

const slowCount = async (url: string) =>
  Number(/sse_disconnects_total\{reason="slow"\} (\d+)/.exec(String((await get(url, '/metrics')).body))?.[1])

async function streams(url: string, n: number): Promise<Stream[]> {
  const out: Stream[] = []
  for (let i = 0; i < n; i++) out.push(await openStream(url))
  for (const s of out) await s.waitFor((e) => e.event === 'connected')
  return out
}

/** Publishes a broadcast every `everyMs` until stopped; resolves with the accepted ids in order. */
function ticker(url: string, everyMs: number) {
  const ids: string[] = []
  let failed = 0
  let stop = false
  const done = (async () => {
    for (let n = 0; !stop; n++) {
      const res = await post(
        url,
        '/api/sse',
        { event: 'tick', data: { n }, broadcast: true },
        PUBLISHER(),
      ).catch(() => null)
      if (res?.status === 202) ids.push(res.body.id)
      else failed++
      await sleep(everyMs)
    }
  })()
  return {
    ids,
    async stop() {
      stop = true
      await done
      return { ids, failed }
    },
  }
}

t.test(
  'a client that stops reading mid-burst is dropped; every other client gets the whole burst',
  async (t) => {
    const { url, app } = await serve(t, {
      maxBufferedBytes: 256 * 1024,
      rateLimitPublish: 0,
      heartbeatIntervalMs: 0,
    })
    const readers = await streams(url, 3)
    // A raw client that reads the first events of the burst, then stops reading.
    const { port } = new URL(url)
    let received = ''
    let stopped = false
    const quitter = net.connect(Number(port), '127.0.0.1', () => {
      quitter.write('GET /api/sse HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n')
    })
    quitter.on('error', () => {})
    quitter.on('data', (chunk) => {
      received += String(chunk)
      if (!stopped && (received.match(/event: burst/g)?.length ?? 0) >= 20) {
        stopped = true
        quitter.pause()
      }
    })
    t.ok(await eventually(() => app.sse.size === 4), 'four streams')
    const payload = 'b'.repeat(20_000)
    const ids: string[] = []
    for (let n = 0; n < 400; n += 50) {
      const events = Array.from({ length: 50 }, (_, i) => ({
        event: 'burst',
        data: { n: n + i, payload },
        broadcast: true,
      }))
      const res = await post(url, '/api/sse/batch', { events }, PUBLISHER())
      t.equal(res.status, 202)
      for (const r of res.body.results) ids.push(r.id)
    }
    t.ok(await eventually(() => app.sse.size === 3, 10_000), 'the client that stopped reading was dropped')
    for (const r of readers) await r.waitFor((e) => e.id === ids[ids.length - 1], 10_000)
    const got = readers.map((r) => published(r).map((e) => e.id))
    const quitterGot = received.match(/event: burst/g)?.length ?? 0
    t.comment(
      `burst of ${ids.length} events of 20 KB: readers got ${got.map((g) => g.length).join(', ')}; the one that stopped read ${quitterGot} and was dropped (slow: ${await slowCount(url)})`,
    )
    for (const g of got) t.same(g, ids, 'a reader got every event, once, in order')
    t.equal(await slowCount(url), 1, 'counted in sse_disconnects_total{reason="slow"}')
    t.ok(stopped, 'it did stop mid-burst')
    for (const r of readers) {
      t.equal(r.ended, false, 'the readers stay connected')
      r.close()
    }
    quitter.destroy()
  },
)

t.test(
  '5,000 connections that open TCP and never send a request: they time out, streams keep flowing',
  { timeout: 60_000 },
  async (t) => {
    const { url, app } = await serve(t, {
      requestTimeoutMs: 3000,
      rateLimitPublish: 0,
      heartbeatIntervalMs: 500,
    })
    const live = await streams(url, 10)
    const pub = ticker(url, 20)
    const { port } = new URL(url)
    const idle: net.Socket[] = []
    let answered408 = 0
    let closed = 0
    const openedAt = Date.now()
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(
        Array.from(
          { length: 250 },
          () =>
            new Promise<void>((resolve) => {
              const socket = net.connect(Number(port), '127.0.0.1', () => resolve())
              socket.on('data', (chunk) => {
                if (String(chunk).startsWith('HTTP/1.1 408')) answered408++
              })
              socket.on('error', () => resolve())
              socket.on('close', () => {
                closed++
                resolve()
              })
              idle.push(socket)
            }),
        ),
      )
    }
    const opened = Date.now() - openedAt
    t.ok(
      await eventually(() => closed === idle.length, 20_000, 100),
      'the server closed every idle connection',
    )
    const allClosed = Date.now() - openedAt
    const { ids, failed } = await pub.stop()
    for (const s of live) await s.waitFor((e) => e.id === ids[ids.length - 1], 10_000)
    t.comment(
      `${idle.length} idle connections opened in ${opened} ms, all closed by the server ${allClosed} ms after the first (${answered408} answered 408 first); meanwhile ${ids.length} events published (${failed} failed) to ${live.length} streams`,
    )
    t.equal(idle.length, 5000)
    t.equal(failed, 0, 'every publish during the flood was accepted')
    for (const s of live) {
      t.same(
        published(s).map((e) => e.id),
        ids,
        'a stream got every event, in order',
      )
      t.ok(s.named('heartbeat').length >= 3, 'and its heartbeats')
      t.equal(s.ended, false, 'and stayed open past REQUEST_TIMEOUT_MS')
      s.close()
    }
    t.equal(app.sse.size, 10)
  },
)

t.test(
  'a publisher that sends its body at 1 byte/s is cut at REQUEST_TIMEOUT_MS; nothing else waits',
  async (t) => {
    const { url, app } = await serve(t, {
      requestTimeoutMs: 3000,
      rateLimitPublish: 0,
      heartbeatIntervalMs: 0,
    })
    const live = await streams(url, 3)
    const pub = ticker(url, 50)
    const body = JSON.stringify({ event: 'slow', data: 'x'.repeat(20), broadcast: true })
    const { port } = new URL(url)
    let answer = ''
    let sent = 0
    const startedAt = Date.now()
    const slow = net.connect(Number(port), '127.0.0.1')
    slow.on('error', () => {})
    slow.on('data', (chunk) => {
      answer += String(chunk)
    })
    const closed = new Promise<number>((resolve) => slow.on('close', () => resolve(Date.now() - startedAt)))
    slow.write(
      `POST /api/sse HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${PUBLISHER()}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`,
    )
    const drip = setInterval(() => {
      if (sent < body.length && !slow.destroyed) slow.write(body[sent++] as string)
    }, 1000)
    const cutAfter = await closed
    clearInterval(drip)
    const { ids, failed } = await pub.stop()
    for (const s of live) await s.waitFor((e) => e.id === ids[ids.length - 1], 10_000)
    t.comment(
      `the slow publisher sent ${sent} of ${body.length} body bytes and was cut after ${cutAfter} ms; meanwhile ${ids.length} other publishes were accepted (${failed} failed)`,
    )
    t.match(answer, /^HTTP\/1\.1 408 /, 'it is answered 408')
    t.match(answer, /SSE_ERR_REQUEST_TIMEOUT/)
    t.ok(cutAfter >= 2500 && cutAfter < 10_000, 'at about REQUEST_TIMEOUT_MS')
    t.equal(failed, 0)
    for (const s of live) {
      t.same(
        published(s).map((e) => e.id),
        ids,
        'streams got every other event, and never the slow one',
      )
      t.equal(s.ended, false)
      s.close()
    }
    t.ok(await eventually(() => app.sse.size === 0), 'nothing left behind')
  },
)
