// The floor for `npm run bench`: the least a Node server can do to fan events out over SSE, so that the
// service can be judged against what Node itself allows (issue 14). No auth, no ids worth the name, no
// per-client state beyond a Set of sockets, no history.
//
// Per turn of the event loop, every event published in that turn is joined into one Buffer that is
// already framed as one HTTP/1.1 chunk (`<hex length>\r\n<events>\r\n`), and that same Buffer is written
// to every socket: one socket.write (one syscall) per client per turn, nothing copied per client.
//
// Why straight to the socket: the response starts like the service's (ServerResponse.writeHead, then one
// res.write, so the status line, the headers and `Transfer-Encoding: chunked` come from node:http and the
// client sees the same kind of response). After that, ServerResponse.write would cork the socket, queue
// a nextTick to uncork it, and split every write into four (hex length, CRLF, data, CRLF) joined by a
// writev: that is work per client per turn that a fan-out does not need. The socket stays node:http's
// (no hijack, no detach): the framing written here is exactly what res.write would have produced.
// FLOOR_WRITE=response writes the same Buffer with res.write instead, to measure that difference.
//
// Targeted sends (scenario 8): streams opened with `?userId=` are indexed by it; an event for users is
// queued to their sockets and written at the same flush, one chunk per socket per turn. POST
// /api/sse/batch takes `{"events": [...]}` and answers one `{id, delivered}` per event, as the
// service does. Still no auth, no validation beyond JSON, no history, and no topics.
//
// FLOOR_HTTP=fastify serves the same handlers through Fastify 5 instead of a bare node:http handler:
// Fastify's routing, its JSON body parser and its reply, no logger, no hook, no schema. Scenario 8 runs
// its single POSTs on it too: the least any Fastify service can spend on one request on this machine.
//
// PORT and HOST come from the environment.
import http from 'node:http'
import Fastify from 'fastify'

const port = Number(process.env.PORT ?? 0)
const host = process.env.HOST ?? '127.0.0.1'
const viaResponse = process.env.FLOOR_WRITE === 'response'

/** The service's stream headers, so that both answer alike. */
const HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
}
const HELLO = Buffer.from('retry: 3000\n\n')
const CRLF = Buffer.from('\r\n')

/** Sockets (or responses, with FLOOR_WRITE=response) of the open streams. */
const clients = new Set()
/** userId -> Set of clients, from `?userId=`. */
const byUser = new Map()
/** Targeted frames of this turn, per client. */
let queued = new Map()
let scheduled = false
/** The frames published during this turn, written on the next setImmediate. */
let turn = []
let turnBytes = 0
let seq = 0
/** Turns that wrote, and the events they wrote: events / turns is how much one write batched. */
let turns = 0
let turnEvents = 0

function userIdOf(url) {
  const at = url.indexOf('userId=')
  if (at === -1) return null
  const end = url.indexOf('&', at)
  return decodeURIComponent(url.slice(at + 7, end === -1 ? undefined : end))
}

function open(req, res) {
  const userId = userIdOf(req.url)
  const socket = req.socket
  socket.setNoDelay(true)
  socket.setKeepAlive(true, 30_000)
  res.writeHead(200, HEADERS)
  // The headers and the first chunk go through node:http, which also sets up chunked encoding.
  res.write(HELLO)
  const client = viaResponse ? res : socket
  clients.add(client)
  if (userId !== null) {
    let set = byUser.get(userId)
    if (set === undefined) {
      set = new Set()
      byUser.set(userId, set)
    }
    set.add(client)
  }
  res.on('close', () => {
    clients.delete(client)
    queued.delete(client)
    const set = byUser.get(userId)
    set?.delete(client)
    if (set?.size === 0) byUser.delete(userId)
  })
}

/** `frames` as one HTTP/1.1 chunk: exactly what res.write(Buffer.concat(frames)) would send. */
function chunkOf(frames, bytes) {
  return Buffer.concat([Buffer.from(`${bytes.toString(16)}\r\n`, 'latin1'), ...frames, CRLF])
}

function schedule() {
  if (scheduled) return
  scheduled = true
  setImmediate(flush)
}

function flush() {
  scheduled = false
  const bytes = turnBytes
  const frames = turn
  const targeted = queued
  turn = []
  turnBytes = 0
  queued = new Map()
  if (frames.length > 0) {
    turns++
    turnEvents += frames.length
    if (viaResponse) {
      const body = frames.length === 1 ? frames[0] : Buffer.concat(frames, bytes)
      for (const res of clients) res.write(body)
    } else {
      // One chunk for the whole turn; one copy of the frames in all.
      const chunk = chunkOf(frames, bytes)
      for (const socket of clients) if (!socket.destroyed) socket.write(chunk)
    }
  }
  for (const [client, list] of targeted) {
    let n = 0
    for (const frame of list) n += frame.length
    if (viaResponse) client.write(list.length === 1 ? list[0] : Buffer.concat(list, n))
    else if (!client.destroyed) client.write(chunkOf(list, n))
  }
}

/** Takes one event: a broadcast joins the turn, a send to users is queued to their streams. */
function accept(body) {
  if (body === null || typeof body !== 'object') return null
  const broadcast = body.broadcast === true
  // The floor knows broadcasts and users only: anything else here would be a bench bug, not a slow path.
  if (!broadcast && !Array.isArray(body.userIds)) return null
  const id = String(++seq)
  // Encoded once, as the service does: event first, then id, then data.
  const frame = Buffer.from(`event: ${body.event}\nid: ${id}\ndata: ${JSON.stringify(body.data)}\n\n`)
  schedule()
  if (broadcast) {
    turn.push(frame)
    turnBytes += frame.length
    return { id, delivered: clients.size }
  }
  let delivered = 0
  for (const userId of body.userIds) {
    for (const client of byUser.get(userId) ?? []) {
      const list = queued.get(client)
      if (list === undefined) queued.set(client, [frame])
      else list.push(frame)
      delivered++
    }
  }
  return { id, delivered }
}

/** A JSON answer with its Content-Length (bench/lib/raw-http.mjs reads answers by it). */
function answer(res, status, value) {
  const text = JSON.stringify(value)
  res
    .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    .end(text)
}

function publish(req, res, batch) {
  const parts = []
  req.on('data', (c) => parts.push(c))
  req.on('end', () => {
    let body
    try {
      body = JSON.parse(Buffer.concat(parts).toString('utf8'))
    } catch {
      answer(res, 400, { error: 'not JSON' })
      return
    }
    if (!batch) {
      const result = accept(body)
      return result === null
        ? answer(res, 400, { error: 'broadcast or userIds only' })
        : answer(res, 202, result)
    }
    if (!Array.isArray(body?.events)) return answer(res, 400, { error: 'events must be an array' })
    const results = body.events.map((event) => accept(event) ?? { error: { statusCode: 400 } })
    answer(res, results.some((r) => r.error !== undefined) ? 207 : 202, { results })
  })
}

/** The floor on Fastify (FLOOR_HTTP=fastify): the same handlers behind Fastify's request handling. */
async function fastifyServer() {
  const app = Fastify({ logger: false, keepAliveTimeout: 72_000 })
  app.get('/api/sse', (request, reply) => {
    reply.hijack()
    open(request.raw, reply.raw)
  })
  const take = (request, reply, batch) => {
    const body = request.body
    if (!batch) {
      const result = accept(body)
      return reply.code(result === null ? 400 : 202).send(result ?? { error: 'broadcast or userIds only' })
    }
    if (!Array.isArray(body?.events)) return reply.code(400).send({ error: 'events must be an array' })
    const results = body.events.map((event) => accept(event) ?? { error: { statusCode: 400 } })
    return reply.code(results.some((r) => r.error !== undefined) ? 207 : 202).send({ results })
  }
  app.post('/api/sse', (request, reply) => take(request, reply, false))
  app.post('/api/sse/batch', { bodyLimit: 16 * 1024 * 1024 }, (request, reply) => take(request, reply, true))
  app.get('/health', () => ({ clients: clients.size, turns, turnEvents }))
  await app.listen({ port, host })
  return app.server
}

function nodeServer() {
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/api/sse')) {
      if (req.method === 'GET') return open(req, res)
      if (req.method === 'POST') return publish(req, res, req.url.startsWith('/api/sse/batch'))
    }
    if (req.url === '/health') return answer(res, 200, { clients: clients.size, turns, turnEvents })
    res.writeHead(404).end()
  })
  // Fastify's default (the service's): node:http's 5 s would close the publisher's keep-alive connections
  // while the streams open, and a reopening pool sends one publish per turn (see bench/lib/targets.mjs).
  server.keepAliveTimeout = 72_000
  server.listen(port, host)
  return server
}

const server = process.env.FLOOR_HTTP === 'fastify' ? await fastifyServer() : nodeServer()
process.on('SIGTERM', () => {
  for (const client of clients) client.destroy()
  server.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
})
