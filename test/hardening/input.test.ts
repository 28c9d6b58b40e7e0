import net from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { openStream, PUBLISHER, post, serve, sleep } from '../helper.js'

/** Sends raw bytes on a fresh socket and collects everything the server answers until it closes or `ms` pass. */
function raw(url: string, chunks: (string | Buffer)[], { ms = 1500, gapMs = 0 } = {}): Promise<string> {
  const { port } = new URL(url)
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1')
    let out = ''
    socket.on('data', (d) => {
      out += d.toString('utf8')
    })
    const done = () => {
      socket.destroy()
      resolve(out)
    }
    socket.on('close', done)
    socket.on('error', done)
    setTimeout(done, ms)
    ;(async () => {
      for (const chunk of chunks) {
        if (socket.destroyed) return
        socket.write(chunk)
        if (gapMs > 0) await sleep(gapMs)
      }
    })()
  })
}

async function publishRaw(url: string, body: string, headers: Record<string, string>) {
  const res = await request(`${url}/api/sse`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISHER()}`, ...headers },
    body,
  })
  const text = await res.body.text()
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined }
}

t.test('hostile and broken input gets its documented answer; others keep receiving', async (t) => {
  const { url, app } = await serve(t, { maxPayloadBytes: 4096 })
  const watcher = await openStream(url)
  await watcher.waitFor((e) => e.event === 'connected')
  const good = JSON.stringify({ event: 'ok', data: 1, broadcast: true })

  const cases: [string, string, Record<string, string>, number, string?][] = [
    ['padded content-type (HTTP strips the white space)', good, { 'content-type': ' application/json' }, 202],
    ['content-type with a charset', good, { 'content-type': 'application/json; charset=utf-8' }, 202],
    ['content-type with a tab and junk', good, { 'content-type': 'application/json\tx' }, 415],
    ['text/plain', good, { 'content-type': 'text/plain' }, 415],
    ['form', 'event=ok', { 'content-type': 'application/x-www-form-urlencoded' }, 415],
    [
      'truncated JSON',
      good.slice(0, -5),
      { 'content-type': 'application/json' },
      400,
      'FST_ERR_CTP_INVALID_JSON_BODY',
    ],
    [
      'JSON that is not an object',
      '[1,2]',
      { 'content-type': 'application/json' },
      400,
      'FST_ERR_VALIDATION',
    ],
    ['empty body', '', { 'content-type': 'application/json' }, 400],
    [
      'prototype poisoning',
      '{"event":"ok","data":1,"broadcast":true,"__proto__":{"admin":true}}',
      { 'content-type': 'application/json' },
      400,
    ],
    [
      'deeply nested data (2,000 levels)',
      `{"event":"ok","broadcast":true,"data":${'['.repeat(2000)}${']'.repeat(2000)}}`,
      { 'content-type': 'application/json' },
      400,
      'SSE_ERR_DATA_TOO_DEEP',
    ],
    [
      '1,001 userIds',
      JSON.stringify({ event: 'ok', data: 1, userIds: Array.from({ length: 1001 }, (_, i) => `u${i}`) }),
      { 'content-type': 'application/json' },
      413,
    ],
  ]
  for (const [name, body, headers, status, code] of cases) {
    const res = await publishRaw(url, body, headers)
    t.equal(res.status, status, name)
    if (status >= 400)
      t.match(res.body, { statusCode: status, error: String, message: String, code: code ?? String }, name)
  }

  // 1,001 userIds within the body limit is a schema error.
  const { url: url2 } = await serve(t)
  const many = await post(
    url2,
    '/api/sse',
    { event: 'ok', data: 1, userIds: Array.from({ length: 1001 }, (_, i) => `${i}`) },
    PUBLISHER(),
  )
  t.equal(many.status, 400)
  t.match(many.body, { code: 'FST_ERR_VALIDATION', message: /userIds/ })

  // A body over the limit, sent slowly without a length, is cut off with 413.
  const slow = await raw(
    url,
    [
      `POST /api/sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUBLISHER()}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      ...Array.from({ length: 12 }, () => `200\r\n${'x'.repeat(512)}\r\n`),
      '0\r\n\r\n',
    ],
    { gapMs: 50, ms: 3000 },
  )
  t.match(slow, /^HTTP\/1\.1 413/, 'slow oversized body: 413')

  // An oversized declared length is refused before the body is read.
  const declared = await raw(url, [
    `POST /api/sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUBLISHER()}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{`,
  ])
  t.match(declared, /^HTTP\/1\.1 413/)

  // An 8 KB Last-Event-ID and unknown query parameters: a normal stream that recovers nothing.
  const big = await openStream(url, {
    headers: { 'last-event-id': 'x'.repeat(8192) },
    query: { foo: 'bar', utm_source: 'x' },
  })
  t.equal(big.status, 200)
  t.match((await big.waitFor((e) => e.event === 'connected')).json, { recovered: false, replayed: 0 })
  big.close()

  // An id with line breaks in the query string, on an empty history, is not echoed into the stream.
  const { url: fresh } = await serve(t)
  const injected = await openStream(fresh, { query: { lastEventId: '1-1\nevent: admin\ndata: x' } })
  t.match((await injected.waitFor((e) => e.event === 'connected')).json, {
    recovered: false,
    lastEventId: null,
  })
  t.equal(injected.named('admin').length, 0)
  injected.close()

  // HTTP/1.0: no chunked encoding, events still arrive.
  const old = raw(url, ['GET /api/sse HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n'], { ms: 1000 })
  await sleep(200)
  app.sse.broadcast('for-old', { v: 1 })
  const oldText = await old
  t.match(oldText, /^HTTP\/1\.1 200/)
  t.notMatch(oldText, /transfer-encoding: chunked/i)
  t.match(oldText, /event: connected\n/)
  t.match(oldText, /event: for-old\nid: \d+-\d+\ndata: \{"v":1\}\n\n/)

  // Pipelined requests are answered in order.
  const body = JSON.stringify({ event: 'piped', data: 1, broadcast: true })
  const req = `POST /api/sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUBLISHER()}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  const piped = await raw(url, [`${req + req}GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`])
  t.equal(piped.match(/HTTP\/1\.1 202/g)?.length, 2, 'two publishes answered')
  t.match(piped, /HTTP\/1\.1 200[\s\S]*"status":"ok"/)

  // Garbage on the socket.
  const garbage = await raw(url, ['\u0000\u0001NOT HTTP AT ALL\r\n\r\n'])
  t.match(garbage, /^HTTP\/1\.1 400/)

  // Through all of this the watcher kept its stream and got every accepted event.
  const last = await post(url, '/api/sse', { event: 'final', data: 1, broadcast: true }, PUBLISHER())
  await watcher.waitFor((e) => e.id === last.body.id)
  t.equal(watcher.named('piped').length, 2)
  t.equal(watcher.ended, false)
  watcher.close()
})
