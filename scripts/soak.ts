// `npm run soak -- --minutes 5`: a bounded mixed load on 127.0.0.1 that checks every delivery.
// Logical clients connect, drop and come back with Last-Event-ID while events are broadcast and sent to
// users; each must see every event it is entitled to after it first connected, once, in order.
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { parseArgs } from 'node:util'
import { createParser } from 'eventsource-parser'
import { createSigner } from 'fast-jwt'
import { Pool, request } from 'undici'
import { compareEventIds } from '../src/sse/event-id.js'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    seconds: { type: 'string' },
    clients: { type: 'string', default: '300' },
    users: { type: 'string', default: '60' },
    rate: { type: 'string', default: '40' },
  },
})
const durationMs = values.seconds ? Number(values.seconds) * 1000 : Number(values.minutes) * 60_000
const CLIENTS = Number(values.clients)
const USERS = Number(values.users)
const RATE = Number(values.rate) // publishes per second
if (!(durationMs > 0 && durationMs <= 60 * 60_000)) throw new Error('--minutes must be between 0 and 60')

const SECRET = 'soak-secret-0123456789-abcdefghijklmnopq'
const sign = createSigner({ key: SECRET, algorithm: 'HS256', expiresIn: 3 * 3600_000 })

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      srv.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      )
    })
  })
}

const rssOf = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024
}

const port = await freePort()
const base = `http://127.0.0.1:${port}`
const server: ChildProcess = spawn(process.execPath, ['scripts/start.mjs'], {
  env: {
    ...process.env,
    NODE_ENV: 'production',
    CORS_ORIGINS: 'http://127.0.0.1',
    JWT_SECRET: SECRET,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_CONNECT: '0',
    RATE_LIMIT_PUBLISH: '0',
    MAX_ANONYMOUS_PER_IP: '100000',
    HEARTBEAT_INTERVAL_MS: '5000',
    HISTORY_SIZE: '100000',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
})
const stopServer = () => {
  if (server.exitCode === null) server.kill('SIGTERM')
}
process.on('exit', stopServer)
process.on('SIGINT', () => process.exit(130))

for (let i = 0; ; i++) {
  try {
    const res = await request(`${base}/health`)
    await res.body.dump()
    if (res.statusCode === 200) break
  } catch {}
  if (i > 300) throw new Error('the service did not start')
  await new Promise((r) => setTimeout(r, 100))
}
const pid = server.pid as number
const rssStart = rssOf(pid)

interface Published {
  id: string
  broadcast: boolean
  userId: string | null
}
const published: Published[] = []
let publishFailures = 0

class LogicalClient {
  readonly userId: string | null
  readonly token: string | null
  /** The id after which this client must have seen everything; set by its first connected event. */
  since: string | null = null
  lastId: string | null = null
  received: string[] = []
  connections = 0
  recoveredFalse = 0
  #controller: AbortController | null = null
  connected = false

  constructor(index: number) {
    this.userId = index % 5 === 0 ? null : `user-${index % USERS}`
    this.token = this.userId === null ? null : sign({ sub: this.userId })
  }

  async connect() {
    const controller = new AbortController()
    this.#controller = controller
    const headers: Record<string, string> = {}
    if (this.token) headers.authorization = `Bearer ${this.token}`
    if (this.lastId) headers['last-event-id'] = this.lastId
    this.connections++
    const res = await request(`${base}/api/sse`, { headers, signal: controller.signal })
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new Error(`connect answered ${res.statusCode}`)
    }
    let first = true
    const parser = createParser({
      onEvent: (e) => {
        if (e.event === 'connected') {
          const info = JSON.parse(e.data)
          if (first && this.since === null) this.since = info.lastEventId
          if (this.lastId !== null && !info.recovered) this.recoveredFalse++
          if (this.lastId === null && e.id) this.lastId = e.id
          first = false
          this.connected = true
          return
        }
        if (e.event === 'heartbeat' || e.event === 'disconnected') return
        if (e.id) {
          this.received.push(e.id)
          this.lastId = e.id
        }
      },
    })
    ;(async () => {
      try {
        for await (const chunk of res.body) parser.feed(chunk.toString('utf8'))
      } catch {}
      this.connected = false
    })()
  }

  drop() {
    this.#controller?.abort()
    this.connected = false
  }
}

const clients = Array.from({ length: CLIENTS }, (_, i) => new LogicalClient(i))
const publisher = new Pool(base, { connections: 4, pipelining: 1 })
const publisherToken = sign({ sub: 'soak-publisher', scope: 'sse:publish sse:admin' })

async function publishOne(n: number) {
  const broadcast = n % 3 === 0
  const userId = broadcast ? null : `user-${Math.floor(Math.random() * USERS)}`
  const body = JSON.stringify(
    broadcast
      ? { event: 'soak', data: { n, t: Date.now() }, broadcast: true }
      : { event: 'soak-user', data: { n, t: Date.now() }, userIds: [userId] },
  )
  try {
    const res = await publisher.request({
      path: '/api/sse',
      method: 'POST',
      headers: { authorization: `Bearer ${publisherToken}`, 'content-type': 'application/json' },
      body,
    })
    const json = (await res.body.json()) as { id?: string }
    if (res.statusCode !== 202 || !json.id) publishFailures++
    else published.push({ id: json.id, broadcast, userId })
  } catch {
    publishFailures++
  }
}

process.stdout.write(
  `soak: ${CLIENTS} clients, ${USERS} users, ${RATE} publishes/s for ${durationMs / 1000} s\n`,
)
await Promise.all(clients.map((c) => c.connect()))
const started = Date.now()
let n = 0
let lastReport = started
while (Date.now() - started < durationMs) {
  const tickStart = Date.now()
  const batch = Math.max(1, Math.round(RATE / 10))
  await Promise.all(Array.from({ length: batch }, () => publishOne(n++)))
  // Churn: about 2% of clients drop each tick and come back a little later with Last-Event-ID.
  for (const c of clients) {
    if (c.connected && Math.random() < 0.02) {
      c.drop()
      setTimeout(() => c.connect().catch(() => {}), Math.floor(Math.random() * 400)).unref()
    }
  }
  if (Date.now() - lastReport > 10_000) {
    lastReport = Date.now()
    const held = clients.filter((c) => c.connected).length
    process.stdout.write(
      `  ${Math.round((Date.now() - started) / 1000)} s: ${published.length} published, ${held} connected, server RSS ${(rssOf(pid) / 1048576).toFixed(1)} MiB\n`,
    )
  }
  const wait = 100 - (Date.now() - tickStart)
  if (wait > 0) await new Promise((r) => setTimeout(r, wait))
}

// Let everyone reconnect and catch up.
for (let i = 0; i < 100; i++) {
  const down = clients.filter((c) => !c.connected)
  if (down.length === 0) break
  await new Promise((r) => setTimeout(r, 100))
}
await new Promise((r) => setTimeout(r, 1500))

const compare = compareEventIds
let lost = 0
let duplicated = 0
let outOfOrder = 0
let delivered = 0
for (const c of clients) {
  const since = c.since
  const expected = published
    .filter((p) => (since === null || compare(p.id, since) > 0) && (p.broadcast || p.userId === c.userId))
    .map((p) => p.id)
  const got = new Map<string, number>()
  for (const id of c.received) got.set(id, (got.get(id) ?? 0) + 1)
  delivered += c.received.length
  for (const id of expected) if (!got.has(id)) lost++
  for (const count of got.values()) if (count > 1) duplicated += count - 1
  for (let i = 1; i < c.received.length; i++) {
    if (compare(c.received[i] as string, c.received[i - 1] as string) <= 0) outOfOrder++
  }
}
const rssEnd = rssOf(pid)
const report = {
  seconds: Math.round((Date.now() - started) / 1000),
  connectionsHeld: clients.filter((c) => c.connected).length,
  connectionsOpened: clients.reduce((s, c) => s + c.connections, 0),
  published: published.length,
  publishFailures,
  eventsDelivered: delivered,
  lost,
  duplicated,
  outOfOrder,
  recoveredFalse: clients.reduce((s, c) => s + c.recoveredFalse, 0),
  rssStartMiB: Number((rssStart / 1048576).toFixed(1)),
  rssEndMiB: Number((rssEnd / 1048576).toFixed(1)),
}
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
for (const c of clients) c.drop()
await publisher.close()
stopServer()
process.exit(lost === 0 && duplicated === 0 && outOfOrder === 0 && publishFailures === 0 ? 0 : 1)
