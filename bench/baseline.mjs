// The yardstick for `npm run bench`: the smallest node:http broadcaster that does the same job.
// A Set of open responses (plus a userId -> Set index for targeted sends), one prebuilt Buffer per
// event written to each matching response: one socket write per event per client, no queueing,
// no backpressure, no auth, no history. PORT and HOST come from the environment.
import http from 'node:http'

const port = Number(process.env.PORT ?? 0)
const host = process.env.HOST ?? '127.0.0.1'

const HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
}
const HELLO = Buffer.from('retry: 3000\n\n')

const clients = new Set()
/** userId -> Set of responses, from `?userId=`, so that targeted sends touch only their recipients. */
const byUser = new Map()
let seq = 0

function userIdOf(url) {
  const at = url.indexOf('userId=')
  if (at === -1) return null
  const end = url.indexOf('&', at)
  return decodeURIComponent(url.slice(at + 7, end === -1 ? undefined : end))
}

function open(req, res) {
  const userId = userIdOf(req.url)
  req.socket.setNoDelay(true)
  req.socket.setKeepAlive(true, 30_000)
  res.writeHead(200, HEADERS)
  res.write(HELLO)
  clients.add(res)
  if (userId !== null) {
    let set = byUser.get(userId)
    if (set === undefined) {
      set = new Set()
      byUser.set(userId, set)
    }
    set.add(res)
  }
  res.on('close', () => {
    clients.delete(res)
    if (userId !== null) {
      const set = byUser.get(userId)
      set?.delete(res)
      if (set?.size === 0) byUser.delete(userId)
    }
  })
}

function publish(req, res) {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    let body
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      res.writeHead(400).end()
      return
    }
    const id = String(++seq)
    const frame = Buffer.from(`id: ${id}\nevent: ${body.event}\ndata: ${JSON.stringify(body.data)}\n\n`)
    let delivered = 0
    if (body.broadcast === true) {
      for (const client of clients) {
        client.write(frame)
        delivered++
      }
    } else {
      for (const userId of body.userIds ?? []) {
        for (const client of byUser.get(userId) ?? []) {
          client.write(frame)
          delivered++
        }
      }
    }
    res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ id, delivered }))
  })
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/api/sse')) {
    if (req.method === 'GET') return open(req, res)
    if (req.method === 'POST') return publish(req, res)
  }
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ clients: clients.size }))
    return
  }
  res.writeHead(404).end()
})

// Fastify's default (the service's): node:http's 5 s would close the publisher's keep-alive connections
// while the streams open, and a reopening pool sends one publish per turn (see bench/lib/targets.mjs).
server.keepAliveTimeout = 72_000
server.listen(port, host)
process.on('SIGTERM', () => {
  for (const client of clients) client.destroy()
  server.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
})
