// The core writes its own HTTP/1.1 chunks to the socket: the bytes on the wire must be exactly
// what ServerResponse.write would have sent for the same data.
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import t from 'tap'
import { encodeFrame } from '../../src/sse/frame.js'
import { mint, PUBLISHER, post, postRaw, serve } from '../helper.js'

/** Reads a socket until it closes, or until a chunked response has ended (a kept-alive socket stays open). */
async function readAll(socket: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = []
  socket.on('data', (c: Buffer) => {
    parts.push(c)
    if (Buffer.concat(parts).subarray(-7).toString('latin1') === '\r\n0\r\n\r\n') socket.destroy()
  })
  await once(socket, 'close')
  return Buffer.concat(parts)
}

/** Splits a raw HTTP/1.1 response into its head and its chunks, strictly; throws on anything else. */
function parseChunked(raw: Buffer): { head: string; chunks: Buffer[]; rest: number } {
  const end = raw.indexOf('\r\n\r\n')
  const head = raw.subarray(0, end).toString('latin1')
  let at = end + 4
  const chunks: Buffer[] = []
  for (;;) {
    const line = raw.indexOf('\r\n', at)
    const size = raw.subarray(at, line).toString('latin1')
    if (!/^[0-9a-f]+$/.test(size)) throw new Error(`bad chunk size line ${JSON.stringify(size)}`)
    const n = Number.parseInt(size, 16)
    at = line + 2
    if (n === 0) {
      if (raw.subarray(at, at + 2).toString('latin1') !== '\r\n') throw new Error('bad last chunk')
      at += 2
      break
    }
    chunks.push(raw.subarray(at, at + n))
    at += n
    if (raw.subarray(at, at + 2).toString('latin1') !== '\r\n') throw new Error('chunk without CRLF')
    at += 2
  }
  return { head, chunks, rest: raw.length - at }
}

/** What node:http's own res.write sends for these chunks, after the head. */
async function referenceBytes(chunks: Buffer[]): Promise<Buffer> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    for (const chunk of chunks) res.write(chunk)
    res.end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const socket = net.connect(port, '127.0.0.1')
  socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
  const raw = await readAll(socket)
  server.close()
  return raw.subarray(raw.indexOf('\r\n\r\n') + 4)
}

t.test('the stream is valid chunked HTTP/1.1, byte for byte what res.write sends', async (t) => {
  const { app, url } = await serve(t, { heartbeatIntervalMs: 0 })
  const { port } = new URL(url)
  const socket = net.connect(Number(port), '127.0.0.1')
  const token = mint('alice')
  socket.write(`GET /api/sse HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n\r\n`)
  const done = readAll(socket)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const expected: Buffer[] = []
  const send = async (body: Record<string, unknown>) => {
    const res = await post(url, '/api/sse', body, PUBLISHER())
    expected.push(encodeFrame({ id: res.body.id, event: body.event as string, data: body.data }))
  }
  await send({ event: 'one', data: { a: 1 }, broadcast: true })
  await send({ event: 'mine', data: 'line\r\nbreak', userIds: ['alice'] })
  // A batch encodes each event's data once, while validating it: its frames are the same bytes.
  const batchText =
    '{"events":[{"event":"b","data":{"n":1e2,"big":1E21,"s":"\\u00e9\\u2028\\r\\nx"},"broadcast":true},' +
    '{"event":"b2","data":["\\ud83d\\ude00",-0,0.5e-7],"userIds":["alice"]}]}'
  const batch = await postRaw(url, '/api/sse/batch', batchText, {
    'content-type': 'application/json',
    authorization: `Bearer ${PUBLISHER()}`,
  })
  t.equal(batch.status, 202)
  const sent = (JSON.parse(batchText) as { events: { event: string; data: unknown }[] }).events
  for (const [i, r] of (batch.body as { results: { id: string }[] }).results.entries()) {
    const item = sent[i] as { event: string; data: unknown }
    expected.push(encodeFrame({ id: r.id, event: item.event, data: item.data }))
  }
  // A burst of broadcasts and targeted events in one turn, and frames big enough to be written in pieces.
  const burst: Promise<unknown>[] = []
  for (let i = 0; i < 5; i++) {
    const big = 'x'.repeat(i === 2 ? 100_000 : 10)
    const a = app.sse.broadcast('burst', { i, big })
    const b = app.sse.sendToUsers('burst-user', { i }, ['alice'])
    expected.push(encodeFrame({ id: a.id, event: 'burst', data: { i, big } }))
    expected.push(encodeFrame({ id: b.id, event: 'burst-user', data: { i } }))
  }
  await Promise.all(burst)
  await new Promise((resolve) => setTimeout(resolve, 100))
  app.sse.disconnectAll()
  const raw = await done
  const { head, chunks, rest } = parseChunked(raw)
  t.match(head, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(head.toLowerCase(), /\r\ntransfer-encoding: chunked/)
  t.equal(rest, 0, 'nothing after the last chunk')
  const body = Buffer.concat(chunks)
  const text = body.toString('utf8')
  t.match(text, /^retry: \d+\nevent: connected\n/, 'starts with retry, then connected')
  const published = Buffer.concat(expected)
  t.ok(body.includes(published), 'every published frame, in order, byte for byte')
  t.match(text.slice(text.lastIndexOf('event: ')), /^event: disconnected\n/, 'ends with disconnected')
  t.same(
    raw.subarray(raw.indexOf('\r\n\r\n') + 4),
    await referenceBytes(chunks),
    'framing identical to res.write',
  )
})
