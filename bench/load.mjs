// The load process of `npm run bench`, forked by bench/run.mjs and driven over IPC.
// It holds many SSE connections on raw `net` sockets to 127.0.0.1 and does as little as it can per
// byte: every socket reads into one shared buffer, and the only thing parsed out of a stream is
// `data: {"s":<seq>,"t":<publish time in µs of the monotonic clock>` of the benchmark's events.
// Both processes read the same CLOCK_MONOTONIC (process.hrtime), so receipt - t is the latency.
//
// Commands (process.send): open, expect, published, close, exit. Replies: opened, done, closed.
//
// Every connection has an index (`user`), unique across the load processes: the user number of its
// token (u<index>), or, for anonymous streams, the number in its topics (t.<index>.<j>). A targeted
// measurement names one recipient index per event, so every receipt is checked against its recipient:
// each event must arrive exactly once, and only there.
import net from 'node:net'
import { createSigner } from 'fast-jwt'

const PATTERN = Buffer.from('data: {"s":')
const LF = 10
const CONNECTING = 0
const OPEN = 1
const CLOSED = 2
/** Sockets opening at once: more would overflow the server's accept backlog and cost SYN retries. */
const OPEN_CONCURRENCY = 200

const shared = Buffer.allocUnsafe(256 * 1024)
const nowUs = () => Number(process.hrtime.bigint() / 1000n)

/** Latency histogram in µs: 10 µs buckets below 1 ms, then 1% wide buckets (about 1,400 up to 10 min). */
const LINEAR = 100
const LOG_STEP = Math.log(1.01)
const BUCKETS = LINEAR + 1500
const bucketOf = (us) =>
  us < 1000
    ? Math.max(0, Math.floor(us / 10))
    : Math.min(BUCKETS - 1, LINEAR + Math.floor(Math.log(us / 1000) / LOG_STEP))

/** @type {Conn[]} */
let conns = []
let port = 0

/**
 * @typedef {{ sock: net.Socket, state: number, head: Buffer | null, tail: Buffer | null,
 *   lastSeq: number, received: number, seen: Uint8Array | null, user: number }} Conn
 */

// The measurement in progress (one at a time).
let active = false
let mode = 'broadcast'
let first = 0
let last = -1
let expected = 0
let received = 0
let dup = 0
let reordered = 0
let stray = 0
/** Targeted receipts at a connection that was not the event's recipient. */
let misdelivered = 0
/** Targeted mode: the recipient index of each event, and whether it arrived. */
let owner = new Int32Array(0)
let got = new Uint8Array(0)
let maxUs = 0
let firstReceipt = 0
let lastReceipt = 0
let unexpectedCloses = 0
/** Streams the server ended during the measurement (it kept their connections open). */
let ended = 0
let hist = new Uint32Array(BUCKETS)
/** Per event: the latency of its first and of its last recipient here (µs). */
let firstLat = new Float64Array(0)
let lastLat = new Float64Array(0)
let cpuStart = process.cpuUsage()
let wallStart = 0
let timer
/** After `published`: ends the measurement once nothing arrived for this long (lost events never come). */
let quiet
let quietUs = 0
let publishedAt = 0

function record(conn, s, t, now) {
  if (s < first || s > last) {
    stray++
    return
  }
  const k = s - first
  if (mode === 'targeted') {
    if (owner[k] !== conn.user) {
      misdelivered++
      return
    }
    if (got[k] === 1) dup++
    else got[k] = 1
  }
  const lat = now - t
  hist[bucketOf(lat)]++
  if (lat < firstLat[k]) firstLat[k] = lat
  if (lat > lastLat[k]) lastLat[k] = lat
  if (lat > maxUs) maxUs = lat
  // Concurrent publishes may reach the server in another order than their numbers: that is
  // reordering, not loss. Losses and duplicates come from a per-connection record of what arrived.
  if (s < conn.lastSeq) reordered++
  conn.lastSeq = s
  if (mode === 'broadcast') {
    if (conn.seen[s - first] === 1) dup++
    else conn.seen[s - first] = 1
  }
  conn.received++
  received++
  if (firstReceipt === 0) firstReceipt = now
  lastReceipt = now
}

/** Finds every benchmark event on the complete lines in [start, end). */
function scan(conn, buf, start, end, now) {
  let p = buf.indexOf(PATTERN, start)
  while (p !== -1 && p < end) {
    let i = p + PATTERN.length
    let s = 0
    let c = buf[i]
    while (c >= 48 && c <= 57) {
      s = s * 10 + c - 48
      c = buf[++i]
    }
    i += 5 // ,"t":
    let t = 0
    c = buf[i]
    while (c >= 48 && c <= 57) {
      t = t * 10 + c - 48
      c = buf[++i]
    }
    if (active) record(conn, s, t, now)
    p = buf.indexOf(PATTERN, i)
  }
}

/** Body bytes: whole lines are scanned in place; a partial last line is copied and completed next read. */
function body(conn, view, now) {
  let start = 0
  if (conn.tail !== null) {
    const nl = view.indexOf(LF)
    if (nl === -1) {
      conn.tail = Buffer.concat([conn.tail, view])
      return
    }
    const line = Buffer.concat([conn.tail, view.subarray(0, nl + 1)])
    conn.tail = null
    scan(conn, line, 0, line.length, now)
    start = nl + 1
  }
  if (start >= view.length) return
  const lastLf = view.lastIndexOf(LF)
  if (lastLf >= start) scan(conn, view, start, lastLf + 1, now)
  if (lastLf + 1 < view.length) conn.tail = Buffer.from(view.subarray(Math.max(start, lastLf + 1)))
}

function onRead(conn, nread, buf) {
  const now = nowUs()
  let view = buf.subarray(0, nread)
  if (conn.state === CONNECTING) {
    const head = conn.head === null ? Buffer.from(view) : Buffer.concat([conn.head, view])
    const end = head.indexOf('\r\n\r\n')
    if (end === -1) {
      conn.head = head
      return
    }
    conn.head = null
    const status = Number(head.subarray(9, 12).toString('latin1'))
    if (status !== 200) {
      opening.fail(conn, `HTTP ${status}`)
      return
    }
    conn.state = OPEN
    opening.succeed()
    view = head.subarray(end + 4)
  }
  if (view.length > 0) body(conn, view, now)
  if (endsResponse(view) && conn.state === OPEN) {
    // The server ended this stream (`event: disconnected`, then the last chunk) but kept the
    // connection alive: nothing more comes on it, and a browser would reconnect.
    conn.state = CLOSED
    if (active) ended++
  }
  if (active && received >= expected) finish()
}

/**
 * Whether a read ends with HTTP/1.1's last chunk (`0\r\n\r\n`). Event data never holds CRLF CRLF,
 * so only the end of the response does; looking at the last 5 bytes costs nothing per read (a last
 * chunk split across two reads is missed, and the stream then counts as open).
 */
function endsResponse(view) {
  const n = view.length
  return (
    n >= 5 &&
    view[n - 1] === 10 &&
    view[n - 2] === 13 &&
    view[n - 3] === 10 &&
    view[n - 4] === 13 &&
    view[n - 5] === 48
  )
}

// Opening: a bounded number of sockets in flight until `count` have answered.
const opening = {
  queue: [],
  inFlight: 0,
  ok: 0,
  failed: 0,
  reasons: {},
  started: 0,
  done: null,
  succeed() {
    this.ok++
    this.settle()
  },
  fail(conn, reason) {
    if (conn.state !== CONNECTING) return
    conn.state = CLOSED
    conn.sock.destroy()
    this.failed++
    this.reasons[reason] = (this.reasons[reason] ?? 0) + 1
    this.settle()
  },
  settle() {
    this.inFlight--
    this.pump()
  },
  pump() {
    while (this.inFlight < OPEN_CONCURRENCY && this.queue.length > 0) {
      const { path, user } = this.queue.shift()
      this.inFlight++
      connect(path, user)
    }
    if (this.inFlight === 0 && this.queue.length === 0 && this.done !== null) {
      const done = this.done
      this.done = null
      done()
    }
  },
}

function connect(path, user) {
  /** @type {Conn} */
  const conn = {
    sock: null,
    state: CONNECTING,
    head: null,
    tail: null,
    lastSeq: 0,
    received: 0,
    seen: null,
    user,
  }
  const sock = net.connect({
    host: '127.0.0.1',
    port,
    onread: { buffer: shared, callback: (n, buf) => onRead(conn, n, buf) },
  })
  conn.sock = sock
  conns.push(conn)
  sock.on('error', (err) => {
    if (conn.state === CONNECTING) opening.fail(conn, err.code ?? err.message)
  })
  sock.on('close', () => {
    if (conn.state === CONNECTING) opening.fail(conn, 'closed before answering')
    else if (conn.state === OPEN) {
      conn.state = CLOSED
      unexpectedCloses++
    }
  })
  sock.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`,
  )
}

/** `?topic=` parameters: the shared topics, then `per` topics of the connection's own (t.<index>.<j>). */
function topicQuery(topics, user) {
  if (topics === undefined || topics === null) return ''
  const list = [...(topics.shared ?? [])]
  for (let j = 0; j < (topics.per ?? 0); j++) list.push(`t.${user}.${j}`)
  return list.map((t) => `topic=${t}`).join('&')
}

function open(msg) {
  port = msg.port
  const sign =
    msg.auth === 'token'
      ? createSigner({ key: msg.secret, algorithm: 'HS256', expiresIn: 3 * 3600_000 })
      : null
  for (let i = 0; i < msg.count; i++) {
    const user = msg.userStart + i
    const query = []
    if (msg.auth === 'token') query.push(`token=${sign({ sub: `u${user}` })}`)
    else if (msg.auth === 'query') query.push(`userId=u${user}`)
    const topics = topicQuery(msg.topics, user)
    if (topics !== '') query.push(topics)
    const path = query.length === 0 ? '/api/sse' : `/api/sse?${query.join('&')}`
    opening.queue.push({ path, user })
  }
  Object.assign(opening, { ok: 0, failed: 0, reasons: {}, started: Date.now() })
  const deadline = setTimeout(() => {
    for (const conn of conns) if (conn.state === CONNECTING) opening.fail(conn, 'timeout')
    opening.queue.length = 0
    opening.pump()
  }, msg.timeoutMs ?? 120_000)
  opening.done = () => {
    clearTimeout(deadline)
    conns = conns.filter((c) => c.state === OPEN)
    process.send({
      type: 'opened',
      ok: opening.ok,
      failed: opening.failed,
      reasons: opening.reasons,
      ms: Date.now() - opening.started,
      open: conns.length,
    })
  }
  opening.pump()
}

function expect(msg) {
  mode = msg.mode
  first = msg.first
  last = msg.last
  received = dup = reordered = stray = misdelivered = maxUs = firstReceipt = lastReceipt = 0
  unexpectedCloses = ended = 0
  hist = new Uint32Array(BUCKETS)
  firstLat = new Float64Array(last - first + 1).fill(Number.POSITIVE_INFINITY)
  lastLat = new Float64Array(last - first + 1)
  const live = conns.filter((c) => c.state === OPEN)
  for (const c of live) {
    c.lastSeq = first - 1
    c.received = 0
    c.seen = mode === 'broadcast' ? new Uint8Array(last - first + 1) : null
  }
  if (mode === 'broadcast') expected = live.length * (last - first + 1)
  else {
    const mine = new Set(live.map((c) => c.user))
    owner = Int32Array.from(msg.users)
    got = new Uint8Array(owner.length)
    expected = msg.users.filter((u) => mine.has(u)).length
  }
  cpuStart = process.cpuUsage()
  wallStart = nowUs()
  active = true
  timer = setTimeout(finish, msg.timeoutMs)
  process.send({ type: 'armed', expected })
  if (expected === 0) finish()
}

/**
 * Every publish was answered: from here, a measurement still short of its events ends after `quietMs`
 * without a receipt instead of at the timeout (a server that lost events would hold the run for
 * minutes; a slow one keeps delivering and is waited for).
 */
function published(msg) {
  if (!active) return
  publishedAt = nowUs()
  quietUs = msg.quietMs * 1000
  clearInterval(quiet)
  quiet = setInterval(() => {
    if (nowUs() - Math.max(publishedAt, lastReceipt) > quietUs) finish()
  }, 250)
}

function finish() {
  if (!active) return
  active = false
  clearTimeout(timer)
  clearInterval(quiet)
  const cpu = process.cpuUsage(cpuStart)
  const sparse = []
  for (let i = 0; i < BUCKETS; i++) if (hist[i] > 0) sparse.push([i, hist[i]])
  let short = 0
  if (mode === 'broadcast') {
    for (const c of conns) if (c.received - countDuplicates(c) < last - first + 1) short++
  }
  process.send({
    type: 'done',
    expected,
    received,
    dup,
    reordered,
    stray,
    misdelivered,
    short,
    unexpectedCloses,
    ended,
    maxUs,
    firstReceipt,
    lastReceipt,
    hist: sparse,
    firstLat: Array.from(firstLat, (x) => (Number.isFinite(x) ? x : null)),
    lastLat: Array.from(lastLat),
    cpuUs: cpu.user + cpu.system,
    wallUs: nowUs() - wallStart,
  })
}

function countDuplicates(conn) {
  let distinct = 0
  for (const v of conn.seen ?? []) distinct += v
  return conn.received - distinct
}

function closeAll(msg) {
  const keep = msg.keep ?? 0
  const kept = []
  for (const [i, c] of conns.entries()) {
    if (i < keep && c.state === OPEN) kept.push(c)
    else {
      c.state = CLOSED
      c.sock.destroy()
    }
  }
  conns = kept
  process.send({ type: 'closed', open: conns.length })
}

process.on('message', (msg) => {
  if (msg.cmd === 'open') open(msg)
  else if (msg.cmd === 'expect') expect(msg)
  else if (msg.cmd === 'published') published(msg)
  else if (msg.cmd === 'close') closeAll(msg)
  else if (msg.cmd === 'exit') {
    for (const c of conns) c.sock.destroy()
    process.exit(0)
  }
})
// Never outlive the runner.
process.on('disconnect', () => process.exit(0))
